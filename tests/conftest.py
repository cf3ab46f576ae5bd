"""Shared fixtures: where cocotb builds go, and the seed printed with every failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sim_build_root() -> Path:
    """Root of the per-design Verilator build folders (kept between runs for speed)."""
    root = Path(os.environ.get("PSA_SIM_BUILD", ROOT / "sim_build"))
    root.mkdir(parents=True, exist_ok=True)
    return root
