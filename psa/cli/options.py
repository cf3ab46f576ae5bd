"""Click helpers shared by subcommands: range-checked options and keep-schedule parsing."""

from __future__ import annotations

import click

__all__ = ["parse_schedule", "ScheduleType"]


def parse_schedule(text: str, param_name: str = "schedule") -> dict[int, int | float]:
    """``"2:0.9,5:0.7,8:12"`` -> ``{2: 0.9, 5: 0.7, 8: 12}`` (after layer: fraction or count).

    An empty string (or ``none``) means no pruning.
    """
    out: dict[int, int | float] = {}
    if text.strip().lower() in ("", "none"):
        return out
    for item in text.split(","):
        layer, sep, keep = item.partition(":")
        try:
            if not sep:
                raise ValueError
            layer_i = int(layer)
            keep_v: int | float = float(keep) if "." in keep else int(keep)
        except ValueError:
            raise ValueError(
                f"{param_name}: expected LAYER:KEEP pairs such as '2:0.9,5:0.7' (KEEP a fraction "
                f"with a '.', or a count), got {item!r}") from None
        out[layer_i] = keep_v
    return out


class ScheduleType(click.ParamType):
    name = "LAYER:KEEP,..."

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        try:
            return parse_schedule(value, f"--{param.name.replace('_', '-')}" if param else "")
        except ValueError as e:
            self.fail(str(e), param, ctx)
