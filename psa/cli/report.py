"""``psa report``: the command line over :mod:`psa.reports.encoder` (policies on MiniLM) and,
with ``--model smollm2``, :mod:`psa.reports.decoder` (decode-mode policies on SmolLM2)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from psa.cli.progress import progress_bar, table_console
from psa.reports.encoder import (
    DEFAULT_POLICIES,
    DEFAULT_PRESETS,
    ReportConfig,
    run_report,
    write_report,
)

__all__ = ["report"]


def _command_line(ctx: click.Context) -> str:
    """``psa report`` with the options given on the command line (not the defaults)."""
    from click.core import ParameterSource

    parts = ["psa", "report"]
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            continue
        parts += [param.opts[0], shlex.quote(str(ctx.params[param.name]))]
    return " ".join(parts)


def _fmt(x: float) -> str:
    return f"{x:.2f}"


@click.command()
@click.option("--model", "model_name", default="minilm", show_default=True,
              help="Named model (minilm: sentence-transformers/all-MiniLM-L6-v2; smollm2: "
                   "SmolLM2-135M decode-mode report, see --context/--decode).")
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
@click.option("--context", "contexts", default=None,
              help="smollm2 only: comma-separated context lengths C, the tokens in the cache "
                   "at the last decode step (C - --decode prompt tokens, then --decode "
                   "steps; --decode < C <= 8192) [default: 512].")
@click.option("--decode", "n_decode", type=int, default=None,
              help="smollm2 only: teacher-forced decode steps per context and text "
                   "[default: 32].")
@click.option("--texts", "n_windows", type=int, default=None,
              help="smollm2 only: disjoint windows of the prose corpus; perplexity pooled "
                   "over all of them, bytes and cycles per text, min..max per text "
                   "reported [default: 2].")
@click.option("--dram-every", type=int, default=None,
              help="smollm2 only: simulate every N-th decode step's trace for cycles and "
                   "energy, scaled (1 = all steps) [default: 8]. Bytes count every step.")
@click.option("--dram-check", is_flag=True, default=False,
              help="smollm2 only: also simulate every step and report the error of the "
                   "--dram-every estimate (slower).")
def report(model_name, model_dir, policies, n_texts, min_tokens, max_tokens, seed, dram_texts,
           dram_presets, out, traces, contexts, n_decode, n_windows, dram_every, dram_check):
    """Pruning policies on a real model: accuracy against DRAM bytes, cycles and energy.

    Runs every policy over the same corpus with the NumPy encoder, compares its sentence
    embeddings with dense attention (cosine, nearest-neighbour agreement), and simulates the
    K/V reads of the first --dram-texts inputs on each DRAM preset. Writes report.md,
    report.json and PNG plots to --out.
    """
    from threadpoolctl import threadpool_limits

    ctx = click.get_current_context()
    if model_name == "smollm2":
        _decoder_report(ctx, policies, seed, dram_presets, out, contexts, n_decode, n_windows,
                        dram_every, dram_check)
        return
    _refuse_decoder_options(ctx, model_name)
    cfg = ReportConfig(
        model=model_dir if model_dir is not None else model_name, policies=policies,
        n_texts=n_texts, min_tokens=min_tokens, max_tokens=max_tokens, seed=seed,
        dram_texts=dram_texts,
        presets=tuple(p.strip() for p in dram_presets.split(",") if p.strip()),
        command=_command_line(click.get_current_context()))
    cfg.check()
    _check_writable(out)
    console = Console(stderr=True)
    # One BLAS thread: the matrices are small (n x 384), and on a shared 2-core machine BLAS
    # threads spinning against other jobs made forward passes up to 5x slower.
    with threadpool_limits(1), progress_bar(console) as stage:
        doc, results = run_report(cfg, stage)
    written = write_report(doc, results, out, traces)

    table = Table(title=f"Policies vs dense fp32 on {cfg.presets[0]} ({n_texts} inputs, DRAM "
                        f"over {doc['dram']['texts']})")
    for col in ("policy", "DRAM bytes", "cycles", "energy", "cos mean", "cos p5", "top-1",
                "top-5"):
        # Policy names identify rows: never truncate them, wrap the figures instead.
        table.add_column(col, justify="left" if col == "policy" else "right",
                         no_wrap=col == "policy", overflow="fold")
    for p in doc["policies"]:
        table.add_row(p["name"], f"{_fmt(p['dram_bytes_reduction'])}x",
                      f"{_fmt(p['cycles_reduction'])}x", f"{_fmt(p['energy_reduction'])}x",
                      f"{p['cosine_mean']:.3f}", f"{p['cosine_p5']:.3f}",
                      f"{p['top1_agreement']:.2f}", f"{p['top5_agreement']:.2f}")
    table_console().print(table)
    console.print(f"wrote {', '.join(str(p) for p in written[:2 + len(doc['plots'])])} "
                  f"in {doc['timing']['total_s']:.0f} s")


def _check_writable(out: Path) -> None:
    """Refuse an --out folder that cannot be created or written, before the run."""
    from psa.cli.options import check_writable_dir

    check_writable_dir(out, "--out")


_DECODER_ONLY = ("contexts", "n_decode", "n_windows", "dram_every", "dram_check")
_ENCODER_ONLY = ("model_dir", "n_texts", "min_tokens", "max_tokens", "dram_texts", "traces")


def _given(ctx: click.Context, names) -> list[str]:
    from click.core import ParameterSource

    by_name = {p.name: p for p in ctx.command.params}
    return [by_name[n].opts[0] for n in names
            if ctx.get_parameter_source(n) is ParameterSource.COMMANDLINE]


def _refuse_decoder_options(ctx: click.Context, model_name: str) -> None:
    bad = _given(ctx, _DECODER_ONLY)
    if bad:
        raise ValueError(f"{', '.join(bad)}: only with --model smollm2 (got --model "
                         f"{model_name})")


def _decoder_report(ctx, policies, seed, dram_presets, out, contexts, n_decode, n_windows,
                    dram_every, dram_check):
    """``psa report --model smollm2``: :mod:`psa.reports.decoder`."""
    from threadpoolctl import threadpool_limits

    from psa.reports import decoder as dec

    bad = _given(ctx, _ENCODER_ONLY)
    if bad:
        raise ValueError(f"{', '.join(bad)}: not used by --model smollm2 (options there: "
                         "--context, --decode, --texts, --dram-every, --dram-check, --policies, "
                         "--dram, --seed, --out)")
    from click.core import ParameterSource

    if ctx.get_parameter_source("policies") is not ParameterSource.COMMANDLINE:
        policies = dec.DEFAULT_DECODER_POLICIES
    try:
        ctx_t = (tuple(int(x) for x in contexts.split(",") if x.strip())
                 if contexts is not None else dec.DEFAULT_CONTEXTS)
    except ValueError:
        raise ValueError(f"--context: expected comma-separated integers such as 512,2048, "
                         f"got {contexts!r}") from None
    cfg = dec.DecoderReportConfig(
        contexts=ctx_t, decode=dec.DEFAULT_DECODE if n_decode is None else n_decode,
        texts=dec.DEFAULT_TEXTS if n_windows is None else n_windows,
        dram_check=dram_check, policies=policies,
        presets=tuple(p.strip() for p in dram_presets.split(",") if p.strip()),
        dram_every=dec.DEFAULT_DRAM_EVERY if dram_every is None else dram_every, seed=seed,
        command=_command_line(ctx))
    cfg.check()  # the model's max_context is checked once it is loaded
    _check_writable(out)
    console = Console(stderr=True)
    with threadpool_limits(1), progress_bar(console) as stage:
        doc = dec.run_decoder_report(cfg, stage)
    written = dec.write_decoder_report(doc, out)
    table = Table(title=f"Decode policies vs dense on {doc['primary_preset']} "
                        f"({doc['dram']['cycles_method']})")
    for col in dec.HEADLINE_COLUMNS:
        table.add_column(col, justify="left" if col == "policy" else "right",
                         no_wrap=col == "policy", overflow="fold")
    for row in dec.headline_rows(doc):
        table.add_row(*row)
    table_console().print(table)
    srows = dec.sampling_rows(doc)
    if srows:
        st = Table(title=f"Error of --dram-every {doc['dram']['every']} against all steps")
        for col in ("context", "policy", "preset", "cycles, all steps", "sampled estimate",
                    "error", "energy error"):
            st.add_column(col, justify="left" if col in ("policy", "preset") else "right",
                          no_wrap=col == "policy", overflow="fold")
        for row in srows:
            st.add_row(*row)
        table_console().print(st)
    console.print(f"wrote {', '.join(str(p) for p in written)} in "
                  f"{doc['timing']['total_s']:.0f} s (peak memory "
                  f"{doc['timing']['peak_rss_MB']:.0f} MB)")
