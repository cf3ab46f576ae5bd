"""Decode-mode selection and pruning: the reference for K/V selection during generation.

Everything here works on integers (``UQ0.f`` probabilities from
:func:`~psa.golden.fixed_point.quantize_unsigned_fraction`) so hardware can match it bit for bit.

:class:`DecodePruningState`
    :class:`~psa.golden.pruning.PruningState` with the decode commands:

    ``append(score=0)``
        the next token (id ``n``, ``n + 1``, ...) joins the alive list at the end with score
        ``score`` (default 0, clamped to ``2^score_bits - 1``: the pruning unit's ``APPEND``
        argument); :class:`ValueError` when ``max_tokens`` tokens have been started or
        appended.
    ``add_probs_for(tokens, rows)``
        rows over a superset of the alive tokens (ascending token ids, e.g. a shallower layer's
        alive list): each alive token gets its column; columns of tokens not alive are dropped.
    ``add_scores_for(tokens, increments)``
        as ``add_probs_for`` with one row of already summed non-negative integer increments
        (e.g. :func:`gqa_importance`, or a sum over many query rows): each alive token's score
        ``+= increment`` saturating at ``score_bits``; equal to adding the rows one by one.
    ``retain(tokens)``
        drop every alive token not in ``tokens`` (a deeper layer follows a shallower layer's
        pruning: cascade); scores of the survivors are unchanged.
    ``prune_decode(k, recent=0)``
        keep the last ``min(recent, k, alive)`` alive tokens unconditionally, then the highest
        scoring of the rest up to ``k`` in all (ties to the lower position, via
        :func:`~psa.golden.topk.topk`); ``recent = 0`` is :meth:`prune`. Pruned tokens never
        come back (``append`` only adds new ids).

    Importance accumulates across calls: across layers and decode steps, whatever the caller
    adds. :func:`gqa_importance` forms the per-K/V-head increments under grouped-query attention.

:func:`select_kv`
    per query, the ``kv`` largest probabilities (exactly ``min(kv, n)``, ties to the lower
    position), ascending token order.
:func:`select_topp`
    per query, the fewest tokens whose fixed-point probabilities sum to at least ``p_fixed``.
    Order: value descending, ties to the lower position; the kept set is the shortest prefix of
    that order whose sum is ``>= p_fixed``; ascending token order out. ``p_fixed = 0`` keeps
    nothing (the empty prefix already reaches 0); when the whole row sums to less than
    ``p_fixed`` (quantized rows can sum below ``2^f``) every token is kept. :func:`p_to_fixed`
    rounds ``p`` to the same ``UQ0.f`` grid (``floor(p 2^f + 1/2)``, so ``p = 1`` is ``2^f``:
    "keep tokens until the row's whole mass", i.e. all tokens with a non-zero probability and,
    if the quantized sum falls short, all tokens).
:func:`select_fetch_trace`
    the requests of the pruning unit's ``SELECT`` command for one query row of one K/V head:
    the ``K_LSB`` rows of every alive token when the row is flat (largest probability
    ``< lsb_threshold``), then the ``V_MSB`` rows of the selected tokens, then (flat rows only)
    their ``V_LSB`` rows; planes of 0 bits are skipped.
"""

from __future__ import annotations

import numpy as np

from .fixed_point import check_bits, quantize_unsigned_fraction, saturating_add
from .pruning import PruningState
from .topk import topk
from .trace import AccessTrace, KVLayout, Plane

__all__ = ["DecodePruningState", "gqa_importance", "select_kv", "select_topp", "p_to_fixed",
           "select_fetch_trace"]


class DecodePruningState(PruningState):
    """Decode-mode pruning state (commands in the module docstring); parameters as
    :class:`~psa.golden.pruning.PruningState`. ``max_tokens`` is the cache capacity."""

    def start(self, n: int) -> None:
        super().start(n)
        self.next_token = int(n)

    def append(self, score: int = 0) -> int:
        """Add the next token at the end of the alive list with ``score`` (clamped to
        ``2^score_bits - 1``); returns its id."""
        if isinstance(score, bool) or not isinstance(score, (int, np.integer)) or score < 0:
            raise ValueError(f"append: score must be an integer >= 0, got {score!r}")
        if self.next_token >= self.max_tokens:
            raise ValueError(f"append: state is full ({self.max_tokens} tokens, max_tokens)")
        t = self.next_token
        self.alive = np.append(self.alive, np.int64(t))
        self.scores = np.append(self.scores,
                                np.uint64(min(int(score), (1 << self.score_bits) - 1)))
        self.next_token += 1
        return t

    def add_probs_for(self, tokens: np.ndarray, rows: np.ndarray) -> None:
        """Add rows ``(..., len(tokens))`` given over ``tokens`` (ascending ids, a superset of
        the alive tokens); columns of tokens that are not alive are dropped."""
        rows = np.asarray(rows)
        if rows.shape[-1:] != (len(np.asarray(tokens)),):
            raise ValueError(f"add_probs_for: rows must end in len(tokens) = "
                             f"{len(np.asarray(tokens))}, got shape {rows.shape}")
        pos = self._positions(tokens)
        self.add_probs(rows[..., pos])

    def _positions(self, tokens: np.ndarray) -> np.ndarray:
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.ndim != 1 or (len(tokens) > 1 and np.any(np.diff(tokens) <= 0)):
            raise ValueError("tokens must be a strictly ascending 1-D array of token ids")
        pos = np.searchsorted(tokens, self.alive)
        ok = pos < len(tokens)
        ok[ok] = tokens[pos[ok]] == self.alive[ok]
        if not ok.all():
            raise ValueError(f"alive tokens {self.alive[~ok][:5].tolist()} are not in tokens")
        return pos

    def add_scores_for(self, tokens: np.ndarray, increments: np.ndarray) -> None:
        """Add summed integer increments ``(len(tokens),)`` over ``tokens`` (a superset of the
        alive tokens, ascending) to the alive tokens' scores, saturating."""
        inc = np.asarray(increments)
        if inc.shape != (len(np.asarray(tokens)),) or (inc.size and inc.dtype.kind not in "iu"):
            raise ValueError(f"add_scores_for: increments must be integers of shape "
                             f"({len(np.asarray(tokens))},), got {inc.dtype} {inc.shape}")
        if inc.size and inc.min() < 0:
            raise ValueError("add_scores_for: increments must be >= 0")
        pos = self._positions(tokens)
        if len(self.alive):
            self.scores = saturating_add(self.scores, inc[pos].astype(np.uint64),
                                         self.score_bits)

    def retain(self, tokens: np.ndarray) -> np.ndarray:
        """Keep only the alive tokens that are in ``tokens``; returns the alive ids."""
        keep = np.isin(self.alive, np.asarray(tokens, dtype=np.int64))
        self.alive, self.scores = self.alive[keep], self.scores[keep]
        return self.alive

    def prune_decode(self, k: int, recent: int = 0) -> np.ndarray:
        """Keep the ``min(recent, k)`` newest alive tokens and the top-scoring rest, ``min(k,
        alive)`` in all; returns the alive token ids (ascending)."""
        if isinstance(recent, bool) or not isinstance(recent, (int, np.integer)) or recent < 0:
            raise ValueError(f"prune_decode: recent must be an integer >= 0, got {recent!r}")
        n = len(self.alive)
        keep_n = min(int(k), n)
        r = min(int(recent), keep_n)
        old = n - r
        chosen = topk(self.scores[:old], keep_n - r).indices
        keep = np.concatenate([chosen, np.arange(old, n, dtype=np.int64)])
        self.alive, self.scores = self.alive[keep], self.scores[keep]
        return self.alive


def gqa_importance(probs: np.ndarray, group: int, prob_bits: int = 12) -> np.ndarray:
    """Per-K/V-head importance increments from one query's probabilities.

    ``probs``: float ``[n_heads, n]`` in [0, 1] (query head ``h`` uses K/V head ``h //
    group``); each is quantized to ``UQ0.prob_bits`` (round half up, clamped) and the query
    heads of a group are summed: uint64 ``[n_heads // group, n]``.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2 or group < 1 or probs.shape[0] % group:
        raise ValueError(f"gqa_importance: probs must be [n_heads, n] with n_heads a multiple "
                         f"of group {group}, got shape {probs.shape}")
    q = quantize_unsigned_fraction(probs, prob_bits)
    return q.reshape(probs.shape[0] // group, group, -1).sum(axis=1, dtype=np.uint64)


def select_kv(probs_row: np.ndarray, kv: int) -> np.ndarray:
    """Token positions of the ``min(kv, n)`` largest probabilities, ties to the lower position,
    ascending (:func:`~psa.golden.topk.topk`)."""
    return topk(np.asarray(probs_row), kv).indices


def p_to_fixed(p: float, prob_bits: int) -> int:
    """A mass ``p`` in [0, 1] on the ``UQ0.prob_bits`` grid: ``floor(p 2^b + 1/2)`` (``p = 1``
    gives ``2^b``, one above the largest single probability)."""
    check_bits("prob_bits", prob_bits, 1, 32)
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    return int(np.floor(p * (1 << prob_bits) + 0.5))


def select_topp(probs_fixed: np.ndarray, p_fixed: int) -> np.ndarray:
    """The fewest tokens whose probabilities sum to ``>= p_fixed`` (rules in the module
    docstring); token positions ascending, int64."""
    probs = np.asarray(probs_fixed)
    if probs.ndim != 1 or probs.dtype.kind not in "iu":
        raise ValueError(f"select_topp: probs_fixed must be a 1-D integer array, got "
                         f"{probs.dtype} shape {probs.shape}")
    if probs.size and probs.min() < 0:
        raise ValueError("select_topp: probabilities must be >= 0")
    if isinstance(p_fixed, bool) or not isinstance(p_fixed, (int, np.integer)) or p_fixed < 0:
        raise ValueError(f"select_topp: p_fixed must be an integer >= 0, got {p_fixed!r}")
    if p_fixed == 0 or probs.size == 0:
        return np.zeros(0, np.int64)
    vals = probs.astype(np.uint64)
    if vals.max() >= 2**62:
        raise ValueError("select_topp: probabilities must be < 2^62")
    # value descending, then position ascending (lexsort: the last key is the primary one)
    order = np.lexsort((np.arange(len(vals)), -vals.astype(np.int64)))
    csum = np.cumsum(vals[order], dtype=np.uint64)
    reach = np.flatnonzero(csum >= np.uint64(p_fixed))
    count = len(vals) if len(reach) == 0 else int(reach[0]) + 1
    return np.sort(order[:count]).astype(np.int64)


def select_fetch_trace(layout: KVLayout, layer: int, head: int, alive: np.ndarray,
                       probs_row: np.ndarray, target: int, topp: bool = False,
                       lsb_threshold: int = 0) -> AccessTrace:
    """Requests of one ``SELECT`` (module docstring) for the query row ``probs_row`` (integer
    ``UQ0.f`` probabilities over ``alive``, ascending token ids): selection
    :func:`select_kv` with ``kv = target`` or :func:`select_topp` with ``p_fixed = target``;
    ``flat = max(probs_row) < lsb_threshold`` (``lsb_threshold = 0``: never flat)."""
    alive = np.asarray(alive, dtype=np.int64)
    row = np.asarray(probs_row)
    if row.shape != alive.shape:
        raise ValueError(f"select_fetch_trace: probs_row must have shape {alive.shape}, got "
                         f"{row.shape}")
    if len(alive) == 0:
        return AccessTrace.empty()
    sel = select_topp(row, int(target)) if topp else select_kv(row, int(target))
    flat = int(row.max()) < int(lsb_threshold)
    parts = []
    for plane, tokens, on in ((Plane.K_LSB, alive, flat), (Plane.V_MSB, alive[sel], True),
                              (Plane.V_LSB, alive[sel], flat)):
        if on and layout.bits(plane) and len(tokens):
            parts.append(AccessTrace(layout.address(plane, layer, head, tokens),
                                     layout.row_bytes(plane), layer=layer, plane=plane))
    return AccessTrace.concat(parts)
