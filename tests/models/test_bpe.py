"""models/bpe.py: SmolLM2's byte-level BPE built from the GGUF vocabulary and merges, against a
plain re-implementation of byte-level BPE (pre-split, byte alphabet, lowest-rank merge first)."""

from __future__ import annotations

import re

import pytest

from psa.models.bpe import Tokenizer

TEXTS = {
    "english": "The quick brown fox jumps over the lazy dog. It's 'quoted', isn't it?  Yes!",
    "code": "def f(x_1, *args):\n    return {'k': x_1 ** 2}  # ok\n\tif a != b:\n        pass\n",
    "digits": "In 2024, 1234567 items cost $3.50 (or 12,000.75) - call 555-0199.",
    "unicode": "naïve café Ünïcödé 日本語のテキスト 🎉👍🏽 Ω≈ç√ — “quotes” \u00a0nbsp",
    "whitespace": "  leading\n\n\ntrailing   \r\n\t\t x  ",
    "special": "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for every byte."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD))
            + list(range(0xAE, 0x100)))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


# GPT-2's split with \p{L} as [^\W\d_] and \p{N} as \d (the same on the test texts)
L, N = r"[^\W\d_]", r"\d"
SPLIT = re.compile(rf"'s|'t|'re|'ve|'m|'ll|'d| ?{L}+| ?{N}+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")


class ReferenceBPE:
    def __init__(self, tok: Tokenizer, tokens: list[str], merges: list[str]):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.rank = {tuple(m.split(" ")): r for r, m in enumerate(merges)}
        self.special = tok.special
        self.byte = bytes_to_unicode()

    def word(self, piece: str) -> list[int]:
        sym = [self.byte[b] for b in piece.encode("utf-8")]
        while len(sym) > 1:
            pairs = [(self.rank.get((a, b), 1 << 30), i) for i, (a, b)
                     in enumerate(zip(sym, sym[1:], strict=False))]
            r, i = min(pairs)
            if r == 1 << 30:
                break
            sym[i:i + 2] = [sym[i] + sym[i + 1]]
        return [self.vocab[s] for s in sym]

    def encode(self, text: str) -> list[int]:
        out = []
        pattern = "(" + "|".join(re.escape(s) for s in self.special) + ")"
        for part in re.split(pattern, text):
            if part in self.special:
                out.append(self.special[part])
                continue
            for chunk in re.split(r"(\d)", part):  # digits one by one, then GPT-2's split
                for piece in SPLIT.findall(chunk):
                    out += self.word(piece)
        return out


@pytest.fixture(scope="module")
def reference(smollm2_tokenizer):
    from psa.models.gguf_loader import read_gguf, smollm2_gguf_path

    meta, _ = read_gguf(smollm2_gguf_path())
    return ReferenceBPE(smollm2_tokenizer, meta["tokenizer.ggml.tokens"],
                        meta["tokenizer.ggml.merges"])


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_round_trip_and_reference(smollm2_tokenizer, reference, name):
    tok, text = smollm2_tokenizer, TEXTS[name]
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids.tolist() == reference.encode(text), [tok.token(i) for i in ids]


def test_digits_are_single_tokens(smollm2_tokenizer):
    tok = smollm2_tokenizer
    pieces = [tok.token(i) for i in tok.encode("x 2024 y")]
    assert pieces == ["x", "Ġ", "2", "0", "2", "4", "Ġy"]


def test_special_tokens_are_whole(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ids = tok.encode("<|im_start|>hi<|im_end|>")
    assert ids[0] == tok.special["<|im_start|>"] == 1
    assert ids[-1] == tok.special["<|im_end|>"] == 2
    assert len(tok.special) == 17


def test_known_words(smollm2_tokenizer):
    tok = smollm2_tokenizer
    pieces = [tok.token(i) for i in tok.encode("The capital of France is")]
    assert pieces == ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="pre-tokenizer 'llama3' not supported"):
        Tokenizer(["a"], [], None, pre="llama3", source="f.gguf")
    with pytest.raises(ValueError, match="merge 0"):
        Tokenizer(["a", "b", "ab"], ["a b c"], None)
    with pytest.raises(ValueError, match="only 'gpt2'"):
        Tokenizer.from_gguf_metadata({"tokenizer.ggml.model": "llama"}, "f.gguf")
