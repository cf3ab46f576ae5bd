"""Byte-level BPE tokenizer built from a GGUF file's vocabulary (``tokenizers`` library).

Built from ``tokenizer.ggml.tokens`` (id -> token string, GPT-2 byte-to-unicode alphabet),
``tokenizer.ggml.merges`` (``"left right"`` in priority order) and
``tokenizer.ggml.token_type`` (type 3, control, marks special tokens such as
``<|im_start|>``, which are matched whole and never split). Pre-tokenization for
``tokenizer.ggml.pre`` = ``smollm`` (SmolLM / SmolLM2), as in their Hugging Face
``tokenizer.json``: every digit is its own piece, then the GPT-2 byte-level split
(``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``) with no
added prefix space; no normalizer. Decoding maps the byte alphabet back, so
``decode(encode(text)) == text`` for every string.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["Tokenizer", "SUPPORTED_PRE"]

#: ``tokenizer.ggml.pre`` values whose pre-tokenizer this module reproduces.
SUPPORTED_PRE = ("smollm",)

_CONTROL = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL


class Tokenizer:
    """Byte-level BPE tokenizer; ``encode`` adds no BOS/EOS (SmolLM2 adds none).

    Attributes: ``bos_id``, ``eos_id`` (``None`` if the file names none), ``special``
    (``{token: id}`` of the control tokens).
    """

    def __init__(self, tokens: list[str], merges: Iterable[str], token_types: list[int] | None,
                 pre: str = "smollm", bos_id: int | None = None, eos_id: int | None = None,
                 source: str = "tokenizer") -> None:
        from tokenizers import AddedToken, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as _Tok

        if pre not in SUPPORTED_PRE:
            raise ValueError(f"{source}: pre-tokenizer {pre!r} not supported "
                             f"(supported: {', '.join(SUPPORTED_PRE)})")
        vocab = {t: i for i, t in enumerate(tokens)}
        if len(vocab) != len(tokens):
            raise ValueError(f"{source}: the vocabulary has duplicate tokens")
        pairs = []
        for n, m in enumerate(merges):
            parts = m.split(" ")
            if len(parts) != 2:
                raise ValueError(f"{source}: merge {n} ({m!r}) is not 'left right'")
            pairs.append((parts[0], parts[1]))
        tok = _Tok(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
        tok.decoder = decoders.ByteLevel()
        types = token_types or [1] * len(tokens)
        self.special = {t: i for i, t in enumerate(tokens) if types[i] == _CONTROL}
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in sorted(self.special, key=self.special.get)])
        self._tok = tok
        self.bos_id, self.eos_id = bos_id, eos_id

    @classmethod
    def from_gguf_metadata(cls, meta: Mapping[str, Any], source: str = "GGUF") -> Tokenizer:
        """From the ``tokenizer.ggml.*`` metadata of a GGUF file (see :mod:`.gguf_loader`)."""
        model = meta.get("tokenizer.ggml.model")
        if model != "gpt2":
            raise ValueError(f"{source}: tokenizer.ggml.model is {model!r}, only 'gpt2' "
                             f"(byte-level BPE) is supported")
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
            if key not in meta:
                raise ValueError(f"{source}: metadata key {key!r} missing")

        def opt_id(key: str) -> int | None:
            return int(meta[key]) if key in meta else None

        return cls(list(meta["tokenizer.ggml.tokens"]), list(meta["tokenizer.ggml.merges"]),
                   list(meta.get("tokenizer.ggml.token_type") or []) or None,
                   pre=meta.get("tokenizer.ggml.pre", "smollm"),
                   bos_id=opt_id("tokenizer.ggml.bos_token_id"),
                   eos_id=opt_id("tokenizer.ggml.eos_token_id"), source=source)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text`` (int64), no BOS/EOS added; control tokens written in the text
        (``<|im_start|>``) become their single id."""
        return np.asarray(self._tok.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``, control tokens included: ``decode(encode(t)) == t``."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def token(self, i: int) -> str:
        """Vocabulary string of id ``i`` (byte-level alphabet: ``Ġ`` is a space)."""
        t = self._tok.id_to_token(int(i))
        if t is None:
            raise ValueError(f"token id {i} out of range 0..{self.vocab_size - 1}")
        return t
