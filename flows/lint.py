"""Verilator lint of generated Verilog: ``verilator --lint-only -Wall``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

__all__ = ["lint_verilog", "LINT_FLAGS"]

LINT_FLAGS = ("--lint-only", "-Wall", "-Wno-fatal")


def lint_verilog(path: Path, toplevel: str) -> list[str]:
    """Verilator ``--lint-only -Wall`` warnings for ``path`` (one line each, ``%Warning-...``).

    Raises RuntimeError if Verilator reports an error (not just warnings).
    """
    from psa.verif.runner import verilator_env

    verilator_env()
    cmd = ["verilator", *LINT_FLAGS, "--top-module", toplevel, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = proc.stderr.splitlines()
    if proc.returncode != 0 or any(line.startswith("%Error") for line in lines):
        raise RuntimeError("verilator lint failed:\n" + "\n".join(lines[:40]))
    return [line for line in lines if re.match(r"%Warning-[A-Z]+", line)]
