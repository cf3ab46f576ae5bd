"""Subcommands generated from the design registry (:mod:`psa.hw.designs`).

``psa verilog|synth|verify|sweep DESIGN [--param ...]`` all turn a design's ``Param`` list into
options the same way; this module is that one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import click

from psa.hw.designs import Design, Param, all_designs, get_design

__all__ = ["DesignGroup", "param_option"]


def param_option(p: Param) -> click.Option:
    """``--name VALUE`` (or ``--name/--no-name`` for booleans) with the default shown."""
    if p.type is bool:
        name = p.flag[2:]
        return click.Option([f"--{name}/--no-{name}", p.name], default=p.default,
                            show_default=True, help=p.help)
    return click.Option([p.flag, p.name], type=p.type, default=p.default, show_default=True,
                        help=p.help)


class DesignGroup(click.Group):
    """One subcommand per design, built by ``make_command(design)``.

    ``names`` limits the designs offered (default: every registered design); ``unknown`` is
    the start of the error for any other name.
    """

    def __init__(self, *args, make_command: Callable[[Design], click.Command],
                 names: Callable[[], Iterable[str]] | None = None,
                 unknown: str = "unknown design", **kwargs):
        super().__init__(*args, **kwargs)
        self._make_command = make_command
        self._names = names or (lambda: all_designs().keys())
        self._unknown = unknown

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._names())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._make_command(get_design(name)) if name in self._names() else None

    def resolve_command(self, ctx, args):
        if args and not args[0].startswith("-") and args[0] not in self._names():
            raise click.UsageError(f"{self._unknown} {args[0]!r}; choose one of "
                                   f"{', '.join(sorted(self._names()))}", ctx)
        return super().resolve_command(ctx, args)
