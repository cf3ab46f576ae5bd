"""``psa demo``: cascade token + head pruning and progressive quantization, synthetic workload."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from psa.golden.cascade import CascadeConfig, dense_trace, run_cascade, spatten_token_schedule
from psa.golden.trace import KVLayout, Plane
from psa.golden.workloads import SyntheticWorkload

from .options import ScheduleType, check_writable_dir, check_writable_file


def _check_schedule(schedule: dict, option: str, total: int, what: str) -> None:
    """Refuse keep values outside what the workload has (no silent clamping)."""
    for layer, keep in schedule.items():
        if isinstance(keep, float):
            if not 0.0 < keep <= 1.0:
                raise ValueError(f"{option}: layer {layer} keeps {keep}; a fraction must be in "
                                 f"(0, 1]")
        elif not 1 <= keep <= total:
            raise ValueError(f"{option}: layer {layer} keeps {keep} {what}; a count must be in "
                             f"1..{total} (the workload has {total} {what})")


def _lsb_byte_share(s) -> float:
    """Share of a layer's K/V bytes read that come from the LSB planes."""
    by_plane = s.trace.bytes_by("plane")
    lsb = by_plane.get(int(Plane.K_LSB), 0) + by_plane.get(int(Plane.V_LSB), 0)
    total = s.trace.payload_bytes
    return lsb / total if total else 0.0


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@click.command()
@click.option("--layers", type=click.IntRange(1, 96), default=12, show_default=True,
              help="Transformer layers.")
@click.option("--heads", type=click.IntRange(1, 256), default=12, show_default=True,
              help="Attention heads per layer.")
@click.option("--tokens", type=click.IntRange(1, 8192), default=1024, show_default=True,
              help="Sequence length.")
@click.option("--d-head", type=click.IntRange(8, 512), default=64, show_default=True,
              help="Head dimension (elements per K/V row).")
@click.option("--seed", type=int, default=0, show_default=True, help="Workload seed.")
@click.option("--token-keep", type=ScheduleType(), default=None,
              help="Tokens kept after a layer, e.g. '2:0.9,5:0.7,8:0.2,10:0.1' (fractions of "
                   "the sequence, or counts). Default: SpAtten's GPT-2 schedule scaled to depth.")
@click.option("--head-keep", type=ScheduleType(), default=None,
              help="Heads kept after a layer, e.g. '8:10,10:8'. Default: keep 10/12 then 8/12 "
                   "of the heads after the last two token-pruning points.")
@click.option("--msb-bits", type=click.IntRange(2, 16), default=8, show_default=True,
              help="K/V MSB plane bits (first fetch).")
@click.option("--lsb-bits", type=click.IntRange(0, 16), default=4, show_default=True,
              help="K/V LSB plane bits (refetched for flat rows; 0 disables).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Refetch LSBs when a row's largest probability is below this.")
@click.option("--v-keep", type=click.FloatRange(0, 1, min_open=True), default=1.0,
              show_default=True, help="Local value pruning: V rows per query kept (fraction).")
@click.option("--trace-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write dense.trace, dense_fp32.trace and pruned.trace here (for psa dram).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the per-layer figures as JSON.")
def demo(layers, heads, tokens, d_head, seed, token_keep, head_keep, msb_bits, lsb_bits,
         threshold, v_keep, trace_dir, json_out):
    """Cascade token + head pruning and progressive quantization on a synthetic workload.

    Prints per layer the alive tokens, kept heads, the share of query rows that refetched
    LSBs and the share of the layer's bytes read that are LSBs, then the K/V bytes
    read against dense attention (fp32, and at the same bit widths).
    """
    console = Console()
    t0 = time.perf_counter()
    if token_keep is not None:
        _check_schedule(token_keep, "--token-keep", tokens, "tokens")
    if head_keep is not None:
        _check_schedule(head_keep, "--head-keep", heads, "heads")
    if trace_dir is not None:
        check_writable_dir(trace_dir, "--trace-dir")
    if json_out is not None:
        check_writable_file(json_out, "--json")
    token_keep = spatten_token_schedule(layers) if token_keep is None else token_keep
    if head_keep is None:
        points = sorted(token_keep)[-2:]
        head_keep = dict(zip(points, (round(heads * 10 / 12), round(heads * 8 / 12))[-len(points):],
                             strict=True))
    workload = SyntheticWorkload(layers, heads, tokens, d_head, seed)
    config = CascadeConfig(token_keep=token_keep, head_keep=head_keep, k_msb_bits=msb_bits,
                           k_lsb_bits=lsb_bits, v_msb_bits=msb_bits, v_lsb_bits=lsb_bits,
                           refetch_threshold=threshold, v_keep=v_keep)
    with console.status("running the cascade...") as status:
        run = run_cascade(workload, config,
                          progress=lambda layer: status.update(f"layer {layer + 1}/{layers}"))
    pruned = run.trace()
    same_bits = dense_trace(run.layout, tokens)
    fp32_layout = KVLayout(layers, heads, tokens, d_head, 32, 0, 32, 0)
    fp32 = dense_trace(fp32_layout, tokens)

    table = Table(title=f"Cascade pruning: {layers} layers x {heads} heads, {tokens} tokens, "
                        f"d_head {d_head}, K/V {msb_bits}+{lsb_bits} bits, seed {seed}")
    for col in ("layer", "alive tokens", "heads kept", "LSB refetch (query rows)",
                "LSB share of bytes read", "K/V bytes read"):
        table.add_column(col, justify="right")
    rows = []
    for s in run.layers:
        table.add_row(str(s.layer), str(len(s.alive)), str(len(s.heads)),
                      f"{s.refetch_rate:.1%}", f"{_lsb_byte_share(s):.1%}",
                      f"{s.trace.payload_bytes:,}")
        rows.append({"layer": s.layer, "alive_tokens": len(s.alive), "heads": len(s.heads),
                     "refetch_rate": s.refetch_rate, "refetch_rows_share": s.refetch_rate,
                     "lsb_bytes_share": _lsb_byte_share(s), "kv_bytes": s.trace.payload_bytes,
                     "k_msb_rows": s.k_msb_rows, "k_lsb_rows": s.k_lsb_rows,
                     "v_msb_rows": s.v_msb_rows, "v_lsb_rows": s.v_lsb_rows})
    console.print(table)
    p, d32, dsb = pruned.payload_bytes, fp32.payload_bytes, same_bits.payload_bytes
    console.print(f"K/V DRAM bytes: {_mb(p)} vs {_mb(d32)} dense fp32, "
                  f"reduction {d32 / p:.2f}x")
    console.print(f"K/V DRAM bytes: {_mb(p)} vs {_mb(dsb)} dense at {msb_bits}+{lsb_bits} bits, "
                  f"reduction {dsb / p:.2f}x (pruning + progressive refetch)")
    console.print(f"In 64-byte bursts: {_mb(pruned.burst_bytes())} vs "
                  f"{_mb(fp32.burst_bytes())} dense fp32")
    if trace_dir is not None:
        for name, tr in (("pruned", pruned), ("dense", same_bits), ("dense_fp32", fp32)):
            tr.write(trace_dir / f"{name}.trace")
        console.print(f"Traces written to {trace_dir}/ (pruned, dense, dense_fp32 .trace); "
                      f"try: psa dram {trace_dir}/dense_fp32.trace {trace_dir}/pruned.trace")
    if json_out is not None:
        json_out.write_text(json.dumps({
            "schema_version": 1, "workload": workload.__dict__ | {}, "layers": rows,
            "kv_bytes": {"pruned": p, "dense_fp32": d32, "dense_same_bits": dsb},
            "reduction_vs_fp32": d32 / p, "reduction_vs_same_bits": dsb / p,
        }, indent=2, default=str))
    console.print(f"[dim]done in {time.perf_counter() - t0:.1f} s[/dim]")
