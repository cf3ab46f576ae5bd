"""Stdlib docstring corpus: prose only, deterministic, lengths in range, ids tokenize text."""

from __future__ import annotations

import numpy as np
import pytest

from psa.models.corpus import DEFAULT_MODULES, MIN_WORDS, chunks, fingerprint, paragraphs
from psa.models.minilm import Tokenizer, model_dir


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer(model_dir("minilm"))


def test_paragraphs_are_prose_from_listed_modules():
    pars = paragraphs()
    assert len(pars) > 1000
    mods = {m for m, _ in pars}
    assert mods <= set(DEFAULT_MODULES) and len(mods) > 40
    for m, p in pars:
        assert ">>>" not in p and "\n" not in p, (m, p)
        assert len(p.split()) >= MIN_WORDS, (m, p)
    assert paragraphs(["no_such_module", "textwrap"]) == [(m, p) for m, p in pars
                                                          if m == "textwrap"]


@pytest.mark.parametrize("seed", [0, 5])
def test_chunks_contract(tok, seed):
    cs = chunks(tok, 80, seed=seed)
    assert len(cs) == 80
    lengths = np.array([len(c) for c in cs])
    assert lengths.min() >= 32 and lengths.max() <= 512, f"seed {seed}"
    assert lengths.min() < 100 and lengths.max() > 400, f"seed {seed}: {sorted(lengths)}"
    for c in cs:
        assert c.ids.dtype == np.int64
        assert c.ids[0] == tok.cls_id and c.ids[-1] == tok.sep_id
        np.testing.assert_array_equal(tok.encode(c.text), c.ids, err_msg=f"seed {seed}")
        assert c.module in DEFAULT_MODULES
    assert len({c.text for c in cs}) == 80


def test_chunks_deterministic_per_seed(tok):
    a = fingerprint(chunks(tok, 30, seed=11))
    assert a == fingerprint(chunks(tok, 30, seed=11))
    assert a != fingerprint(chunks(tok, 30, seed=12))
    assert len(a) == 16


def test_chunks_custom_range(tok):
    cs = chunks(tok, 50, seed=2, min_tokens=40, max_tokens=64)
    assert all(40 <= len(c) <= 64 for c in cs)


@pytest.mark.parametrize("kw, match", [
    ({"n": 0}, "n must be an integer >= 1"),
    ({"n": 10**6}, r"exceeds the \d+ chunks"),
    ({"n": 5, "min_tokens": 100, "max_tokens": 50}, "min_tokens must be in 3..max_tokens"),
    ({"n": 5, "min_tokens": 2}, "min_tokens must be in 3..max_tokens"),
])
def test_chunks_rejects_bad_arguments(tok, kw, match):
    with pytest.raises(ValueError, match=match):
        chunks(tok, **kw)
