"""Progressive quantization: K/V stored as MSB and LSB planes; LSBs fetched only when needed.

A value is quantized symmetrically to ``msb_bits + lsb_bits`` two's complement bits with one
scale per (layer, head) (``max |x|`` maps to the largest code). The MSB plane holds the top
``msb_bits`` (arithmetic shift right by ``lsb_bits``); the LSB plane the low ``lsb_bits``.
An MSB-only value is reconstructed as ``(code >> lsb) << lsb`` plus half an LSB step, the
midpoint of the codes it stands for.

The decision rule (SpAtten): compute the softmax row with MSB-only keys; if its largest
probability is below ``threshold`` the row is *flat*, where quantization error hurts most, so
the LSBs are fetched and the row recomputed at full precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fixed_point import check_bits, to_signed_fixed

__all__ = ["SplitQuant", "split_quantize"]


@dataclass(frozen=True)
class SplitQuant:
    """A tensor quantized to MSB + LSB parts, and its two reconstructions (float64)."""

    msb_only: np.ndarray
    full: np.ndarray
    scale: float
    msb_bits: int
    lsb_bits: int


def split_quantize(x: np.ndarray, msb_bits: int = 8, lsb_bits: int = 4) -> SplitQuant:
    """Quantize ``x`` to ``msb_bits + lsb_bits`` bits and split into MSB and LSB planes."""
    check_bits("msb_bits", msb_bits, 2, 32)
    check_bits("lsb_bits", lsb_bits, 0, 30)
    total = msb_bits + lsb_bits
    x = np.asarray(x, dtype=np.float64)
    amax = float(np.max(np.abs(x))) if x.size else 0.0
    scale = amax / ((1 << (total - 1)) - 1) if amax > 0 else 1.0
    code = to_signed_fixed(x, total, scale)
    if lsb_bits == 0:
        msb = code
    else:
        msb = ((code >> lsb_bits) << lsb_bits) + (1 << (lsb_bits - 1))
    return SplitQuant(msb * scale, code * scale, scale, msb_bits, lsb_bits)
