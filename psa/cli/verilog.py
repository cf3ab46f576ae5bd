"""``psa verilog DESIGN [params] -o FILE [--lint]``: write the flat Verilog top of a design.

One subcommand per design of :mod:`psa.hw.designs`, its hardware parameters as options, so
new designs (the pruner) appear without touching this module:

    psa verilog topk --lanes 16 --width 16 --max-n 1024 --signed -o topk.v --lint
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from psa.cli import UserError
from psa.cli.designs import DesignGroup, param_option
from psa.cli.options import check_writable_file
from psa.flows.lint import lint_verilog
from psa.hw.designs import Design

__all__ = ["verilog"]


@click.group("verilog", cls=DesignGroup, make_command=lambda d: _design_command(d))
def verilog() -> None:
    """Write the Verilog of a hardware block (one module, named as its datasheet says).

    Example: psa verilog topk --lanes 16 --width 16 --max-n 1024 -o topk.v --lint
    """


def _design_command(design: Design) -> click.Command:
    def run(output: Path, lint: bool, **params: Any) -> None:
        check_writable_file(output, "--output")
        text = design.verilog(**params)
        output.write_text(text)
        shown = " ".join(f"{k}={v}" for k, v in params.items())
        click.echo(f"wrote {output}: module {design.toplevel} ({shown}), "
                   f"{text.count(chr(10))} lines")
        if lint:
            try:
                warnings = lint_verilog(output, design.toplevel)
            except RuntimeError as e:
                raise UserError(str(e)) from e
            kinds: dict[str, int] = {}
            for line in warnings:
                kind = line.split(":", 1)[0].removeprefix("%Warning-")
                kinds[kind] = kinds.get(kind, 0) + 1
            report = output.with_name(output.name + ".lint.txt")
            report.write_text("\n".join(warnings) + "\n")
            click.echo(f"verilator --lint-only -Wall: {len(warnings)} warning(s), no errors; "
                       f"all listed in {report}")
            for kind, n in sorted(kinds.items()):
                example = next(w for w in warnings if w.startswith(f"%Warning-{kind}:"))
                click.echo(f"  {kind:<15} x{n:<6} e.g. {example.split(': ', 2)[-1][:90]}")

    params = [
        click.Option(["-o", "--output"], type=click.Path(dir_okay=False, path_type=Path),
                     required=True, help="Verilog file to write."),
        click.Option(["--lint"], is_flag=True,
                     help="Run Verilator --lint-only -Wall on the output and list warnings."),
        *[param_option(p) for p in design.params],
    ]
    return click.Command(design.name, callback=run, params=params,
                         help=f"{design.summary}. Writes module {design.toplevel!r}.")
