"""Fixed-point helpers shared by the golden model and the RTL benches.

Formats: ``UQ0.f`` is an unsigned fraction of ``f`` bits (integer ``q`` means ``q / 2**f``);
``SQi.f`` is two's complement with ``f`` fraction bits.
"""

from __future__ import annotations

import numpy as np

__all__ = ["quantize_unsigned_fraction", "saturating_add", "to_signed_fixed", "check_bits"]


def check_bits(name: str, bits: int, lo: int = 1, hi: int = 64) -> int:
    """Validate a bit-width parameter; returns it as int."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not lo <= bits <= hi:
        raise ValueError(f"{name} must be an integer in {lo}..{hi}, got {bits!r}")
    return int(bits)


def quantize_unsigned_fraction(p: np.ndarray, bits: int) -> np.ndarray:
    """Probabilities in [0, 1] -> ``UQ0.bits`` integers, round half up, clamped to 2**bits - 1.

    This is how the pruning unit receives probabilities (one lane = one ``bits``-bit value).
    """
    check_bits("prob_bits", bits, 1, 32)
    p = np.asarray(p, dtype=np.float64)
    q = np.floor(p * (1 << bits) + 0.5)
    return np.clip(q, 0, (1 << bits) - 1).astype(np.uint64)


def saturating_add(acc: np.ndarray, inc: np.ndarray, bits: int) -> np.ndarray:
    """``min(acc + inc, 2**bits - 1)`` for non-negative integers (uint64 result).

    For non-negative increments, saturating after every add equals saturating once, which is
    why the hardware's lane-by-lane saturation matches this.
    """
    check_bits("score_bits", bits, 1, 63)
    top = np.uint64((1 << bits) - 1)
    acc = np.asarray(acc, dtype=np.uint64)
    inc = np.asarray(inc, dtype=np.uint64)
    # acc <= top and inc < 2**63, so the sum cannot wrap uint64 before the clamp.
    return np.minimum(acc + np.minimum(inc, top), top)


def to_signed_fixed(x: np.ndarray, total_bits: int, scale: float) -> np.ndarray:
    """Symmetric quantization: ``round(x / scale)`` clamped to ``total_bits`` two's complement."""
    check_bits("total_bits", total_bits, 2, 32)
    lim = (1 << (total_bits - 1)) - 1
    return np.clip(np.rint(np.asarray(x, np.float64) / scale), -lim, lim).astype(np.int64)
