"""models/prose.py: the pydoc_data prose corpus and the perplexity helper."""

from __future__ import annotations

import math

import numpy as np
import pytest

from psa.models import prose
from psa.models.llama import LlamaConfig, LlamaDecoder


def test_documents_are_prose_and_deterministic():
    docs = prose.documents()
    assert docs == prose.documents()
    assert len(docs) > 50
    for d in docs:
        for para in d.split("\n\n"):
            assert ">>>" not in para and "::=" not in para
            assert len(para.split()) >= prose.MIN_WORDS
            assert "\n" not in para
    assert any(d.startswith("Assignment statements are used to (re)bind names") for d in docs)
    assert prose.fingerprint().startswith("pydoc_data.topics py")


def test_code_blocks_are_dropped():
    paras = prose.paragraphs("assignment")
    assert paras[0].startswith("Assignment statements are used")
    assert not any("target_list" in p and "::=" in p for p in paras)
    assert not any(p.startswith("   ") for p in paras)
    with pytest.raises(ValueError, match="no topic 'nope'"):
        prose.paragraphs("nope")


class CharTokenizer:
    """One id per character (code point mod 200): enough to test the stream logic."""

    def encode(self, text):
        return np.array([ord(c) % 200 for c in text], np.int64)


def test_token_stream_seeded():
    tok = CharTokenizer()
    a = prose.token_stream(tok, 5000, seed=1)
    assert a.dtype == np.int64 and a.shape == (5000,)
    np.testing.assert_array_equal(a, prose.token_stream(tok, 5000, seed=1))
    assert not np.array_equal(a, prose.token_stream(tok, 5000, seed=2))
    with pytest.raises(ValueError, match=r"n_tokens must be <= \d+"):
        prose.token_stream(tok, 10**9)
    with pytest.raises(ValueError, match="min_tokens > 0 needs a tokenizer"):
        prose.documents(min_tokens=5)
    long = prose.documents(min_tokens=20000, tokenizer=tok)
    assert 0 < len(long) < len(prose.documents())
    assert all(len(d) >= 20000 for d in long)


def test_perplexity_matches_hand_computation():
    cfg = LlamaConfig(n_layers=1, hidden=16, n_heads=2, n_kv_heads=1, head_dim=8, ffn=32,
                      vocab=29, rope_base=100.0, rms_eps=1e-5, max_context=32)
    model = LlamaDecoder.random(cfg, seed=2)
    ids = np.random.default_rng(0).integers(0, 29, 21)
    nll = []
    for s in (0, 8, 16):
        w = ids[s:s + 8]
        lg = model.forward(w[None])[0].astype(np.float64)
        for t in range(1, len(w)):
            p = np.exp(lg[t - 1] - lg[t - 1].max())
            nll.append(-math.log(p[w[t]] / p.sum()))
    ppl, n = prose.perplexity(model, ids, window=8)
    assert n == 7 + 7 + 4 == len(nll)
    assert math.isclose(ppl, math.exp(np.mean(nll)), rel_tol=1e-9)
    with pytest.raises(ValueError, match="window must be >= 2"):
        prose.perplexity(model, ids, window=1)
