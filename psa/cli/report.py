"""``psa report``: attention policies on a real model, accuracy against DRAM traffic, time, energy.

Pipeline: model + corpus -> every policy's forward passes (embeddings, K/V traces) -> accuracy
against dense -> the traces of the first ``--dram-texts`` inputs, coalesced, through the DRAM
simulator (:func:`psa.sim.simulate`) on each preset -> ``report.md``, ``report.json`` and
three PNG plots. See ``docs/report.md``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

if "numpy" not in sys.modules:
    # One BLAS thread: the matrices are small (n x 384), and on a shared 2-core machine BLAS
    # threads spinning against other jobs made forward passes up to 5x slower. Set
    # OPENBLAS_NUM_THREADS yourself to override.
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import click
import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from psa.golden.corpus import chunks, fingerprint
from psa.golden.experiment import (
    PolicyResult,
    accuracy,
    coalesce,
    concat_traces,
    dense_traces,
    run_policy,
)
from psa.golden.model import load_model
from psa.golden.policies import DEFAULT_POLICIES, FP32_BITS, make_policy, parse_policies

__all__ = ["report", "SCHEMA_VERSION", "build_report", "simulate_dram"]

SCHEMA_VERSION = 1
DEFAULT_PRESETS = "hbm2,ddr4-2400"


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("inf")


def _stats_dict(s) -> dict:
    return {"payload_bytes": int(s.payload_bytes), "dram_bytes": int(s.dram_bytes),
            "cycles": int(s.cycles), "ns": float(s.ns), "energy_nJ": float(s.energy_nJ),
            "row_hit_rate": float(s.row_hit_rate), "bandwidth_GBps": float(s.bandwidth_GBps)}


def _reduction(base: dict, other: dict) -> dict:
    return {"cycles": _ratio(base["cycles"], other["cycles"]),
            "energy": _ratio(base["energy_nJ"], other["energy_nJ"])}


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
            d["vs_fp32"] = {"dram_bytes": _ratio(ref["dram_bytes"], d["dram_bytes"]),
                            **_reduction(ref["sim"], d["sim"])}
            d["vs_same_bits"] = {"dram_bytes": _ratio(d["same_bits_dense_bytes"],
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
            "trace_bytes_reduction": _ratio(dense.payload_bytes, r.payload_bytes),
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


def _command_line(ctx: click.Context) -> str:
    """``psa report`` with the options given on the command line (not the defaults)."""
    import shlex

    from click.core import ParameterSource

    parts = ["psa", "report"]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            continue
        parts += [param.opts[0], shlex.quote(str(ctx.params[param.name]))]
    return " ".join(parts)


@click.command()
@click.option("--model", "model_name", default="minilm", show_default=True,
              help="Named model (minilm: sentence-transformers/all-MiniLM-L6-v2).")
@click.option("--model-dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=None, help="A Hugging Face BERT folder instead of --model.")
@click.option("--policies", default=DEFAULT_POLICIES, show_default=True,
              help="Comma-separated policies: dense, spatten, progressive, topk, window. A bare "
                   "name runs its default sweep; NAME=V1/V2 sets the knob (spatten: preset "
                   "quant|tokens|default|aggressive; progressive: final keep ratio; topk: keep "
                   "ratio; window: window as a fraction of the input). Dense always runs.")
@click.option("--n-texts", type=click.IntRange(2, 400), default=40, show_default=True,
              help="Corpus inputs (chunks of stdlib docstrings).")
@click.option("--min-tokens", type=click.IntRange(3, 512), default=32, show_default=True,
              help="Shortest input in tokens.")
@click.option("--max-tokens", type=click.IntRange(3, 512), default=256, show_default=True,
              help="Longest input in tokens.")
@click.option("--seed", type=int, default=0, show_default=True, help="Corpus seed.")
@click.option("--dram-texts", type=click.IntRange(1, 400), default=4, show_default=True,
              help="Inputs whose traces run through the DRAM simulator for cycles and energy "
                   "(the first ones); bytes count every input.")
@click.option("--dram", "dram_presets", default=DEFAULT_PRESETS, show_default=True,
              help="Comma-separated DRAM presets; the first gives the headline reductions.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("report"), show_default=True, help="Output folder.")
@click.option("--traces/--no-traces", default=False, show_default=True,
              help="Also write each policy's simulated K/V trace (coalesced, the first "
                   "--dram-texts inputs) as OUT/traces/<policy>.trace, for psa dram.")
def report(model_name, model_dir, policies, n_texts, min_tokens, max_tokens, seed, dram_texts,
           dram_presets, out, traces):
    """Pruning policies on a real model: accuracy against DRAM bytes, cycles and energy.

    Runs every policy over the same corpus with the NumPy encoder, compares its sentence
    embeddings with dense attention (cosine, nearest-neighbour agreement), and simulates the
    K/V reads of the first --dram-texts inputs on each DRAM preset. Writes report.md,
    report.json and PNG plots to --out.
    """
    from psa.sim import list_presets

    console = Console(stderr=True)
    t0 = time.perf_counter()
    if min_tokens > max_tokens:
        raise ValueError(f"--min-tokens ({min_tokens}) must be <= --max-tokens ({max_tokens})")
    presets = [p.strip() for p in dram_presets.split(",") if p.strip()]
    known = list_presets()
    for p in presets:
        if p not in known and not Path(p).is_file():
            raise ValueError(f"--dram: unknown preset {p!r}; one of {', '.join(known)}")
    if not presets:
        raise ValueError("--dram: give at least one preset")
    specs = parse_policies(policies)
    model = load_model(model_dir if model_dir is not None else model_name)
    cfg = model.config
    if max_tokens > model.max_tokens:
        raise ValueError(f"--max-tokens must be <= {model.max_tokens} for this model")
    pols = [make_policy(name, value, cfg.num_hidden_layers) for name, value in specs]
    corpus = chunks(model.tokenizer, n_texts, seed=seed, min_tokens=min_tokens,
                    max_tokens=max_tokens)
    inputs = [c.ids for c in corpus]
    dram_texts = min(dram_texts, n_texts)

    results: list[PolicyResult] = []
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("forward passes", total=len(pols) * len(inputs))
        for pol in pols:
            bar.update(task, description=f"forward passes: {pol.name}")
            results.append(run_policy(model, inputs, pol,
                                      progress=lambda: bar.advance(task)))
        t_fwd = time.perf_counter() - t0
        sim_task = bar.add_task("DRAM simulation", total=len(pols) * len(presets))
        t1 = time.perf_counter()
        dram = simulate_dram(results, presets, dram_texts,
                             progress=lambda: bar.advance(sim_task))
        t_dram = time.perf_counter() - t1

    meta = {
        "command": _command_line(click.get_current_context()),
        "model": {"name": model_name if model_dir is None else str(model_dir),
                  "layers": cfg.num_hidden_layers, "heads": cfg.num_attention_heads,
                  "d_head": cfg.d_head, "hidden": cfg.hidden_size},
        "corpus": {"n_texts": n_texts, "seed": seed, "min_tokens": min_tokens,
                   "max_tokens": max_tokens, "fingerprint": fingerprint(corpus),
                   "mean_tokens": float(np.mean([len(x) for x in inputs])),
                   "python": f"{sys.version_info[0]}.{sys.version_info[1]}"},
        "dram": {"presets": presets, "texts": dram_texts, "coalesced": True},
        "timing": {},
    }
    doc = build_report(results, dram, presets, meta)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(doc, out)
    doc["timing"] = {"forward_s": t_fwd, "dram_s": t_dram,
                     "total_s": time.perf_counter() - t0}
    doc["plots"] = plots
    (out / "report.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(doc))
    if traces:
        (out / "traces").mkdir(exist_ok=True)
        for r in results:
            concat_traces(r.traces[:dram_texts]).write(out / "traces" / f"{r.name}.trace")

    table = Table(title=f"Policies vs dense fp32 on {presets[0]} ({n_texts} inputs, DRAM over "
                        f"{dram_texts})")
    for col in ("policy", "DRAM bytes", "cycles", "energy", "cos mean", "cos p5", "top-1",
                "top-5"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for p in doc["policies"]:
        table.add_row(p["name"], f"{_fmt(p['dram_bytes_reduction'])}x",
                      f"{_fmt(p['cycles_reduction'])}x", f"{_fmt(p['energy_reduction'])}x",
                      f"{p['cosine_mean']:.3f}", f"{p['cosine_p5']:.3f}",
                      f"{p['top1_agreement']:.2f}", f"{p['top5_agreement']:.2f}")
    Console().print(table)
    console.print(f"wrote {out / 'report.md'}, {out / 'report.json'}, "
                  f"{', '.join(str(out / p) for p in plots)} in {doc['timing']['total_s']:.0f} s")
