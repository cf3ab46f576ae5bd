"""A full cascade-pruned forward pass over a workload: token + head pruning, progressive
quantization and local value pruning, with the K/V reads it implies.

Per layer ``l`` and kept head ``h``, with ``A`` the alive tokens (keys, values *and* queries):

1. K and V of the head are held as MSB + LSB planes (:mod:`psa.golden.quant`, one scale per
   (layer, head) over all tokens, so pruning does not change stored values).
2. Queries are processed in tiles of ``query_tile`` rows (default: all alive rows, i.e. the
   head's K/V stay on chip for the whole layer). Per tile, the K MSB rows of ``A`` are read;
   rows whose MSB-only softmax peaks below ``refetch_threshold`` are *flat*: if a tile has a
   flat row, the K (and V) LSB rows are read and the flat rows recomputed at full precision.
3. Local value pruning: per query row only the V rows of its top ``ceil(v_keep * |A|)``
   probabilities are needed (threshold tie rule); a tile reads the union of those rows.
4. Importance: the probabilities, quantized to ``UQ0.prob_bits``, are summed over kept heads
   and alive query rows into the saturating token scores (:class:`PruningState`); the head's
   output L1 magnitude ``floor(sum |P V|)`` (clamped to ``mag_bits``) into its head score.
5. After the layer, the schedules prune heads (``head_keep``) and then tokens
   (``token_keep``); pruned ones are gone for every later layer of this pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .attention import softmax
from .fixed_point import check_bits, quantize_unsigned_fraction
from .pruning import PruningState, kv_fetch_trace, resolve_keep
from .quant import split_quantize
from .topk import topk_threshold_mask
from .trace import AccessTrace, KVLayout, Plane
from .workloads import SyntheticWorkload

__all__ = ["CascadeConfig", "LayerStats", "CascadeRun", "run_cascade", "spatten_token_schedule",
           "dense_trace"]


def spatten_token_schedule(n_layers: int) -> dict[int, float]:
    """SpAtten's GPT-2 style key pruning: keep 0.9, 0.7, 0.2, 0.1 of the sequence after layers
    at 1/4, 1/2, 3/4 and 11/12 of the depth (layers 2, 5, 8, 10 of 12)."""
    points = sorted({max(0, round(n_layers * f) - 1) for f in (0.25, 0.5, 0.75, 11 / 12)})
    return dict(zip(points, (0.9, 0.7, 0.2, 0.1)[-len(points):], strict=True))


@dataclass
class CascadeConfig:
    """Knobs of :func:`run_cascade`. Keep schedules map *after layer l* to a count (int) or a
    fraction (float) of the sequence length (tokens) or of ``n_heads`` (heads)."""

    token_keep: dict[int, int | float] = field(default_factory=dict)
    head_keep: dict[int, int | float] = field(default_factory=dict)
    prob_bits: int = 12
    score_bits: int = 24
    mag_bits: int = 24
    head_score_bits: int = 32
    k_msb_bits: int = 8
    k_lsb_bits: int = 4
    v_msb_bits: int = 8
    v_lsb_bits: int = 4
    refetch_threshold: float = 0.1
    v_keep: float = 1.0
    query_tile: int | None = None

    def validate(self, n_layers: int) -> None:
        for name, sched in (("token_keep", self.token_keep), ("head_keep", self.head_keep)):
            for layer, keep in sched.items():
                if not 0 <= layer < n_layers:
                    raise ValueError(f"{name}: layer must be in 0..{n_layers - 1}, got {layer}")
                resolve_keep(keep, 1, f"{name}[{layer}]")
        check_bits("mag_bits", self.mag_bits, 1, 48)
        for name in ("k_msb_bits", "v_msb_bits"):
            check_bits(name, getattr(self, name), 2, 32)
        for name in ("k_lsb_bits", "v_lsb_bits"):
            check_bits(name, getattr(self, name), 0, 30)
        if not 0.0 <= self.refetch_threshold <= 1.0:
            raise ValueError(f"refetch_threshold must be in [0, 1], got {self.refetch_threshold}")
        if not 0.0 < self.v_keep <= 1.0:
            raise ValueError(f"v_keep must be in (0, 1], got {self.v_keep}")
        if self.query_tile is not None and self.query_tile < 1:
            raise ValueError(
                f"query_tile must be >= 1 (or None for all rows), got {self.query_tile}")

    def layout(self, workload: SyntheticWorkload) -> KVLayout:
        return KVLayout(workload.n_layers, workload.n_heads, workload.n_tokens, workload.d_head,
                        self.k_msb_bits, self.k_lsb_bits, self.v_msb_bits, self.v_lsb_bits)


@dataclass
class LayerStats:
    """What one layer did. Row counts are K/V rows read (one row = one token of one head)."""

    layer: int
    alive: np.ndarray          # token ids alive during the layer
    heads: np.ndarray          # head ids kept during the layer
    scores: np.ndarray         # token scores after this layer's accumulation (alive order)
    head_scores: np.ndarray    # head scores after this layer (kept-head order)
    rows: int = 0              # query rows computed (all kept heads)
    flat_rows: int = 0         # rows recomputed with LSBs
    k_msb_rows: int = 0
    k_lsb_rows: int = 0
    v_msb_rows: int = 0
    v_lsb_rows: int = 0
    trace: AccessTrace = field(default_factory=AccessTrace.empty, repr=False)

    @property
    def refetch_rate(self) -> float:
        return self.flat_rows / self.rows if self.rows else 0.0


@dataclass
class CascadeRun:
    workload: SyntheticWorkload
    config: CascadeConfig
    layout: KVLayout
    layers: list[LayerStats]

    def trace(self) -> AccessTrace:
        return AccessTrace.concat(s.trace for s in self.layers)


def dense_trace(layout: KVLayout, n_tokens: int) -> AccessTrace:
    """Every K and V row of every plane, layer and head: the unpruned baseline."""
    planes = tuple(p for p in (Plane.K_MSB, Plane.K_LSB, Plane.V_MSB, Plane.V_LSB)
                   if layout.bits(p))
    heads = np.arange(layout.n_heads)
    tokens = np.arange(n_tokens)
    return AccessTrace.concat(kv_fetch_trace(layout, layer, tokens, heads, planes)
                              for layer in range(layout.n_layers))


def _tile_rows(n: int, tile: int | None):
    tile = n if tile is None else tile
    return [slice(s, min(s + tile, n)) for s in range(0, max(n, 1), max(tile, 1))] if n else []


def run_cascade(workload: SyntheticWorkload, config: CascadeConfig | None = None,
                progress=None) -> CascadeRun:
    """Run the cascade over all layers; ``progress(layer)`` is called after each layer."""
    config = config or CascadeConfig()
    config.validate(workload.n_layers)
    layout = config.layout(workload)
    n, d = workload.n_tokens, workload.d_head
    state = PruningState(n, workload.n_heads, config.prob_bits, config.score_bits,
                         config.head_score_bits)
    state.start(n)
    mag_max = (1 << config.mag_bits) - 1
    progressive = config.k_lsb_bits > 0 and config.refetch_threshold > 0
    layers = []
    for layer in range(workload.n_layers):
        alive, heads = state.alive.copy(), state.heads.copy()
        stats = LayerStats(layer, alive, heads, state.scores, state.head_scores)
        parts = []
        m = len(alive)
        v_count = int(np.ceil(config.v_keep * m))
        for h in heads if m else ():  # no alive token: the layer reads nothing
            q, k, v = workload.qkv(layer, int(h))
            kq = split_quantize(k, config.k_msb_bits, config.k_lsb_bits)
            vq = split_quantize(v, config.v_msb_bits, config.v_lsb_bits)
            qa = q[alive].astype(np.float64)
            p = softmax(qa @ kq.msb_only[alive].T / np.sqrt(d))
            flat = (p.max(axis=1) < config.refetch_threshold) if progressive else np.zeros(m, bool)
            if flat.any():
                p[flat] = softmax(qa[flat] @ kq.full[alive].T / np.sqrt(d))
            out = np.zeros((m, d))
            for rows in _tile_rows(m, config.query_tile):
                refetch = bool(flat[rows].any())
                need_v = topk_threshold_mask(p[rows], v_count).any(axis=0)
                v_rows = alive[need_v]
                v_used = (vq.full if refetch else vq.msb_only)[alive] * need_v[:, None]
                out[rows] = p[rows] @ v_used
                stats.k_msb_rows += m
                stats.v_msb_rows += len(v_rows)
                parts.append(AccessTrace(layout.address(Plane.K_MSB, layer, h, alive),
                                         layout.row_bytes(Plane.K_MSB), layer=layer,
                                         plane=Plane.K_MSB))
                if refetch:
                    stats.k_lsb_rows += m
                    parts.append(AccessTrace(layout.address(Plane.K_LSB, layer, h, alive),
                                             layout.row_bytes(Plane.K_LSB), layer=layer,
                                             plane=Plane.K_LSB))
                parts.append(AccessTrace(layout.address(Plane.V_MSB, layer, h, v_rows),
                                         layout.row_bytes(Plane.V_MSB), layer=layer,
                                         plane=Plane.V_MSB))
                if refetch and config.v_lsb_bits:
                    stats.v_lsb_rows += len(v_rows)
                    parts.append(AccessTrace(layout.address(Plane.V_LSB, layer, h, v_rows),
                                             layout.row_bytes(Plane.V_LSB), layer=layer,
                                             plane=Plane.V_LSB))
            stats.rows += m
            stats.flat_rows += int(flat.sum())
            state.add_probs(quantize_unsigned_fraction(p, config.prob_bits))
            state.add_head_magnitude(int(h), min(int(np.floor(np.abs(out).sum())), mag_max))
        stats.scores, stats.head_scores = state.scores.copy(), state.head_scores.copy()
        stats.trace = AccessTrace.concat(parts)
        if layer in config.head_keep:
            state.prune_heads(resolve_keep(config.head_keep[layer], workload.n_heads,
                                           f"head_keep[{layer}]"))
        if layer in config.token_keep:
            state.prune(resolve_keep(config.token_keep[layer], n, f"token_keep[{layer}]"))
        layers.append(stats)
        if progress is not None:
            progress(layer)
    return CascadeRun(workload, config, layout, layers)
