"""Cascade token and head pruning state: the command-level spec of the pruning unit.

:class:`PruningState` holds what :class:`psa.hw.pruner` holds and changes it with the same
commands, so a bench drives both with one script:

``start(n)``
    new sequence: tokens ``0..n-1`` alive, all token scores 0; all heads kept, head scores 0.
``add_probs(row)``
    one query row of one head: ``UQ0.prob_bits`` probabilities over the alive tokens, in alive
    order; each is added to its token's ``score_bits`` saturating score.
``prune(k)``
    keep the ``min(k, alive)`` tokens with the highest scores, ties to the lower alive position
    (:func:`psa.golden.topk.topk`); the survivors stay in ascending token order with their
    scores; pruned tokens never come back in this sequence.
``add_head_magnitude(head, mag)``
    accumulate a kept head's output L1 magnitude (unsigned integer) into its saturating
    ``head_score_bits`` score.
``prune_heads(kh)``
    keep the ``min(kh, kept)`` kept heads with the highest scores (ties to the lower head id).
``fetch_requests(layout, layer)``
    the K and V row reads of ``layer`` for the alive tokens and kept heads
    (:func:`kv_fetch_trace`).
"""

from __future__ import annotations

import numpy as np

from .fixed_point import check_bits, saturating_add
from .topk import topk
from .trace import AccessTrace, KVLayout, Plane

__all__ = ["PruningState", "kv_fetch_trace", "resolve_keep"]


def resolve_keep(keep: int | float, total: int, name: str = "keep") -> int:
    """A keep value as a count: ints are counts, floats in [0, 1] fractions of ``total``.

    Fractions round to the nearest count (half up), at least 1 when ``keep > 0``.
    """
    if isinstance(keep, bool):
        raise TypeError(f"{name} must be a count or a fraction, got {keep!r}")
    if isinstance(keep, (int, np.integer)):
        if keep < 0:
            raise ValueError(f"{name} must be >= 0, got {keep}")
        return int(keep)
    keep = float(keep)
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"{name} as a fraction must be in [0, 1], got {keep}")
    return max(1, int(np.floor(keep * total + 0.5))) if keep > 0 else 0


def kv_fetch_trace(layout: KVLayout, layer: int, alive: np.ndarray, heads: np.ndarray,
                   planes: tuple[Plane, ...] = (Plane.K_MSB, Plane.V_MSB)) -> AccessTrace:
    """Row reads of one layer, in the unit's order: for each kept head (ascending), for each
    plane in ``planes``, one request per alive token (ascending) of ``layout.row_bytes(plane)``.
    """
    alive = np.asarray(alive, dtype=np.int64)
    parts = []
    for h in np.asarray(heads, dtype=np.int64):
        for plane in planes:
            if layout.bits(plane) == 0 or len(alive) == 0:
                continue
            parts.append(AccessTrace(layout.address(plane, layer, h, alive),
                                     layout.row_bytes(plane), layer=layer, plane=plane))
    return AccessTrace.concat(parts)


class PruningState:
    """Token and head pruning state (see module docstring for the commands).

    Parameters
    ----------
    max_tokens : int
        Largest ``n`` accepted by :meth:`start` (1..65536).
    n_heads : int
        Heads per layer (1..256).
    prob_bits : int
        Width of one probability lane, ``UQ0.prob_bits`` (1..16).
    score_bits : int
        Token score accumulator width (``prob_bits``..48), saturating.
    head_score_bits : int
        Head score accumulator width (1..48), saturating.
    """

    def __init__(self, max_tokens: int, n_heads: int, prob_bits: int = 12, score_bits: int = 24,
                 head_score_bits: int = 32):
        self.max_tokens = check_bits("max_tokens", max_tokens, 1, 65536)
        self.n_heads = check_bits("n_heads", n_heads, 1, 256)
        self.prob_bits = check_bits("prob_bits", prob_bits, 1, 16)
        self.score_bits = check_bits("score_bits", score_bits, prob_bits, 48)
        self.head_score_bits = check_bits("head_score_bits", head_score_bits, 1, 48)
        self.start(0)

    def start(self, n: int) -> None:
        if not 0 <= n <= self.max_tokens:
            raise ValueError(f"start: n must be in 0..{self.max_tokens}, got {n}")
        self.alive = np.arange(n, dtype=np.int64)
        self.scores = np.zeros(n, dtype=np.uint64)
        self.heads = np.arange(self.n_heads, dtype=np.int64)
        self.head_scores = np.zeros(self.n_heads, dtype=np.uint64)

    def add_probs(self, rows: np.ndarray) -> None:
        """Add one row ``(len(alive),)`` or a stack of rows ``(..., len(alive))``."""
        rows = np.asarray(rows)
        if rows.shape[-1:] != (len(self.alive),):
            raise ValueError(f"add_probs: rows must end in the alive count {len(self.alive)}, "
                             f"got shape {rows.shape}")
        if rows.size and (rows.min() < 0 or rows.max() >= 1 << self.prob_bits):
            raise ValueError(f"add_probs: probabilities must be in 0..{(1 << self.prob_bits) - 1}")
        if len(self.alive) == 0:
            return  # nothing alive (after prune(0)): rows are empty, nothing to add
        total = rows.reshape(-1, len(self.alive)).astype(np.uint64).sum(axis=0, dtype=np.uint64)
        self.scores = saturating_add(self.scores, total, self.score_bits)

    def prune(self, k: int) -> np.ndarray:
        """Keep the top ``min(k, alive)`` tokens; returns the new alive token ids."""
        keep = topk(self.scores, k).indices
        self.alive, self.scores = self.alive[keep], self.scores[keep]
        return self.alive

    def add_head_magnitude(self, head: int, magnitude: int) -> None:
        pos = np.flatnonzero(self.heads == head)
        if len(pos) != 1:
            raise ValueError(f"add_head_magnitude: head {head} is not kept ({self.heads.tolist()})")
        if magnitude < 0:
            raise ValueError(f"add_head_magnitude: magnitude must be >= 0, got {magnitude}")
        self.head_scores[pos] = saturating_add(self.head_scores[pos], magnitude,
                                               self.head_score_bits)

    def prune_heads(self, kh: int) -> np.ndarray:
        """Keep the top ``min(kh, kept)`` heads; returns the kept head ids."""
        keep = topk(self.head_scores, kh).indices
        self.heads, self.head_scores = self.heads[keep], self.head_scores[keep]
        return self.heads

    def fetch_requests(self, layout: KVLayout, layer: int) -> AccessTrace:
        return kv_fetch_trace(layout, layer, self.alive, self.heads)
