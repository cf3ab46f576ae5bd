"""The encoder report: attention policies on MiniLM, accuracy against DRAM traffic, time, energy.

Pipeline: model + corpus -> every policy's forward passes (embeddings, K/V traces) -> accuracy
against dense -> the traces of the first ``dram_texts`` inputs, coalesced, through the DRAM
simulator (:func:`psa.sim.simulate`) on each preset -> ``report.md``, ``report.json`` and
three PNG plots (:func:`run_report`, :func:`write_report`). ``psa report`` is the command
line over it; see ``docs/report.md``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psa.models.corpus import chunks, fingerprint
from psa.models.minilm import load_model
from psa.policies.encoder import DEFAULT_POLICIES, FP32_BITS, make_policy, parse_policies
from psa.reports.experiment import (
    PolicyResult,
    Stage,
    accuracy,
    check_presets,
    coalesce,
    concat_traces,
    dense_traces,
    ratio,
    run_policy,
)

__all__ = ["ReportConfig", "run_report", "write_report", "SCHEMA_VERSION", "build_report",
           "simulate_dram", "DEFAULT_PRESETS", "DEFAULT_POLICIES"]

SCHEMA_VERSION = 1
DEFAULT_PRESETS = "hbm2,ddr4-2400"



def _stats_dict(s) -> dict:
    return {"payload_bytes": int(s.payload_bytes), "dram_bytes": int(s.dram_bytes),
            "cycles": int(s.cycles), "ns": float(s.ns), "energy_nJ": float(s.energy_nJ),
            "row_hit_rate": float(s.row_hit_rate), "bandwidth_GBps": float(s.bandwidth_GBps)}


def _reduction(base: dict, other: dict) -> dict:
    return {"cycles": ratio(base["cycles"], other["cycles"]),
            "energy": ratio(base["energy_nJ"], other["energy_nJ"])}


def simulate_dram(results: list[PolicyResult], presets: list[str], n_texts: int,
                  progress=None) -> dict[str, dict]:
    """DRAM figures of each policy on each preset, against dense fp32 (``results[0]``, which
    must be dense) and against dense at the policy's own plane widths.

    Bytes: every input's coalesced trace rounded out to the preset's bursts (what the
    simulator counts as ``dram_bytes``), summed over all inputs. Cycles and energy: the
    simulator on the first ``n_texts`` inputs run back to back.

    Returns ``{policy name: {preset: {...}}}`` with keys ``dram_bytes`` and
    ``same_bits_dense_bytes`` (all inputs), ``sim`` and ``same_bits_dense_sim`` (subset
    statistics), ``vs_fp32`` and ``vs_same_bits`` (reduction factors: ``dram_bytes``,
    ``cycles``, ``energy``).
    """
    from psa.sim import load_preset, simulate

    dense = results[0]
    if dense.bits != FP32_BITS or dense.params:
        raise ValueError("simulate_dram: the first result must be dense fp32")
    specs = {p: load_preset(p) for p in presets}
    lengths = dense.lengths
    baseline: dict[tuple, dict[str, dict]] = {}

    def burst_bytes(traces, preset: str) -> int:
        return sum(coalesce(t).burst_bytes(specs[preset].org.burst_bytes) for t in traces)

    out: dict[str, dict] = {}
    for r in results:
        out[r.name] = {}
        if r.bits not in baseline:
            base = dense_traces(r.layout, lengths) if r.bits != FP32_BITS else r.traces
            batch = concat_traces(base[:n_texts])
            baseline[r.bits] = {p: {"bytes": burst_bytes(base, p),
                                    "sim": _stats_dict(simulate(batch, specs[p]))}
                                for p in presets}
        batch = concat_traces(r.traces[:n_texts])
        for p in presets:
            out[r.name][p] = {
                "dram_bytes": burst_bytes(r.traces, p),
                "same_bits_dense_bytes": baseline[r.bits][p]["bytes"],
                "sim": _stats_dict(simulate(batch, specs[p])),
                "same_bits_dense_sim": baseline[r.bits][p]["sim"],
            }
            if progress is not None:
                progress()
    for per in out.values():
        for p, d in per.items():
            ref = out[dense.name][p]
            d["vs_fp32"] = {"dram_bytes": ratio(ref["dram_bytes"], d["dram_bytes"]),
                            **_reduction(ref["sim"], d["sim"])}
            d["vs_same_bits"] = {"dram_bytes": ratio(d["same_bits_dense_bytes"],
                                                      d["dram_bytes"]),
                                 **_reduction(d["same_bits_dense_sim"], d["sim"])}
    return out


def build_report(results: list[PolicyResult], dram: dict[str, dict], presets: list[str],
                 meta: dict) -> dict:
    """The ``report.json`` document (see ``docs/report.md`` for the keys)."""
    dense = results[0]
    primary = presets[0]
    policies = []
    for r in results:
        acc = accuracy(dense.embeddings, r.embeddings)
        d = dram[r.name]
        n = r.lengths[:, None].astype(np.float64)
        policies.append({
            "name": r.name,
            "family": r.name.split("=")[0],
            "params": r.params,
            "bits": {"k_msb": r.bits[0], "k_lsb": r.bits[1], "v_msb": r.bits[2],
                     "v_lsb": r.bits[3]},
            "dram_bytes_reduction": d[primary]["vs_fp32"]["dram_bytes"],
            "cycles_reduction": d[primary]["vs_fp32"]["cycles"],
            "energy_reduction": d[primary]["vs_fp32"]["energy"],
            **acc,
            "trace_bytes_reduction": ratio(dense.payload_bytes, r.payload_bytes),
            "alive_fraction_per_layer": (r.alive / n).mean(axis=0).tolist(),
            "heads_per_layer": r.heads.mean(axis=0).tolist(),
            "kv_bytes_per_layer": r.layer_bytes.mean(axis=0).tolist(),
            "refetch_rate": r.refetch_rate,
            "dram": d,
            "seconds": r.seconds,
        })
    return {"schema_version": SCHEMA_VERSION, **meta, "primary_preset": primary,
            "policies": policies}


def _fmt(x: float, digits: int = 2) -> str:
    return "inf" if x == float("inf") else f"{x:.{digits}f}"


def _markdown(doc: dict) -> str:
    p0 = doc["primary_preset"]
    presets = doc["dram"]["presets"]
    c = doc["corpus"]
    lines = [
        "# Sparse attention policies on a real model",
        "",
        f"Model: {doc['model']['name']} ({doc['model']['layers']} layers, "
        f"{doc['model']['heads']} heads, d_head {doc['model']['d_head']}). Corpus: "
        f"{c['n_texts']} chunks of Python {c['python']} standard-library docstrings, "
        f"{c['min_tokens']}..{c['max_tokens']} tokens (mean {c['mean_tokens']:.0f}), seed "
        f"{c['seed']}, fingerprint `{c['fingerprint']}`. DRAM presets "
        f"{', '.join(presets)}: bytes are every input's coalesced K/V reads rounded to "
        f"bursts; cycles and energy simulate the first {doc['dram']['texts']} inputs back "
        "to back.",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"## Headline ({p0}, reductions against dense fp32)",
        "",
        "| policy | DRAM bytes | cycles | energy | cosine mean | cosine p5 | top-1 | top-5 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in doc["policies"]:
        lines.append(
            f"| {p['name']} | {_fmt(p['dram_bytes_reduction'])}x | "
            f"{_fmt(p['cycles_reduction'])}x | {_fmt(p['energy_reduction'])}x | "
            f"{p['cosine_mean']:.3f} | {p['cosine_p5']:.3f} | {p['top1_agreement']:.2f} | "
            f"{p['top5_agreement']:.2f} |")
    lines += ["", "## Pruning against quantization", "",
              "Reductions against dense fp32 and against dense attention at the policy's own "
              "K/V plane widths (every row, every plane read): the second isolates what "
              "pruning and on-demand LSB fetches save beyond narrower storage.", ""]
    head = "| policy | bits K/V (MSB+LSB) | LSB refetch | " + " | ".join(
        f"{pr} bytes vs fp32 | {pr} bytes vs same bits | {pr} cycles vs fp32 | "
        f"{pr} energy vs fp32" for pr in presets) + " |"
    lines += [head, "|---|---|---:|" + "---:|" * (4 * len(presets))]
    for p in doc["policies"]:
        b = p["bits"]
        row = (f"| {p['name']} | {b['k_msb']}+{b['k_lsb']} / {b['v_msb']}+{b['v_lsb']} | "
               f"{p['refetch_rate']:.2f} |")
        for pr in presets:
            d = p["dram"][pr]
            row += (f" {_fmt(d['vs_fp32']['dram_bytes'])}x | "
                    f"{_fmt(d['vs_same_bits']['dram_bytes'])}x | {_fmt(d['vs_fp32']['cycles'])}x"
                    f" | {_fmt(d['vs_fp32']['energy'])}x |")
        lines.append(row)
    lines += ["", f"## Simulated DRAM figures (first {doc['dram']['texts']} inputs)", "",
              "| policy | preset | DRAM bytes | cycles | time (us) | energy (uJ) | row hits |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for p in doc["policies"]:
        for pr in presets:
            s = p["dram"][pr]["sim"]
            lines.append(f"| {p['name']} | {pr} | {s['dram_bytes']:,} | {s['cycles']:,} | "
                         f"{s['ns'] / 1e3:.1f} | {s['energy_nJ'] / 1e3:.1f} | "
                         f"{s['row_hit_rate']:.2f} |")
    lines += ["", "## Where accuracy is lost", ""]
    lossy = [p for p in doc["policies"] if p["cosine_mean"] < 0.95 or p["top1_agreement"] < 0.9]
    if not lossy:
        lines.append("Every policy keeps mean cosine >= 0.95 and top-1 agreement >= 0.9.")
    for p in lossy:
        lines.append(f"- **{p['name']}**: mean cosine {p['cosine_mean']:.3f} (p5 "
                     f"{p['cosine_p5']:.3f}), top-1 agreement {p['top1_agreement']:.2f}.")
    lines += ["", "## Per layer", "", "Mean fraction of the input's tokens alive per layer:", "",
              "| policy | " + " | ".join(f"L{i}" for i in range(doc["model"]["layers"])) + " |",
              "|---|" + "---:|" * doc["model"]["layers"]]
    for p in doc["policies"]:
        lines.append(f"| {p['name']} | " + " | ".join(
            f"{x:.2f}" for x in p["alive_fraction_per_layer"]) + " |")
    lines += ["", "Plots: `alive_tokens.png`, `dram_bytes_per_layer.png`, `pareto.png`.", "",
              f"Run time {doc['timing']['total_s']:.0f} s (forward passes "
              f"{doc['timing']['forward_s']:.0f} s, DRAM simulation "
              f"{doc['timing']['dram_s']:.0f} s).", ""]
    return "\n".join(lines)


def _plots(doc: dict, out: Path) -> list[str]:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pols = doc["policies"]
    layers = np.arange(doc["model"]["layers"])
    written = []

    colors = plt.get_cmap("tab20")(np.linspace(0, 1, 20))
    styles = [dict(color=colors[i % 20], marker="os^vD"[i % 5]) for i in range(len(pols))]
    for key, ylabel, title, scale, fname in (
            ("alive_fraction_per_layer", "alive tokens (fraction of input)",
             "Tokens alive per layer (mean over the corpus)", 1.0, "alive_tokens.png"),
            ("kv_bytes_per_layer", "K/V bytes read per input (kB)",
             "DRAM K/V bytes per layer (payload, mean over the corpus)", 1e-3,
             "dram_bytes_per_layer.png")):
        fig, ax = plt.subplots(figsize=(8.5, 4.4))
        for p, style in zip(pols, styles, strict=True):
            ax.plot(layers, np.asarray(p[key]) * scale, label=p["name"], **style)
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.set_xticks(layers)
        ax.set_ylim(0, None)
        ax.set_title(title)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=120)
        plt.close(fig)
        written.append(fname)

    fig, ax = plt.subplots(figsize=(7, 4.6))
    families: dict[str, list[dict]] = {}
    for p in pols:
        families.setdefault(p["family"], []).append(p)
    for fam, ps in families.items():
        ps = sorted(ps, key=lambda p: p["dram_bytes_reduction"])
        ax.plot([p["dram_bytes_reduction"] for p in ps], [p["cosine_mean"] for p in ps],
                marker="o", label=fam)
        for p in ps:
            ax.annotate(p["name"].split("=")[-1], (p["dram_bytes_reduction"], p["cosine_mean"]),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
    ax.set_xlabel(f"DRAM bytes reduction vs dense fp32 ({doc['primary_preset']}, log)")
    ax.set_ylabel("cosine to dense embedding (mean)")
    ax.set_title("Accuracy against DRAM traffic")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=120)
    plt.close(fig)
    written.append("pareto.png")
    return written




@dataclass(frozen=True)
class ReportConfig:
    """What the encoder report runs: model, policies, corpus and DRAM presets.

    ``model`` is a named model (``minilm``) or a Hugging Face BERT folder; ``policies`` the
    comma-separated list of :func:`psa.policies.encoder.parse_policies`; ``dram_texts`` the
    number of inputs (the first ones) whose traces the DRAM simulator runs for cycles and
    energy (bytes count every input).
    """

    model: str | Path = "minilm"
    policies: str = DEFAULT_POLICIES
    n_texts: int = 40
    min_tokens: int = 32
    max_tokens: int = 256
    seed: int = 0
    dram_texts: int = 4
    presets: tuple[str, ...] = tuple(DEFAULT_PRESETS.split(","))
    command: str = "psa report"

    def check(self) -> None:
        """Raise ValueError naming the option for a bad setting (before any work)."""
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"--min-tokens ({self.min_tokens}) must be <= --max-tokens "
                             f"({self.max_tokens})")
        check_presets(self.presets)
        parse_policies(self.policies)




def run_report(cfg: ReportConfig, stage: Stage | None = None
               ) -> tuple[dict, list[PolicyResult]]:
    """Run the report; returns the report document and each policy's results (traces).

    ``stage(description, total)`` is called at the start of each stage (forward passes, DRAM
    simulation) and returns a function to call once per unit of work; for progress bars.
    """
    cfg.check()
    stage = stage or (lambda _d, _n: (lambda: None))
    t0 = time.perf_counter()
    specs = parse_policies(cfg.policies)
    model = load_model(cfg.model)
    mcfg = model.config
    if cfg.max_tokens > model.max_tokens:
        raise ValueError(f"--max-tokens must be <= {model.max_tokens} for this model")
    pols = [make_policy(name, value, mcfg.num_hidden_layers) for name, value in specs]
    corpus = chunks(model.tokenizer, cfg.n_texts, seed=cfg.seed, min_tokens=cfg.min_tokens,
                    max_tokens=cfg.max_tokens)
    inputs = [c.ids for c in corpus]
    dram_texts = min(cfg.dram_texts, cfg.n_texts)
    presets = list(cfg.presets)

    tick = stage("forward passes", len(pols) * len(inputs))
    results = [run_policy(model, inputs, pol, progress=tick) for pol in pols]
    t_fwd = time.perf_counter() - t0
    t1 = time.perf_counter()
    dram = simulate_dram(results, presets, dram_texts,
                         progress=stage("DRAM simulation", len(pols) * len(presets)))
    t_dram = time.perf_counter() - t1

    meta = {
        "command": cfg.command,
        "model": {"name": str(cfg.model),
                  "layers": mcfg.num_hidden_layers, "heads": mcfg.num_attention_heads,
                  "d_head": mcfg.d_head, "hidden": mcfg.hidden_size},
        "corpus": {"n_texts": cfg.n_texts, "seed": cfg.seed, "min_tokens": cfg.min_tokens,
                   "max_tokens": cfg.max_tokens, "fingerprint": fingerprint(corpus),
                   "mean_tokens": float(np.mean([len(x) for x in inputs])),
                   "python": f"{sys.version_info[0]}.{sys.version_info[1]}"},
        "dram": {"presets": presets, "texts": dram_texts, "coalesced": True},
        "timing": {},
    }
    doc = build_report(results, dram, presets, meta)
    doc["timing"] = {"forward_s": t_fwd, "dram_s": t_dram,
                     "total_s": time.perf_counter() - t0}
    return doc, results


def write_report(doc: dict, results: list[PolicyResult], out: Path,
                 traces: bool = False) -> list[Path]:
    """Write report.md, report.json and the plots (and, with ``traces``, each policy's
    simulated K/V trace as ``out/traces/<policy>.trace``); returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(doc, out)
    doc["plots"] = plots
    (out / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(doc))
    written = [out / "report.md", out / "report.json", *(out / p for p in plots)]
    if traces:
        (out / "traces").mkdir(exist_ok=True)
        n = doc["dram"]["texts"]
        for r in results:
            path = out / "traces" / f"{r.name}.trace"
            concat_traces(r.traces[:n]).write(path)
            written.append(path)
    return written
