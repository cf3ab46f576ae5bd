"""Pareto sweep of decode policies on SmolLM2: perplexity change against K/V DRAM bytes.

Per held-out window of the prose corpus (:mod:`psa.models.prose`, ``token_stream(seed)``,
window ``w`` = tokens ``w (L + T) .. (w + 1)(L + T) - 1``): one dense prefill of the first
``L - 1`` tokens shared by every policy of the grid (policy hooks see it; policies whose
prefill state is the same, e.g. every ``spatten`` of one ``prob_bits``, compute it once and
get copies), then ``T`` teacher-forced decode steps, all policies in one batch; step ``t``
feeds token ``L - 1 + t`` and its logits predict token ``L + t``, so every prediction is made
by the policy's decode attention.

Figures per policy (dense fp16 is the baseline, on the same windows):

* ``ppl_change``: ``exp(mean over predictions of nll_policy - nll_dense) - 1``, with a 95 %
  interval from the per-window mean differences (paired over windows, Student t with
  ``windows - 1`` degrees of freedom): the windows, not the tokens, are the independent
  samples.
* bytes: every decode step's access trace, by plane (K MSB, K LSB, V MSB, V LSB, metadata)
  and direction (reads; writes of the new token's rows and metadata), exact, not rounded to
  bursts. ``reduction`` = dense fp16 K/V bytes (reads + writes) / the policy's.
* per-layer fractions of the cache rows read (K MSB, K LSB, V MSB, V LSB rows / cached rows).

Resumable: results go to ``--json`` after every window; a rerun with the same context, decode
and seed skips the (window, policy) pairs already there, so the sweep can be split into
short runs (``--budget-min``) and grids can grow. ``--table-only`` prints the table, writes the
markdown (``--md``) and the plot (``--plot``) from the JSON.

    OPENBLAS_NUM_THREADS=2 flock /tmp/psa-build.lock python bench/decode_pareto.py \\
        --context 2048 --decode 32 --windows 6 --grid 2048 --budget-min 14
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from psa.golden.decode_trace import DecodePlane
from psa.policies.decode import (
    DecodePolicy,
    H2ODecode,
    PrefillFanout,
    SpAttenDecode,
    make_decode_policy,
)

P = DecodePlane
PLANES = ("k_msb", "k_lsb", "v_msb", "v_lsb", "meta")

# -------------------------------------------------------------------------------------------
# grids: (label, policy name, knob value, options)
# -------------------------------------------------------------------------------------------

#: SpAtten+ : mass-based value pruning, LSB refetch of the selected rows only, every row
#: refetched (threshold > 1), 4-bit MSB keys for scoring.
SPP = {"refetch": "selected", "refetch_threshold": 2.0, "k_msb_bits": 4, "k_lsb_bits": 4,
       "v_msb_bits": 4, "v_lsb_bits": 4, "recent": 0.25}


def _spp(**kw) -> dict:
    return {**SPP, **kw}


def grid(name: str) -> list[tuple[str, str, str, dict]]:
    """The policy grid ``name`` (``2048``, ``512``, ``smoke``)."""
    g: list[tuple[str, str, str, dict]] = [("dense=16", "dense", "16", {})]
    if name == "smoke":
        return g + [("spatten=0.7", "spatten", "0.7", {}),
                    ("spp=0.3 m0.9", "spatten", "0.3", _spp(v_mass=0.9)),
                    ("topp=0.9", "topp", "0.9", {}), ("h2o=0.2", "h2o", "0.2", {})]
    if name not in ("2048", "512"):
        raise ValueError(f"--grid must be one of 2048, 512, smoke; got {name!r}")
    g += [
        # SpAtten as in the report (keep at the last layer, geometric cascade, v_keep 0.5,
        # 6 + 4-bit K/V, refetch of all alive K LSB rows when a row is flat)
        ("spatten=0.7", "spatten", "0.7", {}),
        ("spatten=0.4", "spatten", "0.4", {}),
        ("spatten=0.4 heads", "spatten", "0.4", {"head_keep": 0.67}),
        # SpAtten+ (SPP): token keep sweep (keep 1: no token pruning)
        ("spp=1 m0.9", "spatten", "1", _spp(v_mass=0.9)),
        ("spp=0.5 m0.9", "spatten", "0.5", _spp(v_mass=0.9)),
        ("spp=0.3 m0.9", "spatten", "0.3", _spp(v_mass=0.9)),
        ("spp=0.2 m0.9", "spatten", "0.2", _spp(v_mass=0.9)),
        ("spp=0.1 m0.9", "spatten", "0.1", _spp(v_mass=0.9)),
        # value-pruning mass
        ("spp=0.3 m0.8", "spatten", "0.3", _spp(v_mass=0.8)),
        ("spp=0.3 m0.95", "spatten", "0.3", _spp(v_mass=0.95)),
        # scoring precision: 6-bit and 3-bit MSB keys (LSB makes 10 / 8 bits)
        ("spp=0.3 m0.9 K6", "spatten", "0.3", _spp(v_mass=0.9, k_msb_bits=6)),
        ("spp=0.3 m0.9 K3", "spatten", "0.3", _spp(v_mass=0.9, k_msb_bits=3, k_lsb_bits=5)),
        # flat schedule, head pruning, cascade start layer, LSB refetch only for flat rows
        ("spp=0.2 m0.9 flat", "spatten", "0.2", _spp(v_mass=0.9, schedule="flat")),
        ("spp=0.3 m0.9 heads", "spatten", "0.3", _spp(v_mass=0.9, head_keep=0.67)),
        ("spp=0.3 m0.9 s4", "spatten", "0.3", _spp(v_mass=0.9, start_layer=4)),
        ("spp=0.3 m0.9 thr0.1", "spatten", "0.3", _spp(v_mass=0.9, refetch_threshold=0.1)),
        # top-p: mass and estimator bits (8-bit MSB keys, or 4-bit)
        ("topp=0.8", "topp", "0.8", {}),
        ("topp=0.9", "topp", "0.9", {}),
        ("topp=0.95", "topp", "0.95", {}),
        ("topp=0.99", "topp", "0.99", {}),
        ("topp=0.9 K4", "topp", "0.9", {"k_msb_bits": 4, "k_lsb_bits": 12}),
        ("topp=0.95 K4", "topp", "0.95", {"k_msb_bits": 4, "k_lsb_bits": 12}),
        # fixed budgets
        ("h2o=0.1", "h2o", "0.1", {}),
        ("h2o=0.2", "h2o", "0.2", {}),
        ("h2o=0.4", "h2o", "0.4", {}),
        ("quest=0.1", "quest", "0.1", {}),
        ("quest=0.2", "quest", "0.2", {}),
        ("nsa=2", "nsa", "2", {}),
        ("nsa=4", "nsa", "4", {}),
        ("oracle=0.05", "oracle", "0.05", {}),
        ("oracle=0.1", "oracle", "0.1", {}),
    ]
    return g


def family(label: str, name: str) -> str:
    if label.startswith("spp"):
        return "spatten+"
    return name


# -------------------------------------------------------------------------------------------
# one window
# -------------------------------------------------------------------------------------------


def _prefill_key(pol: DecodePolicy) -> tuple:
    """Policies with equal keys build the same state from a prefill."""
    if type(pol).on_prefill is DecodePolicy.on_prefill:
        return ("none",)
    if type(pol) in (SpAttenDecode, H2ODecode):
        return (type(pol).__name__, pol.prob_bits, pol.capacity)
    return ("own", id(pol))


def prefill_shared(model, ids: np.ndarray, pols: list[DecodePolicy], capacity: int):
    """One batch-1 dense prefill of ``ids`` for every policy; policies of one
    :func:`_prefill_key` share one ``on_prefill`` (the others get deep copies of its state).
    Returns the cache (one sequence per policy)."""
    reps: dict[tuple, DecodePolicy] = {}
    for pol in pols:
        reps.setdefault(_prefill_key(pol), pol)
    cache = model.new_cache(1, capacity)
    fan = [PrefillFanout(list(reps.values()))]
    model.prefill(np.asarray(ids, np.int64)[None], cache, attention=fan)
    for pol in pols:
        rep = reps[_prefill_key(pol)]
        if rep is not pol:
            pol.prefill_len = rep.prefill_len
            if hasattr(rep, "states"):
                pol.states = copy.deepcopy(rep.states)
    return cache.select([0] * len(pols))


def _make(model, spec, L: int, T: int) -> DecodePolicy:
    label, name, value, opts = spec
    opts = dict(opts)
    if name == "nsa":
        opts.setdefault("context", L)
    pol = make_decode_policy(name, value, model.config, L + T, **opts)
    pol.label = label
    return pol


def run_window(model, ids: np.ndarray, specs, L: int, T: int, log=print) -> dict:
    """Run ``specs`` on one window ``ids [L + T]``; ``{label: result}``."""
    from psa.models.prose import token_nll

    t0 = time.time()
    pols = [_make(model, s, L, T) for s in specs]
    cache = prefill_shared(model, ids[:L - 1], pols, L + T)
    t_pre = time.time() - t0
    b = len(pols)
    nll = np.zeros((b, T))
    byt = np.zeros((b, 2, len(PLANES)), np.int64)  # [policy, read/write, plane]
    for t in range(T):
        logits = model.step(np.full(b, ids[L - 1 + t]), cache, attention=pols)
        nll[:, t] = token_nll(logits, np.full(b, ids[L + t]))
        for i, pol in enumerate(pols):
            for tr in pol.traces:
                pl = np.minimum(tr.plane.astype(np.int64), len(PLANES) - 1)
                for wi, sel in enumerate((~tr.is_write, tr.is_write)):
                    byt[i, wi] += np.bincount(pl[sel], weights=tr.size[sel],
                                              minlength=len(PLANES)).astype(np.int64)
            pol.traces.clear()
    out = {}
    for i, pol in enumerate(pols):
        cnt = pol.counters()
        cached = (L - 1 + np.arange(T)).astype(np.float64)[:, None, None]  # rows before new
        frac = {key: (cnt[key] / cached).mean(axis=(0, 2)).round(4).tolist()
                for key in ("k_rows", "k_lsb_rows", "v_rows", "v_lsb_rows")}
        out[pol.label] = {
            "nll": nll[i].tolist(),
            "read": dict(zip(PLANES, byt[i, 0].tolist(), strict=True)),
            "write": dict(zip(PLANES, byt[i, 1].tolist(), strict=True)),
            "row_fraction_per_layer": frac,
        }
    log(f"  window done: {b} policies, prefill {t_pre:.0f} s, total {time.time() - t0:.0f} s")
    return out


# -------------------------------------------------------------------------------------------
# statistics and output
# -------------------------------------------------------------------------------------------

#: Student t 97.5 % quantiles by degrees of freedom (standard tables).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def t975(df: int) -> float:
    if df < 1:
        return math.inf
    keys = [k for k in sorted(_T975) if k <= df]
    return _T975[keys[-1]] if df <= 30 else 1.96


def summarize(doc: dict, specs) -> list[dict]:
    """One row per policy over the windows where both it and dense ran."""
    wins = doc["windows"]
    rows = []
    for label, name, _, opts in specs:
        ws = [w for w in sorted(wins, key=int) if label in wins[w] and "dense=16" in wins[w]]
        if not ws:
            continue
        d = np.array([np.mean(wins[w][label]["nll"]) - np.mean(wins[w]["dense=16"]["nll"])
                      for w in ws])
        nll_p = np.concatenate([wins[w][label]["nll"] for w in ws])
        nll_d = np.concatenate([wins[w]["dense=16"]["nll"] for w in ws])
        se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else math.inf
        h = t975(len(d) - 1) * se
        tot = {k: sum(wins[w][label][k][p] for w in ws for p in PLANES) for k in ("read", "write")}
        dtot = sum(wins[w]["dense=16"][k][p] for w in ws for p in PLANES for k in ("read", "write"))
        planes = {f"{k}_{p}": sum(wins[w][label][k][p] for w in ws)
                  for k in ("read", "write") for p in PLANES}
        fr = {key: np.mean([wins[w][label]["row_fraction_per_layer"][key] for w in ws], axis=0)
              for key in ("k_rows", "k_lsb_rows", "v_rows", "v_lsb_rows")}
        mean = float(d.mean())
        diff = nll_p - nll_d
        tok = 1.96 * diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else math.inf
        rows.append({
            "policy": label, "family": family(label, name), "upper_bound": name == "oracle",
            "options": opts, "windows": len(ws), "predictions": int(len(nll_p)),
            "ppl": float(np.exp(nll_p.mean())), "ppl_dense": float(np.exp(nll_d.mean())),
            "ppl_change": math.expm1(mean),
            "ppl_change_lo": math.expm1(mean - h) if math.isfinite(h) else None,
            "ppl_change_hi": math.expm1(mean + h) if math.isfinite(h) else None,
            "per_window_change": [math.expm1(x) for x in d],
            # tokens treated as independent (optimistic: tokens of a window are correlated)
            "ppl_change_token_ci": [math.expm1(mean - tok), math.expm1(mean + tok)],
            "read_bytes": tot["read"], "write_bytes": tot["write"],
            "reduction": dtot / (tot["read"] + tot["write"]),
            "read_reduction": sum(wins[w]["dense=16"]["read"][p] for w in ws for p in PLANES)
            / max(tot["read"], 1),
            "bytes_share": {k: v / (tot["read"] + tot["write"]) for k, v in planes.items()},
            "rows_mean": {k: float(v.mean()) for k, v in fr.items()},
            "rows_per_layer": {k: v.round(3).tolist() for k, v in fr.items()},
        })
    front(rows)
    return rows


def front(rows: list[dict]) -> None:
    """Mark each row ``pareto`` within its family: no row of the family has both a larger
    reduction and a smaller perplexity change."""
    for r in rows:
        r["pareto"] = not any(o is not r and o["family"] == r["family"]
                              and o["reduction"] >= r["reduction"]
                              and o["ppl_change"] <= r["ppl_change"]
                              and (o["reduction"], o["ppl_change"]) != (r["reduction"],
                                                                        r["ppl_change"])
                              for o in rows)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:+.2f}%"


def markdown(rows: list[dict], ctx: int) -> str:
    head = ("| policy | family | windows | ppl | ppl change | 95% CI (windows) | 95% CI (tokens) | "
            "K/V bytes vs fp16 | "
            "reads vs fp16 | K MSB | K LSB | V MSB | V LSB | meta | writes | pareto |\n"
            "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|\n")
    lines = []
    for r in rows:
        s = r["bytes_share"]
        wr = sum(s[f"write_{p}"] for p in PLANES)
        name = r["policy"] + (" (bound)" if r["upper_bound"] else "")
        ci = f"[{_pct(r['ppl_change_lo'])}, {_pct(r['ppl_change_hi'])}]"
        lo, hi = r["ppl_change_token_ci"]
        lines.append(
            f"| {name} | {r['family']} | {r['windows']} | {r['ppl']:.3f} | "
            f"{_pct(r['ppl_change'])} | {ci} | [{_pct(lo)}, {_pct(hi)}] | {r['reduction']:.2f}x | "
            f"{r['read_reduction']:.2f}x | {100 * s['read_k_msb']:.0f}% | "
            f"{100 * s['read_k_lsb']:.0f}% | {100 * s['read_v_msb']:.0f}% | "
            f"{100 * s['read_v_lsb']:.0f}% | {100 * s['read_meta']:.0f}% | {100 * wr:.1f}% | "
            f"{'*' if r['pareto'] else ''} |")
    return f"Context {ctx}:\n\n" + head + "\n".join(lines) + "\n"


def print_table(rows: list[dict], ctx: int) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print(markdown(rows, ctx))
        return
    t = Table(title=f"decode policies, context {ctx}: ppl change vs dense fp16 (paired over "
                    "windows) and K/V DRAM bytes")
    for col in ("policy", "win", "ppl", "change", "95% CI", "bytes x", "reads x", "K MSB",
                "K LSB", "V MSB", "V LSB", "meta", "writes", "front"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for r in rows:
        s = r["bytes_share"]
        wr = sum(s[f"write_{p}"] for p in PLANES)
        t.add_row(r["policy"] + (" (bound)" if r["upper_bound"] else ""), str(r["windows"]),
                  f"{r['ppl']:.3f}", _pct(r["ppl_change"]),
                  f"{_pct(r['ppl_change_lo'])}..{_pct(r['ppl_change_hi'])}",
                  f"{r['reduction']:.2f}", f"{r['read_reduction']:.2f}",
                  *(f"{100 * s['read_' + p]:.0f}%" for p in PLANES), f"{100 * wr:.1f}%",
                  "*" if r["pareto"] else "")
    Console(width=200).print(t)


def plot(rows: list[dict], ctx: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 6))
    fams = sorted({r["family"] for r in rows})
    colors = dict(zip(fams, plt.cm.tab10(np.linspace(0, 1, 10))[:len(fams)], strict=True))
    for f in fams:
        rs = sorted((r for r in rows if r["family"] == f), key=lambda r: r["reduction"])
        x = np.array([r["reduction"] for r in rs])
        y = np.array([100 * r["ppl_change"] for r in rs])
        lo = np.array([100 * (r["ppl_change"] - r["ppl_change_token_ci"][0]) for r in rs])
        hi = np.array([100 * (r["ppl_change_token_ci"][1] - r["ppl_change"]) for r in rs])
        bound = f == "oracle"
        ax.errorbar(x, y, yerr=[lo, hi], fmt="o" if not bound else "s", ms=5, capsize=2,
                    color=colors[f], mfc="none" if bound else colors[f], alpha=0.85,
                    label=f + (" (upper bound)" if bound else ""))
        pf = [r for r in rs if r["pareto"]]
        ax.plot([r["reduction"] for r in pf], [100 * r["ppl_change"] for r in pf], "-",
                color=colors[f], lw=1, alpha=0.6)
    ys = [100 * r["ppl_change"] for r in rows]
    ax.set_ylim(min(ys) - 5, max(ys) + 5)  # interval bars beyond the points are clipped
    ax.axhline(2.0, color="k", ls="--", lw=0.8)
    ax.axvline(8.0, color="k", ls=":", lw=0.8)
    ax.text(8.1, ax.get_ylim()[1] * 0.95, "8x", va="top")
    ax.set_xscale("log")
    ax.set_xlabel("K/V DRAM bytes, reduction vs dense fp16 (reads + writes)")
    ax.set_ylabel("perplexity change vs dense (%); bars: 95% CI over tokens (optimistic)")
    ax.set_title(f"SmolLM2-135M decode, context {ctx}: Pareto per policy family")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.subplots_adjust(left=0.1, right=0.97, top=0.93, bottom=0.1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -------------------------------------------------------------------------------------------
# main
# -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--context", type=int, default=2048, help="prompt length L (>= 2)")
    ap.add_argument("--decode", type=int, default=32, help="predicted tokens T per window")
    ap.add_argument("--windows", type=int, default=6, help="windows 0..W-1 of the stream")
    ap.add_argument("--first-window", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1, help="corpus shuffle seed")
    ap.add_argument("--grid", default="2048", help="2048, 512 or smoke")
    ap.add_argument("--only", default="", help="comma-separated labels: run only these")
    ap.add_argument("--budget-min", type=float, default=0.0,
                    help="stop before a window that would end after this many minutes (0: none)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args(argv)
    if a.context < 2 or a.decode < 1 or a.windows < 1 or a.first_window < 0:
        ap.error("--context must be >= 2, --decode >= 1, --windows >= 1, --first-window >= 0")
    specs = grid(a.grid)
    if a.only:
        want = {s.strip() for s in a.only.split(",")} | {"dense=16"}
        unknown = want - {s[0] for s in specs}
        if unknown:
            ap.error(f"--only: not in grid {a.grid}: {sorted(unknown)}")
        specs = [s for s in specs if s[0] in want]
    stem = f"decode_pareto_{a.context}"
    a.json = a.json or Path(f"bench/results/{stem}.json")
    a.md = a.md or Path(f"bench/results/{stem}.md")
    a.plot = a.plot or Path(f"bench/results/{stem}.png")
    key = {"context": a.context, "decode": a.decode, "seed": a.seed}
    doc = {"key": key, "windows": {}}
    if a.json.exists():
        old = json.loads(a.json.read_text())
        if old.get("key") != key:
            ap.error(f"--json {a.json} holds another run ({old.get('key')}); use another path")
        doc = old
    if not a.table_only:
        from psa.models.llama import load_smollm2
        from psa.models.prose import token_stream

        model, tok = load_smollm2()
        W = a.first_window + a.windows
        stream = token_stream(tok, W * (a.context + a.decode), seed=a.seed)
        t_start, t_last = time.time(), 0.0
        for w in range(a.first_window, W):
            done = doc["windows"].get(str(w), {})
            todo = [s for s in specs if s[0] not in done]
            if not todo:
                continue
            if a.budget_min and (time.time() - t_start + 1.1 * t_last) / 60 > a.budget_min:
                print(f"budget: stopping before window {w}; rerun to continue", flush=True)
                break
            print(f"window {w}: {len(todo)} policies", flush=True)
            t0 = time.time()
            ids = stream[w * (a.context + a.decode):(w + 1) * (a.context + a.decode)]
            res = run_window(model, ids, todo, a.context, a.decode,
                             log=lambda s: print(s, flush=True))
            t_last = time.time() - t0
            doc["windows"].setdefault(str(w), {}).update(res)
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(doc) + "\n")
    rows = summarize(doc, grid(a.grid))
    doc["summary"] = rows
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(doc) + "\n")
    if not rows:
        print("no results yet", file=sys.stderr)
        return 1
    print_table(rows, a.context)
    a.md.parent.mkdir(parents=True, exist_ok=True)
    a.md.write_text(markdown(rows, a.context))
    plot(rows, a.context, a.plot)
    print(f"wrote {a.json}, {a.md}, {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
