"""``psa sweep DESIGN --param a,b,c ... --out DIR``: cycles, ECP5 area and Fmax over a grid,
on a local process pool or a Dask cluster (library: :mod:`psa.flows.sweep`, docs/sweep.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from psa.cli import UserError
from psa.cli.designs import DesignGroup
from psa.cli.options import check_writable_dir
from psa.cli.progress import heartbeat, table_console
from psa.flows.sweep import SweepOptions, parse_axis, run_sweep
from psa.flows.synth import DEVICES, PLACERS, ROUTERS
from psa.hw.designs import Design
from psa.verif.verify import default_build_root


@click.group("sweep", cls=DesignGroup, make_command=lambda d: _design_command(d))
def sweep() -> None:
    """Design-space sweep: for every point of a grid of hardware parameters, cycles on
    Verilator, ECP5 synthesis (area, Fmax) and optionally verification, in parallel on local
    processes or a Dask cluster. Writes sweep.json, sweep.csv and PNG plots to --out; an
    interrupted sweep resumes from the points already done.

    Example: psa sweep topk --lanes 4,8,16,32 --width 8,16 --max-n 1024,4096 --out sweep_topk
    """


def _design_command(design: Design) -> click.Command:
    def run(out: Path, jobs: int | None, dask: str | None, verify: bool, verify_packets: int,
            packets: int, seed: int, cycles: bool, synth: bool, place: bool, abc9: bool,
            widelut: bool, placer: str, router: str, device: str, target_mhz: float,
            synth_timeout: float | None,
            build_root: Path, restart: bool, **axes_text: Any) -> None:
        if jobs is not None and dask:
            raise UserError("give either --jobs (local processes) or --dask (a cluster)")
        axes = {}
        for p in design.params:
            text = axes_text.get(p.name)
            if text is not None:
                try:
                    axes[p.name] = parse_axis(text, p.type, p.flag)
                except ValueError as e:
                    raise UserError(str(e)) from e
        options = SweepOptions(cycles=cycles, synth=synth, verify=verify, place=place,
                               abc9=abc9, widelut=widelut, placer=placer, router=router,
                               device=device,
                               target_mhz=target_mhz,
                               packets=packets, seed=seed, verify_count=verify_packets,
                               synth_timeout_s=synth_timeout, build_root=str(build_root))
        _run(design, axes, out, options, jobs or (os.cpu_count() or 1), dask, restart)

    axis_options = [
        click.Option([p.flag, p.name], default=None, metavar="LIST",
                     help=f"{p.help}; comma-separated values [default: {p.default}]")
        for p in design.params]
    common = [
        click.Option(["--out", "-o"], type=click.Path(file_okay=False, path_type=Path),
                     required=True, help="Output folder (sweep.json, sweep.csv, *.png, "
                                         "points.jsonl)."),
        click.Option(["--jobs", "-j"], type=click.IntRange(min=1), default=None,
                     help="Local worker processes [default: number of CPUs]."),
        click.Option(["--dask"], metavar="ADDRESS",
                     help="Run the points on this Dask scheduler, e.g. tcp://host:8786."),
        click.Option(["--verify"], is_flag=True,
                     help="Also run the cocotb bench (psa verify) at every point."),
        click.Option(["--verify-packets"], type=click.IntRange(min=1), default=None,
                     help="Packets (top-k) or sequences (pruner) per verification "
                          "[default: the bench's]."),
        click.Option(["--packets"], type=click.IntRange(min=1), default=20, show_default=True,
                     help="Cycle test: packets per size (top-k), query rows (pruner)."),
        click.Option(["--seed"], type=int, default=1, show_default=True,
                     help="Seed of the cycle and verification stimulus."),
        click.Option(["--cycles/--no-cycles"], default=True, show_default=True,
                     help="Measure cycles on Verilator."),
        click.Option(["--synth/--no-synth"], default=True, show_default=True,
                     help="Synthesise for ECP5."),
        click.Option(["--place/--no-place"], default=True, show_default=True,
                     help="Place and route (Fmax); --no-place stops after Yosys."),
        click.Option(["--abc9/--no-abc9"], default=False, show_default=True,
                     help="LUT mapping (see psa synth --help)."),
        click.Option(["--widelut/--no-widelut"], default=True, show_default=True,
                     help="LUT5-7 from PFU muxes, or LUT4 only (see psa synth --help)."),
        click.Option(["--placer"], type=click.Choice(PLACERS), default="heap",
                     show_default=True, help="nextpnr placer (see psa synth --help)."),
        click.Option(["--router"], type=click.Choice(ROUTERS), default="router1",
                     show_default=True, help="nextpnr router (see psa synth --help)."),
        click.Option(["--device"], type=click.Choice(sorted(DEVICES)), default="ecp5-85k",
                     show_default=True, help="ECP5 part."),
        click.Option(["--target-mhz"], type=click.FloatRange(min=1.0), default=200.0,
                     show_default=True, help="nextpnr clock target."),
        click.Option(["--synth-timeout"], type=click.FloatRange(min=1.0), default=None,
                     help="Seconds per synthesis tool run. Yosys over it: the point is "
                          "an error; nextpnr routing over it: the point keeps its area and "
                          "the post-placement Fmax estimate (fmax_placed_mhz)."),
        click.Option(["--build-root"], type=click.Path(file_okay=False, path_type=Path),
                     default=default_build_root(), show_default=True,
                     help="Verilator build folders (env PSA_SIM_BUILD)."),
        click.Option(["--restart"], is_flag=True,
                     help="Ignore points already done in --out and run them again."),
    ]
    return click.Command(design.name, callback=run, params=axis_options + common,
                         short_help=design.summary,
                         help=f"Sweep {design.name} ({design.summary}) over a parameter grid.")


def _run(design: Design, axes: dict[str, list[Any]], out: Path, options: SweepOptions,
         jobs: int, dask: str | None, restart: bool) -> None:
    """Run the sweep and print it; exit status 2 (UserError) when any point failed, after
    every other point has run and the outputs are written."""
    try:
        check_writable_dir(out, "--out")
    except ValueError as e:
        raise UserError(str(e)) from e
    console = Console(stderr=True, soft_wrap=True)
    names = [p.name for p in design.params]
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console)
    task = None

    def on_start(total: int, reused: int) -> None:
        nonlocal task
        where = f"Dask {dask}" if dask else f"{jobs} local process(es)"
        console.print(f"{design.name}: {total} point(s), {reused} already done in {out}; "
                      f"running on {where}", highlight=False)
        task = progress.add_task(f"sweep {design.name}", total=total, completed=reused)

    def on_point(row: dict[str, Any]) -> None:
        label = " ".join(f"{n}={row.get(n)}" for n in names if n in axes)
        status = {"ok": "[green]ok[/]", "invalid": "[yellow]invalid[/]",
                  "error": "[red]error[/]"}[row["status"]]
        detail = f": {escape(str(row['error']))}" if row.get("error") else ""
        progress.console.print(f"  {escape(label)} {status}{detail}", highlight=False)
        progress.advance(task)

    # Redirected output: no bar, but a line per point and a heartbeat between them.
    with progress if console.is_terminal else heartbeat(console, f"sweep {design.name}"):
        result = run_sweep(design.name, axes, out, options, jobs=jobs, dask_address=dask,
                           restart=restart, on_start=on_start, on_point=on_point)
    out_console = table_console()
    out_console.print(render(result.rows, [n for n in names if n in axes] or names))
    for r in result.rows:
        if r.get("error"):
            label = " ".join(f"{n}={r.get(n)}" for n in names if n in axes)
            out_console.print(f"{escape(label)} {r['status']}: {escape(r['error'])}",
                              highlight=False, soft_wrap=True)
            for stage, tail in (r.get("error_log") or {}).items():
                out_console.print(f"  {stage}: last lines of the tool's log:", highlight=False)
                for line in tail.splitlines() or ["(the log is empty)"]:
                    out_console.print(f"    {escape(line)}", highlight=False, soft_wrap=True)
    bad = sum(r["status"] != "ok" for r in result.rows)
    failed = sum(r["status"] == "error" for r in result.rows)
    console.print(f"{len(result.rows)} point(s): {result.evaluated} run, {result.reused} reused, "
                  f"{bad} invalid or failed. Wrote " + ", ".join(result.outputs.values()),
                  highlight=False)
    if failed:
        raise UserError(f"{failed} of {len(result.rows)} point(s) failed (messages above; "
                        f"details in {out}/sweep.json, red crosses in the plots)")


def render(rows: list[dict[str, Any]], names: list[str]) -> Table:
    """The sweep as a table: parameters, then the figures any point has, then the status
    (messages of invalid or failed points are printed under the table)."""
    table = Table(title="sweep", title_justify="left")
    cols = [("n", "n", "{}"), ("cyc/pkt", "interval_cycles", "{:.0f}"),
            ("cyc/beat", "cycles_per_beat", "{:.2f}"), ("latency", "latency_cycles", "{:.0f}"),
            ("LUT4", "lut4", "{}"), ("FF", "ff", "{}"), ("CCU2C", "ccu2c", "{}"),
            ("BRAM", "bram", "{}"), ("DSP", "dsp", "{}"), ("Fmax MHz", "fmax_mhz", "{:.1f}"),
            ("placed est.", "fmax_placed_mhz", "{:.1f}"), ("Melem/s", "throughput_meps", "{:.0f}")]
    cols = [c for c in cols if any(r.get(c[1]) is not None for r in rows)]
    for n in names:  # the parameters identify rows: never cut them
        table.add_column(n, justify="right", no_wrap=True)
    for head, _, _ in cols:
        table.add_column(head, justify="right")
    table.add_column("status")
    for r in rows:
        cells = [str(r.get(n)) for n in names]
        for _, key, fmt in cols:
            v = r.get(key)
            cells.append("" if v is None else fmt.format(v))
        status = r["status"]
        if r.get("fits") is False:
            status += " (does not fit)"
        elif r.get("routed") is False:
            status += " (routing unfinished)"
        if r.get("verified"):
            status += ", verified"
        table.add_row(*cells, status)
    return table
