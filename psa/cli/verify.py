"""``psa verify DESIGN [params] [--packets N] [--seed S]``: the test suite's cocotb bench for one
configuration on Verilator, with a pass/fail summary (library: :mod:`psa.verif.verify`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from psa.cli import UserError
from psa.cli.designs import DesignGroup, param_option
from psa.cli.options import check_writable_file
from psa.cli.progress import heartbeat
from psa.hw.designs import Design
from psa.verif import verify as verif_lib
from psa.verif.designs import BENCH_DESIGNS
from psa.verif.verify import VerifyResult, default_build_root


@click.group("verify", cls=DesignGroup, make_command=lambda d: _design_command(d),
             names=lambda: BENCH_DESIGNS.keys(), unknown="no bench for design")
def verify_cmd() -> None:
    """Run a block's cocotb bench (the test suite's own) for one configuration on Verilator,
    against the bit-exact golden model; prints pass/fail with the seed, and for a failure the
    first mismatching packet with expected and actual values. Exit status 1 on failure.

    Example: psa verify topk --lanes 8 --width 16 --max-n 1024 --packets 500 --seed 7
    """


verify = verify_cmd  # the name registered in psa.cli.COMMANDS


def _design_command(design: Design) -> click.Command:
    bench = BENCH_DESIGNS[design.name]

    def run(packets: int | None, seed: int, idle: float, stall: float, build_root: Path,
            json_out: Path | None, **params: Any) -> None:
        try:
            # Bad parameters fail here, before the build (the instance is not elaborated).
            design.validate(**params)
        except (ValueError, TypeError) as e:
            raise UserError(str(e)) from e
        if json_out is not None:
            try:
                check_writable_file(json_out, "--json")  # before minutes of build and run
            except ValueError as e:
                raise UserError(str(e)) from e
        console = Console(stderr=True)
        what = f"{design.name}: building and simulating on Verilator"
        with (console.status(what + "...") if console.is_terminal
              else heartbeat(console, what)):
            result = verif_lib.verify(design.name, params, count=packets, seed=seed,
                                      build_root=build_root, idle=idle, stall=stall)
        print_result(result, Console(soft_wrap=True))
        if json_out is not None:
            json_out.write_text(json.dumps(result.to_dict(), indent=1, default=str) + "\n")
        if not result.passed:
            raise SystemExit(1)

    options = [
        *[param_option(p) for p in design.params],
        click.Option(["--packets", "-n", "packets"], type=click.IntRange(min=1), default=None,
                     help=f"Random {bench.unit} to check [default: {bench.default_count}]."),
        click.Option(["--seed"], type=int, default=1, show_default=True,
                     help="Stimulus seed (also cocotb's random seed)."),
        click.Option(["--idle"], type=click.FloatRange(0.0, 1.0, max_open=True), default=0.2,
                     show_default=True, help="Probability of an input gap per cycle."),
        click.Option(["--stall"], type=click.FloatRange(0.0, 1.0, max_open=True), default=0.3,
                     show_default=True, help="Probability of output back-pressure per cycle."),
        click.Option(["--build-root"], type=click.Path(file_okay=False, path_type=Path),
                     default=default_build_root(), show_default=True,
                     help="Verilator build folders (reused; env PSA_SIM_BUILD)."),
        click.Option(["--json", "json_out"], type=click.Path(dir_okay=False, path_type=Path),
                     help="Also write the result as JSON."),
    ]
    tests = ", ".join(bench.verify.tests)
    return click.Command(
        design.name, callback=run, params=options, short_help=design.summary,
        help=f"Verify {design.name} ({design.summary}) with {bench.verify.module} "
             f"(tests: {tests}).")


def print_result(r: VerifyResult, console: Console) -> None:
    """Summary line, per-test status, and the first mismatch of a failure."""
    params = " ".join(f"{k}={v}" for k, v in r.params.items())
    verdict = "[bold green]PASS[/]" if r.passed else "[bold red]FAIL[/]"
    console.print(f"{verdict} {r.design} ({escape(params)}): {r.count} {r.unit}, seed {r.seed}, "
                  f"{r.elapsed_s:.1f} s", highlight=False)
    for t in r.tests:
        console.print(f"  {t.name}: {'passed' if t.passed else 'FAILED'}", highlight=False)
    if r.passed:
        return
    if r.mismatch is not None:
        console.print("First mismatching packet: " + escape(r.mismatch.describe()),
                      highlight=False)
    elif r.first_failure:
        text = r.first_failure if len(r.first_failure) < 2000 else \
            r.first_failure[:2000] + " ..."
        console.print("First failure: " + escape(text), highlight=False)
    console.print(f"Reproduce: psa verify {r.design} "
                  + " ".join(_flag(k, v) for k, v in r.params.items())
                  + f" --packets {r.count} --seed {r.seed}; log: {escape(r.log)}",
                  highlight=False)


def _flag(name: str, value: Any) -> str:
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    return f"--{flag} {value}"
