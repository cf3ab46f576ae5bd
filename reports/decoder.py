"""The decoder report: decode-mode attention policies on SmolLM2, perplexity against K/V DRAM cost.

Per context length ``C``: a token stream of ``C + D`` tokens (``D`` = decode steps) from the
prose corpus; every policy (:mod:`psa.policies.decode`, plus the ``dense=32`` baseline) runs in
one batch (batch = policies, so the decode weight products are matrix products): a prefill of
the first ``C - 1`` tokens (dense for every policy, with the policy hooks so that policies that
gather prefill importance see it), then ``D`` teacher-forced decode steps feeding the true
tokens ``C-1 .. C+D-2``; step ``t``'s logits predict token ``C+t``.

Figures per policy and context:

* ``ppl``: ``exp`` of the mean negative log-likelihood of the ``D`` true next tokens;
  ``ppl_change``: ``ppl / ppl(dense) - 1``.
* ``top1_agreement``: fraction of steps whose argmax equals dense's argmax.
* bytes read / written: every step's trace, coalesced, rounded to the preset's bursts (exact,
  every step).
* cycles and energy: :class:`psa.sim.stream.StreamSimulator` over the traces of every
  ``dram_every``-th step (steps ``dram_every // 2``, ``+ dram_every``, ...; 1 = all steps) fed
  back to back with controller state carried, scaled by ``D / sampled steps``.
* reductions against ``dense=16`` (fp16 K/V) and ``dense=32`` (fp32 K/V).
* alive tokens per layer (mean over steps and K/V heads, as a fraction of the length).

:func:`run_decoder_report` returns the ``report.json`` document; :func:`write_decoder_report`
writes it with ``report.md`` and the PNG plots. ``psa report --model smollm2`` is the CLI.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psa.reports.experiment import Stage, check_presets, coalesce, ratio

__all__ = ["DecoderReportConfig", "run_decoder_report", "write_decoder_report",
           "DEFAULT_CONTEXTS", "DEFAULT_DECODE", "DEFAULT_DECODER_POLICIES", "DEFAULT_PRESETS",
           "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
DEFAULT_CONTEXTS = (512,)
DEFAULT_DECODE = 32
DEFAULT_DECODER_POLICIES = "dense,spatten,h2o=0.2,quest=0.2,topp=0.9,oracle=0.1"
DEFAULT_PRESETS = "hbm2,ddr4-2400"
DEFAULT_DRAM_EVERY = 8



@dataclass(frozen=True)
class DecoderReportConfig:
    """What the decoder report runs (see the module docstring).

    ``contexts``: context lengths ``C`` (>= 2); ``decode``: decode steps ``D`` (>= 1);
    ``dram_every``: simulate every ``dram_every``-th step for cycles/energy (1 = all).
    """

    model: str = "smollm2"
    contexts: tuple[int, ...] = DEFAULT_CONTEXTS
    decode: int = DEFAULT_DECODE
    policies: str = DEFAULT_DECODER_POLICIES
    presets: tuple[str, ...] = tuple(DEFAULT_PRESETS.split(","))
    dram_every: int = DEFAULT_DRAM_EVERY
    seed: int = 0
    command: str = "psa report --model smollm2"

    def check(self, max_context: int | None = None) -> None:
        """Raise ValueError naming the option for a bad setting (before any work)."""
        from psa.policies.decode import parse_decode_policies
        if not self.contexts:
            raise ValueError("--context: give at least one context length")
        for c in self.contexts:
            if c < 2:
                raise ValueError(f"--context: each length must be >= 2, got {c}")
            if max_context is not None and c + self.decode > max_context:
                raise ValueError(f"--context + --decode must be <= {max_context} (the model's "
                                 f"max_context), got {c} + {self.decode}")
        if self.decode < 1:
            raise ValueError(f"--decode must be >= 1, got {self.decode}")
        if self.dram_every < 1:
            raise ValueError(f"--dram-every must be >= 1, got {self.dram_every}")
        check_presets(self.presets)
        parse_decode_policies(self.policies)



def sampled_steps(n_steps: int, every: int) -> list[int]:
    """Steps whose traces the DRAM simulator runs: ``every // 2, every // 2 + every, ...``
    (all steps when ``every`` is 1; at least one step)."""
    if every <= 1:
        return list(range(n_steps))
    s = list(range(min(every // 2, n_steps - 1), n_steps, every))
    return s or [0]


def _run_context(model, ids: np.ndarray, context: int, n_decode: int, specs, presets,
                 dram_every: int, tick) -> list[dict]:
    from psa.models.prose import token_nll
    from psa.policies.decode import make_decode_policy
    from psa.sim import load_preset
    from psa.sim.stream import StreamSimulator

    cfg = model.config
    capacity = context + n_decode
    pols = [make_decode_policy(n, v, cfg, capacity) for n, v in specs]
    b = len(pols)
    cache = model.new_cache(b, capacity)
    prompt = np.broadcast_to(ids[:context - 1], (b, context - 1))
    model.prefill(np.ascontiguousarray(prompt), cache, attention=pols)
    nll = np.zeros((b, n_decode))
    top1 = np.zeros((b, n_decode), np.int64)
    for t in range(n_decode):
        logits = model.step(np.full(b, ids[context - 1 + t]), cache, attention=pols)
        nll[:, t] = token_nll(logits, np.full(b, ids[context + t]))
        top1[:, t] = logits.argmax(axis=1)
        tick()
    steps = sampled_steps(n_decode, dram_every)
    specs_d = {p: load_preset(p) for p in presets}
    out = []
    for i, pol in enumerate(pols):
        traces = [coalesce(tr) for tr in pol.traces]
        dram = {}
        for p, spec in specs_d.items():
            bb = spec.org.burst_bytes
            rd = wr = 0
            for tr in traces:
                w = tr.is_write
                nb = tr.bursts(bb)
                rd += int(nb[~w].sum()) * bb
                wr += int(nb[w].sum()) * bb
            sim = StreamSimulator(spec)
            for s in steps:
                sim.feed(traces[s])
            st = sim.finish()
            scale = n_decode / len(steps)
            dram[p] = {"read_bytes": rd, "write_bytes": wr, "dram_bytes": rd + wr,
                       "cycles": st.cycles * scale, "energy_nJ": st.energy_nJ * scale,
                       "ns": st.ns * scale, "row_hit_rate": st.row_hit_rate,
                       "sampled_bursts": st.bursts}
            tick()
        alive = pol.counters()["alive"].astype(np.float64)  # [steps, layers, kv heads]
        lengths = context + np.arange(n_decode)  # tokens in the cache at each step
        frac = alive / lengths[:, None, None]
        out.append({
            "name": pol.label, "family": pol.label.split("=")[0],
            "upper_bound": bool(getattr(pol, "upper_bound", False)),
            "nll": nll[i].tolist(), "ppl": float(np.exp(nll[i].mean())),
            "top1": top1[i], "dram": dram,
            "alive_fraction_per_layer": frac.mean(axis=(0, 2)).tolist(),
            "alive_fraction_per_step": frac.mean(axis=(1, 2)).tolist(),
            "alive_fraction_mean": float(frac.mean()),
        })
    dense = out[0]
    fp32 = next(p for p in out if p["name"] == "dense=32")
    for p in out:
        p["ppl_change"] = p["ppl"] / dense["ppl"] - 1.0
        p["top1_agreement"] = float(np.mean(p["top1"] == dense["top1"]))
        p["top1"] = p["top1"].tolist()
        for pr, d in p["dram"].items():
            for base_name, base in (("fp16", dense), ("fp32", fp32)):
                bd = base["dram"][pr]
                d[f"vs_{base_name}"] = {k: ratio(bd[k], d[k])
                                        for k in ("dram_bytes", "cycles", "energy_nJ")}
    return out


def run_decoder_report(cfg: DecoderReportConfig, stage: Stage | None = None, *, model=None,
                       tokens: np.ndarray | None = None) -> dict:
    """Run the report; returns the ``report.json`` document.

    ``model`` (a :class:`~psa.models.llama.LlamaDecoder`) and ``tokens`` (int ids, at least
    ``max(contexts) + decode``) replace SmolLM2 and the prose corpus (tests use a tiny random
    model). ``stage(description, total)`` returns a function called once per unit of work.
    """
    from psa.policies.decode import parse_decode_policies

    stage = stage or (lambda _d, _n: (lambda: None))
    t0 = time.perf_counter()
    if model is None:
        if cfg.model != "smollm2":
            raise ValueError(f"--model: decoder report supports smollm2, got {cfg.model!r}")
        from psa.models.llama import load_smollm2
        from psa.models.prose import token_stream

        model, tok = load_smollm2()
        cfg.check(model.config.max_context)
        tokens = token_stream(tok, max(cfg.contexts) + cfg.decode, seed=cfg.seed)
    else:
        cfg.check(model.config.max_context)
    tokens = np.asarray(tokens, np.int64)
    if len(tokens) < max(cfg.contexts) + cfg.decode:
        raise ValueError(f"tokens: need {max(cfg.contexts) + cfg.decode}, got {len(tokens)}")
    specs = parse_decode_policies(cfg.policies)
    if ("dense", "32") not in specs:
        specs.append(("dense", "32"))
    presets = list(cfg.presets)
    tick = stage("decode + DRAM", len(cfg.contexts) * (cfg.decode + len(specs) * len(presets)))
    per_ctx = {}
    for c in cfg.contexts:
        # the last C + D tokens of the stream: the same continuation for every context
        ids = tokens[len(tokens) - c - cfg.decode:]
        per_ctx[str(c)] = _run_context(model, ids, c, cfg.decode, specs, presets,
                                       cfg.dram_every, tick)
    mc = model.config
    steps = sampled_steps(cfg.decode, cfg.dram_every)
    return {
        "schema_version": SCHEMA_VERSION, "kind": "decoder", "command": cfg.command,
        "model": {"name": cfg.model, "layers": mc.n_layers, "heads": mc.n_heads,
                  "kv_heads": mc.n_kv_heads, "head_dim": mc.head_dim},
        "contexts": list(cfg.contexts), "decode": cfg.decode, "seed": cfg.seed,
        "primary_preset": presets[0],
        "dram": {"presets": presets, "every": cfg.dram_every, "sampled_steps": steps,
                 "cycles_method": ("all steps, streamed with controller state carried"
                                   if cfg.dram_every == 1 else
                                   f"every {cfg.dram_every}th step ({len(steps)} of "
                                   f"{cfg.decode}) streamed back to back, scaled by "
                                   f"{cfg.decode / len(steps):g}")},
        "results": per_ctx, "timing": {"total_s": time.perf_counter() - t0},
    }


def _fmt(x: float, d: int = 2) -> str:
    return "inf" if x == float("inf") else f"{x:.{d}f}"


def headline_rows(doc: dict) -> list[list[str]]:
    """Rows ``context, policy, ppl, ppl change, top-1, bytes vs fp16/fp32, cycles vs fp16,
    energy vs fp16`` on the primary preset (shared by report.md and the CLI table)."""
    pr = doc["primary_preset"]
    rows = []
    for c, pols in doc["results"].items():
        for p in pols:
            d = p["dram"][pr]
            rows.append([c, p["name"] + (" (bound)" if p["upper_bound"] else ""),
                         f"{p['ppl']:.3f}", f"{100 * p['ppl_change']:+.2f}%",
                         f"{p['top1_agreement']:.2f}", f"{_fmt(d['vs_fp16']['dram_bytes'])}x",
                         f"{_fmt(d['vs_fp32']['dram_bytes'])}x",
                         f"{_fmt(d['vs_fp16']['cycles'])}x",
                         f"{_fmt(d['vs_fp16']['energy_nJ'])}x",
                         f"{p['alive_fraction_mean']:.2f}"])
    return rows


HEADLINE_COLUMNS = ("context", "policy", "ppl", "ppl change", "top-1", "bytes vs fp16",
                    "bytes vs fp32", "cycles vs fp16", "energy vs fp16", "alive")


def _markdown(doc: dict) -> str:
    pr = doc["primary_preset"]
    m = doc["model"]
    lines = ["# Decode-mode attention policies on SmolLM2", "",
             f"Model: {m['name']} ({m['layers']} layers, {m['heads']} query / {m['kv_heads']} "
             f"K/V heads, head_dim {m['head_dim']}). Contexts {doc['contexts']}, "
             f"{doc['decode']} teacher-forced decode steps, seed {doc['seed']}.",
             "",
             f"DRAM: bytes count every step's trace exactly; cycles and energy: "
             f"{doc['dram']['cycles_method']}.", "",
             f"Command: `{doc['command']}`", "",
             f"## Headline ({pr}; reductions against dense fp16 / fp32 K/V)", "",
             "| " + " | ".join(HEADLINE_COLUMNS) + " |",
             "|---|---|" + "---:|" * (len(HEADLINE_COLUMNS) - 2)]
    lines += ["| " + " | ".join(r) + " |" for r in headline_rows(doc)]
    lines += ["", "## DRAM per preset", "",
              "| context | policy | preset | read MB | written MB | cycles | energy (uJ) | "
              "cycles vs fp16 | cycles vs fp32 | energy vs fp32 |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c, pols in doc["results"].items():
        for p in pols:
            for prs, d in p["dram"].items():
                lines.append(f"| {c} | {p['name']} | {prs} | {d['read_bytes'] / 1e6:.2f} | "
                             f"{d['write_bytes'] / 1e6:.3f} | {d['cycles']:,.0f} | "
                             f"{d['energy_nJ'] / 1e3:.1f} | {_fmt(d['vs_fp16']['cycles'])}x | "
                             f"{_fmt(d['vs_fp32']['cycles'])}x | "
                             f"{_fmt(d['vs_fp32']['energy_nJ'])}x |")
    lines += ["", "## Alive tokens per layer (fraction of the length, mean over steps and "
              "K/V heads)", ""]
    n_l = doc["model"]["layers"]
    lines += ["| context | policy | " + " | ".join(f"L{i}" for i in range(n_l)) + " |",
              "|---|---|" + "---:|" * n_l]
    for c, pols in doc["results"].items():
        for p in pols:
            lines.append(f"| {c} | {p['name']} | " + " | ".join(
                f"{x:.2f}" for x in p["alive_fraction_per_layer"]) + " |")
    lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in doc.get("plots", [])), "",
              f"Run time {doc['timing']['total_s']:.0f} s.", ""]
    return "\n".join(lines)


def _plots(doc: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pr = doc["primary_preset"]
    written = []
    for c, pols in doc["results"].items():
        fig, ax = plt.subplots(figsize=(8.5, 4.4))
        for p in pols:
            ax.plot(p["alive_fraction_per_layer"], marker="o", label=p["name"])
        ax.set_xlabel("layer")
        ax.set_ylabel("alive tokens (fraction of length)")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"Alive tokens per layer, context {c} (mean over steps)")
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        name = f"alive_ctx{c}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(name)
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for c, pols in doc["results"].items():
        xs = [p["dram"][pr]["vs_fp16"]["cycles"] for p in pols]
        ys = [100 * p["ppl_change"] for p in pols]
        ax.scatter(xs, ys, label=f"context {c}")
        for p, x, y in zip(pols, xs, ys, strict=True):
            ax.annotate(p["name"], (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"DRAM cycles reduction vs dense fp16 ({pr}, log)")
    ax.set_ylabel("perplexity change vs dense (%)")
    ax.set_title("Perplexity against DRAM time")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out / "pareto_decoder.png", dpi=110)
    plt.close(fig)
    written.append("pareto_decoder.png")
    return written


def write_decoder_report(doc: dict, out: Path) -> list[Path]:
    """Write report.md, report.json and the PNG plots to ``out``; returns the files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc["plots"] = _plots(doc, out)
    (out / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(doc))
    return [out / "report.md", out / "report.json", *(out / p for p in doc["plots"])]
