"""Top-k selection with the hardware's exact tie rule.

Contract (shared with :class:`psa.hw.topk.TopKEngine`): ``topk(values, k)`` keeps exactly
``min(k, n)`` elements: every element strictly greater than the k-th largest value, then the
elements equal to it in ascending index order until ``k`` are kept. So ties keep the lowest
indices. Results come in ascending index order.

:func:`topk_threshold_mask` is the other common convention (keep every element ``>=`` the
k-th largest; may keep more than k). Policies state which one they use.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["TopK", "topk", "topk_threshold_mask", "kth_largest"]


class TopK(NamedTuple):
    """Result of :func:`topk`: ``indices`` ascending (int64) and the ``values`` at them."""

    indices: np.ndarray
    values: np.ndarray


def _check(values: np.ndarray, k: int) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"topk: values must be 1-D, got shape {values.shape!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"topk: k must be an integer, got {k!r}")
    if k < 0:
        raise ValueError(f"topk: k must be >= 0, got {k}")
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError("topk: values contain NaN, which has no order")
    return values


def kth_largest(values: np.ndarray, k: int):
    """The k-th largest value (1-based, duplicates counted), for 1 <= k <= n."""
    values = _check(values, k)
    if not 1 <= k <= len(values):
        raise ValueError(f"kth_largest: k must be in 1..{len(values)}, got {k}")
    return np.partition(values, len(values) - k)[len(values) - k]


def topk(values: np.ndarray, k: int) -> TopK:
    """Exactly ``min(k, n)`` largest elements, ties to the lowest index, in index order.

    Works for signed/unsigned integers and floats. ``k = 0`` or an empty input gives empty
    results; a negative ``k`` raises :class:`ValueError`.
    """
    values = _check(values, k)
    n = len(values)
    if k == 0 or n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return TopK(empty, values[:0].copy())
    if k >= n:
        return TopK(np.arange(n, dtype=np.int64), values.copy())
    pivot = kth_largest(values, k)
    greater = values > pivot
    need = k - int(greater.sum())
    ties = np.flatnonzero(values == pivot)[:need]
    keep = greater
    keep[ties] = True
    idx = np.flatnonzero(keep).astype(np.int64)
    return TopK(idx, values[idx])


def topk_threshold_mask(values: np.ndarray, k: int, axis: int = -1) -> np.ndarray:
    """Boolean mask of elements ``>=`` the k-th largest along ``axis`` (may keep > k on ties).

    ``k <= 0`` keeps nothing; ``k >= n`` keeps everything.
    """
    values = np.asarray(values)
    n = values.shape[axis]
    if k <= 0 or n == 0:
        return np.zeros(values.shape, dtype=bool)
    if k >= n:
        return np.ones(values.shape, dtype=bool)
    kth = np.take(np.partition(values, n - k, axis=axis), [n - k], axis=axis)
    return values >= kth
