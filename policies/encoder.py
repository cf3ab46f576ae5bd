"""Attention policies for the NumPy encoder (:mod:`psa.models.minilm`), each with its K/V reads.

Every policy is a :class:`~psa.models.minilm.Policy`: it computes the layer's attention
probabilities (and the values used), says which K/V rows it read from DRAM, in issue order,
and may prune tokens and heads for later layers. :meth:`bits` gives the K/V plane widths, so
:func:`policy_layout` builds the :class:`~psa.golden.trace.KVLayout` its trace is addressed in.
Plane width 32 with no LSB plane means float32 values used as they are (no quantization).

Unless a policy has a ``query_tile``, the K/V rows of a head are read once per layer and stay
on chip for all queries (what SpAtten does for an encoder whose heads fit its K/V buffers).
With ``query_tile=T``, queries are processed ``T`` rows at a time and each tile reads the rows
its queries need; a row needed by several tiles is read by each.

Policies (see ``docs/report.md`` for what each costs and saves):

``dense``
    :class:`~psa.models.minilm.DensePolicy`: all tokens, heads, rows, float32.
``spatten``
    :class:`SpAttenPolicy`: cascade token + head pruning driven by
    :class:`~psa.golden.pruning.PruningState` (the pruning unit's command-level spec) and
    progressive quantization (K/V MSB planes first, LSB planes re-read for a head with a flat
    row), schedules from a :class:`~psa.golden.cascade.CascadeConfig`.
``progressive``
    :class:`ProgressivePolicy`: cascade token pruning only (float32), keep ratio shrinking
    geometrically with depth.
``topk``
    :class:`TopKPolicy`: static per-query top-k of the scores (exact k, ties to the lower key).
``window``
    :class:`WindowGlobalPolicy`: NSA-style local window plus a global sample of the tokens
    with the highest accumulated attention.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from psa.golden.attention import topk_mask
from psa.golden.cascade import CascadeConfig
from psa.golden.fixed_point import quantize_unsigned_fraction
from psa.golden.pruning import PruningState, resolve_keep
from psa.golden.quant import split_quantize
from psa.golden.topk import topk, topk_threshold_mask
from psa.golden.trace import KVLayout, Plane
from psa.models.minilm import (
    Attention,
    BertConfig,
    DensePolicy,
    LayerView,
    Policy,
    masked_softmax,
    scaled_scores,
)

__all__ = [
    "FP32_BITS",
    "policy_bits",
    "policy_layout",
    "PrunerLayer",
    "SpAttenPolicy",
    "ProgressivePolicy",
    "TopKPolicy",
    "WindowGlobalPolicy",
    "SPATTEN_PRESETS",
    "spatten_preset",
    "progressive_schedule",
    "POLICY_NAMES",
    "DEFAULT_POLICIES",
    "parse_policies",
    "make_policy",
]

#: Plane widths of float32 K/V: ``(k_msb, k_lsb, v_msb, v_lsb)``.
FP32_BITS = (32, 0, 32, 0)


def policy_bits(policy: Policy) -> tuple[int, int, int, int]:
    """``(k_msb, k_lsb, v_msb, v_lsb)`` plane bits of ``policy`` (float32 if it has no
    ``bits`` method, as :class:`~psa.models.minilm.DensePolicy`)."""
    bits = getattr(policy, "bits", None)
    return tuple(bits()) if bits is not None else FP32_BITS


def policy_layout(policy: Policy, config: BertConfig) -> KVLayout:
    """The K/V layout ``policy``'s reads are addressed in: ``[layer][head][token]`` rows of
    ``config.max_position_embeddings`` tokens per head, planes at ``policy_bits(policy)``."""
    return KVLayout(config.num_hidden_layers, config.num_attention_heads,
                    config.max_position_embeddings, config.d_head, *policy_bits(policy))


def _tiles(m: int, tile: int | None) -> list[slice]:
    step = m if tile is None else tile
    return [slice(s, min(s + step, m)) for s in range(0, m, max(step, 1))]


def _requests(plane: Plane, head: int, tokens: np.ndarray) -> np.ndarray:
    return np.stack([np.full(len(tokens), int(plane)), np.full(len(tokens), head), tokens],
                    axis=1).astype(np.int64)


def _stack(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)


def _check_tile(query_tile: int | None) -> int | None:
    if query_tile is not None and (isinstance(query_tile, bool)
                                   or not isinstance(query_tile, (int, np.integer))
                                   or query_tile < 1):
        raise ValueError(f"query_tile must be an integer >= 1 or None, got {query_tile!r}")
    return None if query_tile is None else int(query_tile)


def _check_fraction(name: str, value: float, lo_open: bool = True) -> float:
    v = float(value)
    if not (0.0 < v <= 1.0 if lo_open else 0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be in {'(0' if lo_open else '[0'}, 1], got {value!r}")
    return v


# --------------------------------------------------------------------------------------------
# SpAtten: cascade token + head pruning, progressive quantization
# --------------------------------------------------------------------------------------------


@dataclass
class PrunerLayer:
    """The pruning-unit commands of one layer, in order (see :mod:`psa.golden.pruning`).

    For each running head (ascending) ``add_probs(probs[i])`` (``(rows, alive)`` ``UQ0``
    integers, alive order) and, if the layer is followed by a prune step,
    ``add_head_magnitude(heads[i], mags[i])``; then ``prune_heads(prune_heads)`` and
    ``prune(prune)`` when not ``None``. ``alive``/``heads`` are the state when the layer starts
    (the unit fetches their K/V rows).
    """

    layer: int
    alive: np.ndarray
    heads: np.ndarray
    probs: list[np.ndarray] = field(default_factory=list)
    mags: list[int] = field(default_factory=list)
    prune_heads: int | None = None
    prune: int | None = None


@dataclass
class _Quant:
    msb_only: np.ndarray
    full: np.ndarray


def _quantize(x: np.ndarray, msb: int, lsb: int) -> _Quant:
    """Per-(layer, head) split quantization; 32 MSB bits with no LSBs is float32 as is."""
    if msb == 32 and lsb == 0:
        x64 = np.asarray(x, np.float64)
        return _Quant(x64, x64)
    q = split_quantize(x, msb, lsb)
    return _Quant(q.msb_only, q.full)


def _softmax64(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class SpAttenPolicy(Policy):
    """SpAtten on the real model: cascade token and head pruning, progressive quantization.

    Per layer and running head, with ``A`` the alive tokens (``A`` shrinks with depth):

    1. K and V of the head are quantized to ``msb + lsb`` bits with one scale over ``A``
       (:func:`~psa.golden.quant.split_quantize`; 32 + 0 bits means float32 as is).
    2. The K MSB rows of ``A`` are read; probabilities are computed with MSB-only keys. Rows
       whose largest probability is below ``refetch_threshold`` are *flat*: if the head has a
       flat row, its K LSB rows are read and the flat rows recomputed with full keys, and the
       head uses full-precision V (its V LSB rows are read too); otherwise MSB-only V.
    3. Local value pruning: V rows outside every query's top ``ceil(v_keep * |A|)``
       probabilities (threshold tie rule) are not read and count as 0.
    4. Importance, exactly as the pruning unit receives it: the probabilities quantized to
       ``UQ0.prob_bits`` go to :meth:`PruningState.add_probs` (summed over running heads and
       alive query rows); after the layer, each head's output L1 magnitude ``floor(sum |P V|)``
       (clamped to ``mag_bits``) to :meth:`PruningState.add_head_magnitude`; then the
       schedules prune heads and tokens (``head_keep``/``token_keep``: after layer ``l``, a
       fraction of ``n_heads`` / of the input length, or a count).

    Reads, per head in ascending order: ``K_MSB`` of ``A``, ``K_LSB`` of ``A`` (if refetched),
    ``V_MSB`` of the needed rows, ``V_LSB`` of them (if refetched). With ``v_keep=1`` the
    ``K_MSB``/``V_MSB`` reads are exactly :meth:`PruningState.fetch_requests`, the pruning
    unit's fetch stream. With ``record=True`` the unit's commands are kept in :attr:`script`
    (one :class:`PrunerLayer` per layer) so a bench can replay them.
    """

    name = "spatten"

    def __init__(self, config: CascadeConfig | None = None, *, name: str | None = None,
                 record: bool = False) -> None:
        config = CascadeConfig() if config is None else config
        if config.query_tile is not None:
            raise ValueError("SpAttenPolicy: query_tile must be None (K/V of a head stay on chip "
                             f"for the whole layer), got {config.query_tile!r}")
        for sched_name in ("token_keep", "head_keep"):
            for layer, keep in getattr(config, sched_name).items():
                if resolve_keep(keep, 1, f"{sched_name}[{layer}]") == 0:
                    raise ValueError(f"{sched_name}[{layer}] must keep at least one, "
                                     f"got {keep!r}")
        self.config = config
        if name is not None:
            self.name = name
        self.record = record
        self.script: list[PrunerLayer] = []
        self.layer_stats: list[dict] = []

    def bits(self) -> tuple[int, int, int, int]:
        c = self.config
        return (c.k_msb_bits, c.k_lsb_bits, c.v_msb_bits, c.v_lsb_bits)

    def params(self) -> dict:
        d = asdict(self.config)
        for key in ("token_keep", "head_keep"):
            d[key] = {str(k): v for k, v in sorted(d[key].items())}
        return d

    def begin(self, n_tokens: int, config: BertConfig) -> None:
        c = self.config
        c.validate(config.num_hidden_layers)
        self._n = n_tokens
        self._n_heads = config.num_attention_heads
        self.state = PruningState(max(n_tokens, 1), config.num_attention_heads, c.prob_bits,
                                  c.score_bits, c.head_score_bits)
        self.state.start(n_tokens)
        self.script = []
        self.layer_stats = []

    def heads(self, layer: int, n_alive: int) -> np.ndarray:
        mask = np.zeros(self._n_heads, bool)
        mask[self.state.heads] = True
        return mask

    def attend(self, view: LayerView) -> Attention:
        c = self.config
        h, m, d = view.k.shape
        progressive = c.k_lsb_bits > 0 and c.refetch_threshold > 0
        v_count = int(np.ceil(c.v_keep * m))
        probs = np.empty((h, m, m), np.float32)
        v_used = np.empty((h, m, d), np.float32)
        parts: list[np.ndarray] = []
        rec = PrunerLayer(view.layer, view.tokens.copy(), view.heads.copy())
        flat_rows = refetch_heads = 0
        scale = 1.0 / np.sqrt(d)
        for hi, head in enumerate(view.heads):
            head = int(head)
            kq = _quantize(view.k[hi], c.k_msb_bits, c.k_lsb_bits)
            vq = _quantize(view.v[hi], c.v_msb_bits, c.v_lsb_bits)
            q = view.q[hi].astype(np.float64)
            p = _softmax64(q @ kq.msb_only.T * scale)
            flat = (p.max(axis=1) < c.refetch_threshold) if progressive else np.zeros(m, bool)
            refetch = bool(flat.any())
            if refetch:
                p[flat] = _softmax64(q[flat] @ kq.full.T * scale)
            need_v = topk_threshold_mask(p, v_count).any(axis=0)
            probs[hi] = p
            v_used[hi] = (vq.full if refetch else vq.msb_only) * need_v[:, None]
            parts.append(_requests(Plane.K_MSB, head, view.tokens))
            if refetch:
                parts.append(_requests(Plane.K_LSB, head, view.tokens))
            parts.append(_requests(Plane.V_MSB, head, view.tokens[need_v]))
            if refetch and c.v_lsb_bits:
                parts.append(_requests(Plane.V_LSB, head, view.tokens[need_v]))
            qp = quantize_unsigned_fraction(p, c.prob_bits)
            self.state.add_probs(qp)
            if self.record:
                rec.probs.append(qp)
            flat_rows += int(flat.sum())
            refetch_heads += refetch
        self.script.append(rec)
        self.layer_stats.append({"rows": h * m, "flat_rows": flat_rows,
                                 "refetch_heads": refetch_heads, "heads": h})
        return Attention(probs, v_used, requests=_stack(parts))

    def prune(self, view: LayerView, att: Attention, head_out: np.ndarray) -> np.ndarray:
        c = self.config
        rec = self.script[-1]
        mag_max = (1 << c.mag_bits) - 1
        for hi, head in enumerate(view.heads):
            mag = min(int(np.floor(np.abs(head_out[hi]).sum(dtype=np.float64))), mag_max)
            self.state.add_head_magnitude(int(head), mag)
            rec.mags.append(mag)
        if view.layer in c.head_keep:
            rec.prune_heads = resolve_keep(c.head_keep[view.layer], self._n_heads,
                                           f"head_keep[{view.layer}]")
            self.state.prune_heads(rec.prune_heads)
        if view.layer in c.token_keep:
            rec.prune = resolve_keep(c.token_keep[view.layer], self._n,
                                     f"token_keep[{view.layer}]")
            self.state.prune(rec.prune)
        return np.isin(view.tokens, self.state.alive)


def _at_depth(n_layers: int, fractions: tuple[float, ...], keeps: tuple) -> dict:
    """Schedule points after the layers at the given fractions of the depth (0-based, at most
    ``n_layers - 2``: pruning after the last layer changes nothing)."""
    out: dict[int, float] = {}
    for f, k in zip(fractions, keeps, strict=True):
        layer = min(max(0, int(np.floor(n_layers * f + 0.5)) - 1), max(n_layers - 2, 0))
        out[layer] = k
    return out


#: SpAtten presets for the real model, by name: ``(token points, token keeps, head points,
#: head keeps, bits (k_msb, k_lsb, v_msb, v_lsb), refetch threshold)``; points are fractions
#: of the depth, keeps fractions of the input length / of the heads. Chosen on the MiniLM
#: corpus (docs/report.md): 8-bit MSB planes alone keep cosine 1.000 there, so the refetch
#: threshold is half of SpAtten's 0.1; head pruning costs the most accuracy, so it is late.
SPATTEN_PRESETS: dict[str, tuple] = {
    # quantization only: no pruning; 8-bit MSB planes, 4-bit LSB planes for flat heads
    "quant": ((), (), (), (), (8, 4, 8, 4), 0.05),
    # token pruning only (no head pruning), in the second half
    "tokens": ((0.5, 0.84), (0.85, 0.65), (), (), (8, 4, 8, 4), 0.05),
    # the default: before the last layer, keep 90 % of the tokens and 11 of 12 heads
    "default": ((0.84,), (0.9,), (0.84,), (0.92,), (8, 4, 8, 4), 0.05),
    # pruning from the first third, stronger head pruning, narrower planes
    "aggressive": ((0.34, 0.5, 0.67, 0.84), (0.8, 0.65, 0.5, 0.4), (0.67,), (0.75,),
                   (6, 4, 6, 2), 0.05),
}


def spatten_preset(preset: str, n_layers: int, **overrides) -> CascadeConfig:
    """A :class:`CascadeConfig` for ``n_layers`` from :data:`SPATTEN_PRESETS`; keyword
    ``overrides`` replace fields (``refetch_threshold=0.2``, ...)."""
    if preset not in SPATTEN_PRESETS:
        raise ValueError(f"spatten preset must be one of {', '.join(SPATTEN_PRESETS)}, "
                         f"got {preset!r}")
    tp, tk, hp, hk, bits, threshold = SPATTEN_PRESETS[preset]
    kwargs = dict(token_keep=_at_depth(n_layers, tp, tk), head_keep=_at_depth(n_layers, hp, hk),
                  k_msb_bits=bits[0], k_lsb_bits=bits[1], v_msb_bits=bits[2],
                  v_lsb_bits=bits[3], refetch_threshold=threshold)
    kwargs.update(overrides)
    return CascadeConfig(**kwargs)


def progressive_schedule(n_layers: int, final_keep: float, start_layer: int = 0
                         ) -> dict[int, float]:
    """Token keep after each layer ``l`` in ``start_layer..n_layers-2``: ``final_keep **
    ((l - start_layer + 1) / (n_layers - 1 - start_layer))`` of the input length, so the last
    layer runs on ``final_keep`` of the tokens."""
    _check_fraction("final_keep", final_keep)
    if not 0 <= start_layer <= n_layers - 2:
        return {}
    span = n_layers - 1 - start_layer
    return {layer: float(final_keep ** ((layer - start_layer + 1) / span))
            for layer in range(start_layer, n_layers - 1)}


class ProgressivePolicy(SpAttenPolicy):
    """A progressive sparsity schedule: cascade token pruning whose keep ratio shrinks
    geometrically with depth (:func:`progressive_schedule`), float32 K/V, all heads.

    Scores and pruning are :class:`SpAttenPolicy`'s (the pruning unit applies); only the
    schedule differs, so comparing the two shows what quantization and head pruning add.
    """

    name = "progressive"

    def __init__(self, final_keep: float = 0.5, start_layer: int = 0, *,
                 name: str | None = None, record: bool = False) -> None:
        self.final_keep = _check_fraction("final_keep", final_keep)
        if isinstance(start_layer, bool) or not isinstance(start_layer, (int, np.integer)) \
                or start_layer < 0:
            raise ValueError(f"start_layer must be an integer >= 0, got {start_layer!r}")
        self.start_layer = int(start_layer)
        super().__init__(CascadeConfig(k_msb_bits=32, k_lsb_bits=0, v_msb_bits=32, v_lsb_bits=0),
                         name=name, record=record)

    def params(self) -> dict:
        return {"final_keep": self.final_keep, "start_layer": self.start_layer,
                "prob_bits": self.config.prob_bits}

    def begin(self, n_tokens: int, config: BertConfig) -> None:
        self.config.token_keep = progressive_schedule(config.num_hidden_layers, self.final_keep,
                                                      self.start_layer)
        super().begin(n_tokens, config)


# --------------------------------------------------------------------------------------------
# per-query sparsity: static top-k, local window + global sample
# --------------------------------------------------------------------------------------------


class _MaskPolicy(Policy):
    """Float32 attention under a per-layer key mask; each query tile of a head reads the K and
    V rows its rows keep (union over the tile)."""

    #: Read every K row (scores over all keys are needed), not only the kept ones.
    full_k = False

    def __init__(self, query_tile: int | None) -> None:
        self.query_tile = _check_tile(query_tile)

    def bits(self) -> tuple[int, int, int, int]:
        return FP32_BITS

    def mask(self, view: LayerView, scores: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def attend(self, view: LayerView) -> Attention:
        scores = scaled_scores(view.q, view.k)
        mask = np.broadcast_to(self.mask(view, scores), scores.shape)
        probs = masked_softmax(scores, mask)
        parts: list[np.ndarray] = []
        for hi, head in enumerate(view.heads):
            for rows in _tiles(len(view.tokens), self.query_tile):
                need = view.tokens[mask[hi, rows].any(axis=0)]
                parts.append(_requests(Plane.K_MSB, int(head),
                                       view.tokens if self.full_k else need))
                parts.append(_requests(Plane.V_MSB, int(head), need))
        return Attention(probs, None, requests=_stack(parts))


class TopKPolicy(_MaskPolicy):
    """Static top-k per query: each query row keeps its ``k = max(1, floor(m * keep))`` largest
    scores over the ``m`` keys (exactly ``k``, ties to the lower key: the top-k engine's rule,
    or ``tie_rule="threshold"``), softmax over those.

    All queries of a head need their scores over every key, so K is read in full; V rows kept
    by no query of a tile are not read. The top-k does not reduce K traffic: it saves compute.
    """

    name = "topk"
    full_k = True

    def __init__(self, keep: float = 0.25, tie_rule: str = "exact",
                 query_tile: int | None = None, *, name: str | None = None) -> None:
        super().__init__(query_tile)
        self.keep = _check_fraction("keep", keep)
        if tie_rule not in ("exact", "threshold"):
            raise ValueError(f"tie_rule must be 'exact' or 'threshold', got {tie_rule!r}")
        self.tie_rule = tie_rule
        if name is not None:
            self.name = name

    def params(self) -> dict:
        return {"keep": self.keep, "tie_rule": self.tie_rule, "query_tile": self.query_tile}

    def mask(self, view: LayerView, scores: np.ndarray) -> np.ndarray:
        m = scores.shape[-1]
        return topk_mask(scores, max(1, int(np.floor(m * self.keep))), self.tie_rule)


class WindowGlobalPolicy(_MaskPolicy):
    """NSA-style hybrid sparsity: a local window plus a global dynamic sample.

    Query ``i`` of ``m`` tokens attends to the ``w`` keys nearest in position (the window
    ``[i - w//2, i - w//2 + w)`` shifted inside ``0..m-1``) and to a global sample: the
    ``g`` tokens with the highest accumulated importance (attention received, summed over
    heads, queries and earlier layers; ties to the lower position), the same for all heads of
    the layer. ``w = max(1, round(window * m))`` and ``g = round(global_keep * m)`` (the
    design's 512-token window at long context is a quarter of a 2k input; here a quarter of
    the input by default). The first ``dense_layers`` layers are dense (there is no importance
    yet). Reads: per head and query tile, the K and V rows of the union of its rows' keys.
    """

    name = "window"

    def __init__(self, window: float = 0.25, global_keep: float = 0.25, dense_layers: int = 1,
                 query_tile: int | None = None, *, name: str | None = None) -> None:
        super().__init__(query_tile)
        self.window = _check_fraction("window", window)
        self.global_keep = _check_fraction("global_keep", global_keep, lo_open=False)
        if isinstance(dense_layers, bool) or not isinstance(dense_layers, (int, np.integer)) \
                or dense_layers < 0:
            raise ValueError(f"dense_layers must be an integer >= 0, got {dense_layers!r}")
        self.dense_layers = int(dense_layers)
        if name is not None:
            self.name = name

    def params(self) -> dict:
        return {"window": self.window, "global_keep": self.global_keep,
                "dense_layers": self.dense_layers, "query_tile": self.query_tile}

    def begin(self, n_tokens: int, config: BertConfig) -> None:
        self.importance = np.zeros(n_tokens, np.float64)

    def mask(self, view: LayerView, scores: np.ndarray) -> np.ndarray:
        m = scores.shape[-1]
        if view.layer < self.dense_layers:
            return np.ones((m, m), bool)
        w = min(m, max(1, int(np.floor(self.window * m + 0.5))))
        g = min(m, int(np.floor(self.global_keep * m + 0.5)))
        i = np.arange(m)
        start = np.clip(i - w // 2, 0, m - w)
        j = np.arange(m)
        mask = (j[None, :] >= start[:, None]) & (j[None, :] < start[:, None] + w)
        if g:
            mask[:, topk(self.importance[view.tokens], g).indices] = True
        return mask

    def attend(self, view: LayerView) -> Attention:
        att = super().attend(view)
        self.importance[view.tokens] += att.probs.sum(axis=(0, 1), dtype=np.float64)
        return att


# --------------------------------------------------------------------------------------------
# policy specs for the report
# --------------------------------------------------------------------------------------------

#: Policy names and the values their knob takes in the default report (the Pareto sweep).
POLICY_NAMES: dict[str, tuple[str, tuple]] = {
    "dense": ("", ()),
    "spatten": ("preset", ("default", "quant", "tokens", "aggressive")),
    "progressive": ("final_keep", (0.6, 0.3)),
    "topk": ("keep", (0.5, 0.25, 0.125)),
    "window": ("window", (0.25, 0.125)),
}
DEFAULT_POLICIES = "dense,spatten,progressive,topk,window"


def make_policy(name: str, value: str | float | None, n_layers: int) -> Policy:
    """One policy: ``name`` from :data:`POLICY_NAMES` with its knob set to ``value`` (``None``:
    the first default). The report name is ``name`` or ``name=value``."""
    if name not in POLICY_NAMES:
        raise ValueError(f"unknown policy {name!r}; one of {', '.join(POLICY_NAMES)}")
    knob, defaults = POLICY_NAMES[name]
    if name == "dense":
        if value is not None:
            raise ValueError("policy 'dense' takes no value")
        return DensePolicy()
    if value is None:
        value = defaults[0]
    label = f"{name}={value}"
    if name == "spatten":
        return SpAttenPolicy(spatten_preset(str(value), n_layers), name=label)
    try:
        x = float(value)
    except ValueError:
        raise ValueError(f"policy {name}: {knob} must be a number, got {value!r}") from None
    label = f"{name}={x:g}"
    if name == "progressive":
        return ProgressivePolicy(x, name=label)
    if name == "topk":
        return TopKPolicy(x, name=label)
    return WindowGlobalPolicy(window=x, global_keep=0.25, name=label)


def parse_policies(text: str) -> list[tuple[str, str | None]]:
    """``"dense,spatten=quant/default,topk=0.25"`` -> ``[(name, value), ...]``.

    A bare name expands to its default sweep (:data:`POLICY_NAMES`); ``name=v1/v2`` to the
    given values. ``dense`` is always first (the baseline), added if missing.
    """
    out: list[tuple[str, str | None]] = [("dense", None)]
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        name, sep, values = item.partition("=")
        name = name.strip()
        if name not in POLICY_NAMES:
            raise ValueError(f"--policies: unknown policy {name!r}; one of "
                             f"{', '.join(POLICY_NAMES)}")
        if name == "dense":
            if sep:
                raise ValueError("--policies: 'dense' takes no value")
            continue
        vals = [v.strip() for v in values.split("/")] if sep else \
            [str(v) for v in POLICY_NAMES[name][1]]
        for v in vals:
            if not v:
                raise ValueError(f"--policies: empty value in {item!r}")
            if (name, v) not in out:
                out.append((name, v))
    return out
