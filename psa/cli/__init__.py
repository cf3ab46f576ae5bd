"""The ``psa`` command: one entry point for the golden model, RTL, verification and DRAM model.

Each subcommand lives in its own module of this package and is registered in ``COMMANDS``;
modules are imported only when their command runs, so ``psa --help`` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from psa import __version__

# name -> (module, attribute, one-line help shown by `psa --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("psa.cli.demo", "demo",
             "Cascade token/head pruning + progressive quantization on a synthetic workload."),
    "verilog": ("psa.cli.verilog", "verilog", "Write the Verilog of a hardware block."),
    "dram": ("psa.cli.dram", "dram", "Run access traces through the cycle-level DRAM model."),
    "report": ("psa.cli.report", "report",
               "Pruning policies on a real model: accuracy against DRAM savings."),
    "synth": ("psa.cli.synth", "synth", "Synthesise a block for ECP5: LUTs, FFs, BRAM, Fmax."),
    "verify": ("psa.cli.verify", "verify", "Run a block's cocotb bench on Verilator."),
    "sweep": ("psa.cli.sweep", "sweep", "Design-space sweep: cycles, area and Fmax over a grid."),
}


class UserError(click.ClickException):
    """A user-facing error: printed as ``Error: ...`` with exit status 2, no traceback."""

    exit_code = 2


class LazyGroup(click.Group):
    """Imports a subcommand's module only when it is invoked or its help is asked for."""

    def list_commands(self, ctx):
        return [name for name in COMMANDS if self._available(name)]

    @staticmethod
    def _available(name: str) -> bool:
        return importlib.util.find_spec(COMMANDS[name][0]) is not None

    def get_command(self, ctx, name):
        if name not in COMMANDS or not self._available(name):
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise  # click's own control flow (--help, usage errors) passes through
        except (ValueError, TypeError, OSError, RuntimeError) as e:
            # Bad parameters are reported by the library with the parameter and its range.
            raise UserError(str(e)) from e


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="psa")
def cli() -> None:
    """Sparse-attention accelerator toolkit (SpAtten-style top-k and cascade pruning).

    Data flows scores -> top-k -> pruning -> access trace -> DRAM model -> report.
    Start with `psa demo`; every command takes --help.
    """


def main(argv: list[str] | None = None) -> None:
    """Console entry point."""
    try:
        cli.main(args=argv, prog_name="psa", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo("interrupted", err=True)
        sys.exit(130)
