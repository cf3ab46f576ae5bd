"""Scaled dot-product attention with optional per-query top-k and three softmax variants.

Softmax variants (``softmax=``):

``"exact"``
    float64 ``exp``.
``"fixed"``
    integer softmax as hardware computes it. Scores are first quantized to ``SQ.f`` with
    ``f = score_frac_bits``; ``x = s - max(s) <= 0``; ``2**(x * log2 e)`` is split into an
    integer shift and a fraction looked up in a ``2**lut_bits``-entry table of ``UQ1.15``
    values; the row sum normalizes to ``UQ0.prob_bits`` probabilities (floor division).
``"poly"``
    the exponent is replaced by a cubic ``a3 x^3 + a2 x^2 + a1 x + a0`` of ``x = s - max(s)``
    on ``[clamp, 0]``; scores below ``clamp`` count as 0 (coefficients: weighted
    least-squares fit of ``exp`` on that range by default, see :func:`fit_exp_cubic`), then
    normalized in float. Cheap in hardware; its
    error is measured in ``tests/golden/test_attention.py``.

Top-k over scores (``topk=k``) keeps exactly ``k`` scores per row with ties to the lowest key
index (the engine's rule, :func:`psa.golden.topk.topk`); ``tie_rule="threshold"`` keeps every
score ``>=`` the k-th largest instead. Masked scores get probability 0.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from .topk import topk_threshold_mask

__all__ = ["attention", "softmax", "topk_mask", "fit_exp_cubic"]

LOG2E = 1.4426950408889634


def topk_mask(scores: np.ndarray, k: int, tie_rule: str = "exact") -> np.ndarray:
    """Boolean mask keeping ``min(k, n)`` scores per row (last axis).

    ``tie_rule="exact"``: exactly k, ties to the lowest index (same as :func:`topk` per row).
    ``tie_rule="threshold"``: every score ``>=`` the k-th largest.
    """
    if k < 0:
        raise ValueError(f"topk_mask: k must be >= 0, got {k}")
    if tie_rule == "threshold":
        return topk_threshold_mask(scores, k)
    if tie_rule != "exact":
        raise ValueError(f"topk_mask: tie_rule must be 'exact' or 'threshold', got {tie_rule!r}")
    scores = np.asarray(scores)
    n = scores.shape[-1]
    mask = np.zeros(scores.shape, dtype=bool)
    if k == 0 or n == 0:
        return mask
    # A stable sort of the negated scores puts equal scores in index order.
    order = np.argsort(-scores.astype(np.float64), axis=-1, kind="stable")[..., : min(k, n)]
    np.put_along_axis(mask, order, True, axis=-1)
    return mask


@cache
def fit_exp_cubic(clamp: float = -4.0) -> tuple[float, float, float, float]:
    """Cubic fit of ``exp(x)`` on ``[clamp, 0]``: ``(a3, a2, a1, a0)``.

    Least squares of the *relative* error (weights ``1 / exp(x)`` on the residual are replaced
    by weighting with ``exp(x)``'s square root), so the fit is tight near 0 where most of the
    probability mass is.
    """
    if not clamp < 0:
        raise ValueError(f"fit_exp_cubic: clamp must be < 0, got {clamp}")
    x = np.linspace(clamp, 0.0, 4097)
    a3, a2, a1, a0 = np.polyfit(x, np.exp(x), 3, w=np.exp(x / 2))
    return float(a3), float(a2), float(a1), float(a0)


@cache
def _exp2_lut(lut_bits: int) -> np.ndarray:
    frac = np.arange(1 << lut_bits) / (1 << lut_bits)
    return np.floor(2.0 ** (-frac) * (1 << 15) + 0.5).astype(np.int64)  # UQ1.15


def softmax(scores: np.ndarray, mask: np.ndarray | None = None, kind: str = "exact", *,
            prob_bits: int = 16, score_frac_bits: int = 8, lut_bits: int = 8,
            clamp: float = -4.0, coeffs: tuple[float, float, float, float] | None = None
            ) -> np.ndarray:
    """Row softmax over the last axis, masked entries -> 0.

    Returns float probabilities for ``"exact"``/``"poly"`` and ``UQ0.prob_bits`` integers
    (int64) for ``"fixed"``. A fully masked row gives all zeros.
    """
    s = np.asarray(scores, dtype=np.float64)
    if mask is None:
        mask = np.ones(s.shape, dtype=bool)
    if kind == "exact":
        x = np.where(mask, s, -np.inf)
        m = np.max(x, axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        e = np.where(mask, np.exp(x - m), 0.0)
        tot = e.sum(axis=-1, keepdims=True)
        return np.divide(e, tot, out=np.zeros_like(e), where=tot > 0)
    if kind == "poly":
        a3, a2, a1, a0 = coeffs if coeffs is not None else fit_exp_cubic(clamp)
        x = np.where(mask, s, -np.inf)
        m = np.max(x, axis=-1, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        x = np.where(mask, s - m, -np.inf)
        inside = x >= clamp  # below the range exp(x) < exp(clamp) counts as 0
        x = np.where(inside, x, 0.0)
        e = np.where(inside, np.maximum(((a3 * x + a2) * x + a1) * x + a0, 0.0), 0.0)
        tot = e.sum(axis=-1, keepdims=True)
        return np.divide(e, tot, out=np.zeros_like(e), where=tot > 0)
    if kind == "fixed":
        f = score_frac_bits
        q = np.rint(s * (1 << f)).astype(np.int64)
        big = np.iinfo(np.int64).min // 4
        q = np.where(mask, q, big)
        m = q.max(axis=-1, keepdims=True)
        x = np.where(mask, q - m, 0)  # SQ.f, <= 0
        # x * log2(e) in UQ.(f) then split into integer shift and lut_bits fraction
        t = (-x * int(round(LOG2E * (1 << 16)))) >> 16  # -x*log2e in .f, >= 0
        shift, frac = t >> f, t & ((1 << f) - 1)
        frac = frac >> (f - lut_bits) if f >= lut_bits else frac << (lut_bits - f)
        e = _exp2_lut(lut_bits)[frac] >> np.minimum(shift, 62)
        e = np.where(mask, e, 0)
        tot = e.sum(axis=-1, keepdims=True)
        p = np.where(tot > 0, (e << prob_bits) // np.maximum(tot, 1), 0)
        return np.minimum(p, (1 << prob_bits) - 1).astype(np.int64)
    raise ValueError(f"softmax: kind must be 'exact', 'fixed' or 'poly', got {kind!r}")


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, *, topk: int | None = None,
              tie_rule: str = "exact", softmax_kind: str = "exact", causal: bool = False,
              **softmax_args) -> tuple[np.ndarray, np.ndarray]:
    """``softmax(q k^T / sqrt(d)) v`` for ``q: (..., m, d)``, ``k, v: (..., n, d)``.

    Returns ``(output, probabilities)``; fixed-point probabilities are converted to float
    (``/ 2**prob_bits``) before the product with ``v``.
    """
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    d = q.shape[-1]
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(d)
    mask = np.ones(scores.shape, dtype=bool)
    if causal:
        m, n = scores.shape[-2:]
        mask &= np.tril(np.ones((m, n), dtype=bool), k=n - m)
    if topk is not None:
        mask &= topk_mask(np.where(mask, scores, -np.inf), topk, tie_rule)
    p = softmax(scores, mask, softmax_kind, **softmax_args)
    if softmax_kind == "fixed":
        p = p / float(1 << softmax_args.get("prob_bits", 16))
    return p @ v, p
