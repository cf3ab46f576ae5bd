"""models/llama.py on tiny random configs: the cached paths (chunked prefill, batched decode
steps, attention hooks) against the independent full causal forward."""

from __future__ import annotations

import math

import numpy as np
import pytest

from psa.models.llama import (
    DecodeAttention,
    DenseAttention,
    KVCache,
    LlamaConfig,
    LlamaDecoder,
    apply_rope,
    rope_tables,
)

TINY = LlamaConfig(n_layers=2, hidden=48, n_heads=6, n_kv_heads=2, head_dim=8, ffn=96,
                   vocab=101, rope_base=10000.0, rms_eps=1e-5, max_context=96)
MHA = LlamaConfig(n_layers=3, hidden=32, n_heads=4, n_kv_heads=4, head_dim=8, ffn=64,
                  vocab=53, rope_base=500.0, rms_eps=1e-6, max_context=64)
TOL = 1e-4


@pytest.fixture(scope="module", params=[TINY, MHA], ids=["gqa", "mha"])
def model(request) -> LlamaDecoder:
    return LlamaDecoder.random(request.param, seed=3)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(1.0, np.abs(b).max()))


def ids_for(model: LlamaDecoder, seed: int, shape) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, model.config.vocab, shape)


@pytest.mark.parametrize("seed", [0, 1])
def test_decode_with_cache_equals_forward(model, seed):
    """Prefill a prefix, then decode token by token: every step's logits equal the full
    forward's at that position."""
    ids = ids_for(model, seed, (1, 40))
    ref = model.forward(ids)[0]
    cache = model.new_cache(1, 48)
    got = [model.prefill(ids[:, :7], cache, chunk=3)[0]]
    for t in range(7, 40):
        got.append(model.step(ids[:, t], cache)[0])
    got = np.stack(got)
    err = rel_err(got, ref[6:])
    print(f"seed={seed} max rel err {err:.2e}")
    assert err < TOL
    assert cache.lengths.tolist() == [40]
    assert np.std(ref[-1]) > 0.1  # the logits are not trivially flat


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_chunked_prefill_equals_unchunked(model, chunk):
    ids = ids_for(model, 11, (2, 37))
    one = model.new_cache(2, 40)
    full = model.prefill(ids, one, chunk=37)
    part = model.new_cache(2, 40)
    got = model.prefill(ids, part, chunk=chunk)
    print(f"chunk={chunk} max rel err {rel_err(got, full):.2e}")
    assert rel_err(got, full) < TOL
    assert rel_err(full, model.forward(ids)[:, -1]) < TOL
    np.testing.assert_allclose(part.k[:, :, :, :37], one.k[:, :, :, :37], atol=1e-5)
    np.testing.assert_allclose(part.v[:, :, :, :37], one.v[:, :, :, :37], atol=1e-5)
    assert not part.k[:, :, :, 37:].any()


def test_batched_equals_one_by_one(model):
    """Sequences of different prompt lengths in one batch: prefill them one at a time into a
    shared cache's rows, then batched steps equal each sequence decoded alone."""
    lengths = [5, 12, 1, 9]
    rng = np.random.default_rng(5)
    prompts = [rng.integers(0, model.config.vocab, (1, n)) for n in lengths]
    cont = rng.integers(0, model.config.vocab, (len(lengths), 6))
    # one by one
    alone = []
    for b, p in enumerate(prompts):
        c = model.new_cache(1, 32)
        rows = [model.prefill(p, c)[0]]
        for t in range(cont.shape[1]):
            rows.append(model.step(cont[b:b + 1, t], c)[0])
        alone.append(np.stack(rows))
    alone = np.stack(alone)  # [B, 7, vocab]
    # batched: prefill each into its own single cache, then gather into one batch cache
    singles = []
    first = []
    for p in prompts:
        c = model.new_cache(1, 32)
        first.append(model.prefill(p, c)[0])
        singles.append(c)
    batch = model.new_cache(len(lengths), 32)
    for b, c in enumerate(singles):
        batch.k[:, b], batch.v[:, b], batch.lengths[b] = c.k[:, 0], c.v[:, 0], c.lengths[0]
    rows = [np.stack(first)]
    for t in range(cont.shape[1]):
        rows.append(model.step(cont[:, t], batch))
    together = np.stack(rows, axis=1)
    print(f"max rel err batched vs alone {rel_err(together, alone):.2e}")
    assert rel_err(together, alone) < TOL
    assert batch.lengths.tolist() == [n + 6 for n in lengths]


def test_batched_prefill_equals_one_by_one(model):
    ids = ids_for(model, 9, (3, 20))
    cache = model.new_cache(3, 24)
    got = model.prefill(ids, cache, chunk=8)
    for b in range(3):
        c = model.new_cache(1, 24)
        assert rel_err(got[b], model.prefill(ids[b:b + 1], c, chunk=8)[0]) < TOL


def test_cache_copy_and_select(model):
    ids = ids_for(model, 2, (2, 10))
    cache = model.new_cache(2, 16)
    model.prefill(ids, cache)
    sel = cache.select([1, 1, 0])
    assert sel.lengths.tolist() == [10, 10, 10]
    nxt = ids_for(model, 3, (3,))
    out = model.step(nxt, sel)
    cp = cache.copy()
    ref = model.step(nxt[[2, 0]], cp)  # sequence 0 gets nxt[2], sequence 1 gets nxt[0]
    assert rel_err(out[[2, 0]], ref) < TOL
    assert cache.lengths.tolist() == [10, 10]  # untouched by work on its copies
    assert not cache.k[:, :, :, 10].any()


class Recorder(DenseAttention):
    """Dense attention that checks and records every call's shapes."""

    def __init__(self, config: LlamaConfig):
        self.c = config
        self.calls: list[tuple] = []
        self.steps = 0

    def prefill(self, layer, q, k, v, start):
        c = self.c
        L = q.shape[1]
        assert q.shape == (c.n_heads, L, c.head_dim) and q.dtype == np.float32
        assert k.shape == v.shape == (c.n_kv_heads, start + L, c.head_dim)
        self.calls.append(("prefill", layer, start, L))
        return super().prefill(layer, q, k, v, start)

    def decode(self, layer, q, k, v):
        c = self.c
        assert q.shape == (c.n_heads, c.head_dim) and q.dtype == np.float32
        n = k.shape[1]
        assert k.shape == v.shape == (c.n_kv_heads, n, c.head_dim)
        self.calls.append(("decode", layer, n))
        return super().decode(layer, q, k, v)

    def end_step(self):
        self.steps += 1


def test_attention_hooks_called_with_documented_shapes(model):
    c = model.config
    hooks = [Recorder(c), Recorder(c)]
    ids = ids_for(model, 4, (2, 10))
    cache = model.new_cache(2, 16)
    model.prefill(ids, cache, attention=hooks, chunk=4)
    for t in range(3):
        model.step(ids[:, t], cache, attention=hooks)
    layers = range(c.n_layers)
    expect = [("prefill", li, s, L) for s, L in ((0, 4), (4, 4), (8, 2)) for li in layers]
    expect += [("decode", li, n) for n in (11, 12, 13) for li in layers]
    for h in hooks:
        assert h.calls == expect
        assert h.steps == 3


def test_hook_sees_new_token_in_last_row_and_queries_unscaled(model):
    """The decode hook's last K/V row is the new token's, and q is the raw rotated query."""
    c = model.config
    seen = {}

    class Spy(DecodeAttention):
        def decode(self, layer, q, k, v):
            seen[layer] = (q.copy(), k.copy(), v.copy())
            return super().decode(layer, q, k, v)

    ids = ids_for(model, 8, (1, 6))
    cache = model.new_cache(1, 8)
    model.prefill(ids[:, :5], cache)
    model.step(ids[:, 5], cache, attention=[Spy()])
    # recompute layer 0's q, k, v of position 5 by hand
    lay = model.layers[0]
    x = model.embed[ids[0, 5]]
    h = x / np.sqrt(np.mean(x * x) + c.rms_eps) * lay.attn_norm
    qkv = (h @ lay.wqkv).reshape(-1, c.head_dim)
    cos, sin = rope_tables(c.head_dim, c.rope_base, np.array([5]))
    q = apply_rope(qkv[:c.n_heads], cos, sin)
    k = apply_rope(qkv[c.n_heads:c.n_heads + c.n_kv_heads], cos, sin)
    sq, sk, sv = seen[0]
    assert sk.shape[1] == 6
    np.testing.assert_allclose(sq, q, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sk[:, -1], k, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sv[:, -1], qkv[c.n_heads + c.n_kv_heads:], rtol=1e-5, atol=1e-5)


def test_custom_hook_changes_output(model):
    """A hook's return value is what the model uses: attending only to the newest token
    differs from dense and equals a forward with a diagonal mask."""

    class SelfOnly(DecodeAttention):
        def prefill(self, layer, q, k, v, start):
            g = q.shape[0] // k.shape[0]
            return np.repeat(v[:, start:], g, axis=0)

        def decode(self, layer, q, k, v):
            g = q.shape[0] // k.shape[0]
            return np.repeat(v[:, -1], g, axis=0)

    ids = ids_for(model, 6, (1, 8))
    dense = model.prefill(ids, model.new_cache(1, 8))
    odd = model.prefill(ids, model.new_cache(1, 8), attention=[SelfOnly()])
    assert rel_err(odd, dense) > 1e-2
    c1 = model.new_cache(1, 8)
    model.prefill(ids[:, :7], c1, attention=[SelfOnly()])
    step = model.step(ids[:, 7], c1, attention=[SelfOnly()])
    assert rel_err(step, odd) < TOL


def test_rope_is_a_rotation_with_relative_scores():
    """q.k after RoPE depends only on the position difference, and norms are kept."""
    rng = np.random.default_rng(0)
    d = 16
    q, k = rng.standard_normal(d), rng.standard_normal(d)

    def rot(x, p):
        cos, sin = rope_tables(d, 10000.0, np.array(p))
        return apply_rope(x.astype(np.float32), cos, sin)

    assert math.isclose(np.linalg.norm(rot(q, 37)), np.linalg.norm(q), rel_tol=1e-5)
    a = float(rot(q, 10) @ rot(k, 3))
    b = float(rot(q, 107) @ rot(k, 100))
    assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4)
    # pairing (i, i + d/2): rotating dimension 0 at position 1 moves it into dimension d/2
    e0 = np.zeros(d)
    e0[0] = 1
    r = rot(e0, 1)
    assert math.isclose(r[0], math.cos(1.0), rel_tol=1e-6)
    assert math.isclose(r[d // 2], math.sin(1.0), rel_tol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (dict(n_heads=5), "multiple of"),
    (dict(head_dim=7), "even"),
    (dict(vocab=0), "vocab"),
])
def test_config_rejects_bad_shapes(bad, match):
    args = {**TINY.__dict__, **bad}
    with pytest.raises(ValueError, match=match):
        LlamaConfig(**args)


def test_errors_name_the_problem():
    model = LlamaDecoder.random(TINY, seed=0)
    cache = model.new_cache(1, 8)
    with pytest.raises(ValueError, match="capacity is 8"):
        model.prefill(np.zeros((1, 9), np.int64), cache)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        model.prefill(np.array([[101]]), cache)
    with pytest.raises(ValueError, match="batch"):
        model.step(np.zeros(2, np.int64), cache)
    with pytest.raises(ValueError, match="2 hooks for a batch of 1"):
        model.step(np.zeros(1, np.int64), cache, attention=[DenseAttention()] * 2)
    with pytest.raises(ValueError, match="max_context"):
        KVCache(TINY, 1, TINY.max_context + 1)
    assert model.config.group == 3


def test_batched_dense_decode_equals_per_sequence_hooks(model):
    """Default hooks on a batch take the batched dense path; base-class hooks go through the
    per-sequence ``decode``: same logits, sequences of different lengths."""
    rng = np.random.default_rng(12)
    c = model.config
    a, b = model.new_cache(3, 24), model.new_cache(3, 24)
    for i, n in enumerate((3, 11, 7)):
        one = model.new_cache(1, 24)
        model.prefill(rng.integers(0, c.vocab, (1, n)), one)
        for cache in (a, b):
            cache.k[:, i], cache.v[:, i], cache.lengths[i] = one.k[:, 0], one.v[:, 0], n
    for t in range(4):
        tok = rng.integers(0, c.vocab, 3)
        fast = model.step(tok, a)
        slow = model.step(tok, b, attention=[DecodeAttention() for _ in range(3)])
        assert rel_err(fast, slow) < TOL, t
    np.testing.assert_allclose(a.k, b.k, atol=1e-6)
    assert a.lengths.tolist() == b.lengths.tolist() == [7, 15, 11]
