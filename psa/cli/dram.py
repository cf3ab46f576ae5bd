"""``psa dram TRACE... [--compare BASELINE] [--preset hbm2] [--json out.json] [--plot out.png]``.

Runs access traces (project text format, ``LD``/``ST`` lines, or SpAtten workload CSVs)
through the cycle-level DRAM model and reports traffic, bandwidth, row-buffer behaviour,
latency, commands and energy. With ``--compare`` (or several traces: the first is the
baseline) the others are reported against the baseline with reduction factors.
"""

from __future__ import annotations

import os
import sys

# The DRAM model does no linear algebra: one BLAS thread, so numpy's import starts no idle
# BLAS thread pool (it spins on a shared machine). Only before numpy is first imported.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import click  # noqa: E402
from rich.console import Console  # noqa: E402

from psa.sim.addr_map import DEFAULT_MAPPING, MAPPINGS  # noqa: E402
from psa.sim.scheduler import SCHEDULERS  # noqa: E402

from .options import check_writable_file  # noqa: E402
from .progress import heartbeat  # noqa: E402


def _list_presets(console: Console) -> None:
    from rich.table import Table

    from psa.sim.spec import list_presets, load_preset

    table = Table(title="DRAM presets (or pass --preset path/to/your.toml)",
                  title_justify="left")
    for col in ("name", "standard", "organisation", "peak", "description"):
        table.add_column(col, no_wrap=col == "name")  # names identify rows: never cut
    for name, desc in list_presets().items():
        s = load_preset(name)
        o = s.org
        unit = "PC" if s.pseudo_channels else "rank"
        table.add_row(name, s.standard,
                      f"{o.channels} ch x {o.ranks} {unit} x {o.banks} banks, "
                      f"{o.burst_bytes} B bursts, {o.capacity_bytes >> 30} GiB",
                      f"{s.peak_GBps:.1f} GB/s", desc)
    console.print(table)


@click.command("dram")
@click.argument("traces", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--preset", default="ddr4-2400", show_default=True,
              help="Preset name (see --list-presets) or a .toml preset file.")
@click.option("--list-presets", "list_only", is_flag=True, help="List the presets and exit.")
@click.option("--compare", "baseline_path", type=click.Path(dir_okay=False),
              help="Baseline trace (e.g. dense) to compare each TRACE against.")
@click.option("--csv", "csv_format", is_flag=True,
              help="Read the traces as SpAtten workload CSVs (default: by .csv suffix).")
@click.option("--full-bits", default=32, show_default=True,
              help="SpAtten CSV: bits of an unquantized element (quant bits -1).")
@click.option("--placement", type=click.Choice(["contiguous", "scattered"]),
              default="contiguous", show_default=True,
              help="SpAtten CSV: fetch the first N tokens or a random subset.")
@click.option("--seed", default=0, show_default=True, help="Seed for --placement scattered.")
@click.option("--max-rows", type=click.IntRange(min=1), default=None,
              help="SpAtten CSV: read only the first N rows (N >= 1).")
@click.option("--scheduler", type=click.Choice(SCHEDULERS), default="frfcfs",
              show_default=True,
              help="frfcfs: row hits first, a request stays queued until its RD/WR; "
                   "frfcfs-ramulator: Ramulator 2.1's controller (ready first, a request leaves "
                   "its queue at its ACT).")
@click.option("--wrap-addresses", is_flag=True,
              help="Ignore address bits above the preset's capacity (as Ramulator does) "
                   "instead of refusing such addresses.")
@click.option("--mapping", type=click.Choice(MAPPINGS, case_sensitive=False),
              default=DEFAULT_MAPPING, show_default=True, help="Address mapping.")
@click.option("--page-policy", type=click.Choice(["open", "closed"]), default="open",
              show_default=True)
@click.option("--refresh", type=click.Choice(["on", "off"]), default="on", show_default=True)
@click.option("--queue-depth", default=32, show_default=True,
              help="Read and write queue entries per channel.")
@click.option("--max-outstanding", default=0, show_default=True,
              help="Requests in flight at most (0: bounded by the queues only).")
@click.option("--channels", type=click.IntRange(1), default=None,
              help="Override the preset's channel count (power of two).")
@click.option("--ranks", type=click.IntRange(1), default=None,
              help="Override ranks per channel (pseudo-channels on HBM2).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Simulate the channels in N local processes (per-channel admission: each "
                   "channel takes its own requests in trace order; any N gives the same "
                   "result).")
@click.option("--dask", "dask_address", metavar="ADDRESS",
              help="Simulate the channels as tasks on this Dask scheduler, e.g. "
                   "tcp://host:8786 (per-channel admission, as --jobs; workers must see the "
                   "trace files).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write JSON here.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), help="Write a PNG here.")
@click.option("--compile", "compile_only", is_flag=True,
              help="Compile (or load) the DRAM kernel and exit: run once after installing.")
def dram(traces, preset, list_only, baseline_path, csv_format, full_bits, placement, seed,
         max_rows, scheduler, wrap_addresses, mapping, page_policy, refresh, queue_depth,
         max_outstanding,
         channels, ranks, jobs, dask_address, json_out, plot_out, compile_only) -> None:
    """Run access TRACES through the cycle-level DRAM model.

    Several TRACES are compared against the first (e.g. dense.trace pruned.trace);
    --compare BASELINE compares every TRACE against BASELINE.
    """
    console, err = Console(), Console(stderr=True)
    if list_only:
        _list_presets(console)
        return
    if compile_only:
        from psa.sim.memory_system import ensure_compiled
        ensure_compiled(err, force_message=True)
        return
    if not traces:
        raise click.UsageError("give at least one TRACE (or --list-presets)")
    if jobs is not None and dask_address:
        raise click.UsageError("give either --jobs (local processes) or --dask (a cluster)")
    if (jobs is not None or dask_address) and max_outstanding:
        raise click.UsageError("--max-outstanding bounds requests across channels: it needs "
                               "the single trace-order stream (no --jobs / --dask)")
    if json_out:
        check_writable_file(Path(json_out), "--json")
    if plot_out:
        check_writable_file(Path(plot_out), "--plot")
    from psa.sim import ControllerConfig, load_preset, load_workload
    from psa.sim.memory_system import ensure_compiled
    from psa.sim.report import plot, stats_table, write_json
    from psa.sim.stream import simulate_trace

    spec = load_preset(preset)
    if channels is not None or ranks is not None:
        spec = spec.with_overrides(channels=channels, ranks=ranks)
    config = ControllerConfig(scheduler=scheduler, page_policy=page_policy, mapping=mapping,
                              read_queue=queue_depth, write_queue=queue_depth,
                              refresh=refresh == "on", max_outstanding=max_outstanding,
                              wrap_addresses=wrap_addresses)
    paths = list(traces)
    if baseline_path is not None:
        paths = [baseline_path] + paths
    ensure_compiled(err)
    results = []
    for p in paths:
        csv = csv_format or Path(p).suffix.lower() == ".csv"
        source = (load_workload(p, csv_format=True, full_bits=full_bits, placement=placement,
                                seed=seed, max_rows=max_rows) if csv else p)
        if csv and len(source.trace) == 0:
            raise ValueError(f"{p}: the trace has no requests")
        what = f"simulating {Path(p).name} on {spec.name}"
        try:
            with _progress(err, what, p, source) as tick:
                stats = simulate_trace(source, spec, replace(config), jobs=jobs,
                                       dask=dask_address, progress=tick)
        except ValueError as e:
            raise ValueError(f"{p}: {e}") from e
        if stats.requests == 0:
            raise ValueError(f"{p}: the trace has no requests")
        results.append(stats)
    baseline = results[0] if len(results) > 1 else None
    runs = results[1:] if baseline is not None else results
    console.print(stats_table(runs, baseline))
    if json_out:
        write_json(json_out, runs, baseline)
        console.print(f"wrote {json_out}")
    if plot_out:
        plot(plot_out, runs, baseline)
        console.print(f"wrote {plot_out}")


@contextmanager
def _progress(err: Console, what: str, path: str, source) -> Iterator:
    """A progress bar in requests read on a terminal (large files), a start line and
    heartbeat otherwise; yields the ``progress(requests_read)`` callback or None."""
    if not err.is_terminal:  # CI logs, pipes: a start line and a heartbeat
        with heartbeat(err, what):
            yield None
        return
    total = len(source.trace) if hasattr(source, "trace") else _count_requests(Path(path))
    if total < 200_000:
        with err.status(what, spinner="dots"):
            yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), console=err,
                  transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.update(task, completed=min(n, total))


def _count_requests(path: Path) -> int:
    """Requests in a trace file, for the progress bar: records of a .npy, else lines."""
    from psa.golden.trace import _binary_kind

    try:
        kind = _binary_kind(path)
        if kind == "npy":
            import numpy as np
            return len(np.load(path, mmap_mode="r"))
        if kind is not None:
            return 0
        n = 0
        with open(path, "rb") as f:
            while block := f.read(1 << 24):
                n += block.count(b"\n")
        return n
    except (OSError, ValueError):
        return 0  # the reader names the problem
