"""Click helpers shared by subcommands: range-checked options and keep-schedule parsing."""

from __future__ import annotations

import os
from pathlib import Path

import click

__all__ = ["parse_schedule", "ScheduleType", "check_writable_dir", "check_writable_file"]


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


def check_writable_dir(path: Path, option: str) -> None:
    """Raise ValueError naming ``option`` when ``path`` cannot be used as an output folder.

    Checked before a long run starts, so nothing is lost at its end. The folder is created
    (with its parents) only if it can be; an existing file of that name is refused.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option}: {path} exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{option}: cannot create folder {path}: {e.strerror}") from e
    if not os.access(path, os.W_OK):
        raise ValueError(f"{option}: folder {path} is not writable")


def check_writable_file(path: Path, option: str) -> None:
    """Raise ValueError naming ``option`` when ``path`` cannot be written as a file: its folder
    must already exist (nothing is created silently) and be writable."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"{option}: {path} is a folder, not a file")
    if not parent.is_dir():
        raise ValueError(f"{option}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"{option}: {path} is not writable")
