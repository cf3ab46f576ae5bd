"""Bit-exact NumPy golden model of pruned sparse attention.

Nothing here imports :mod:`psa.hw` or :mod:`psa.sim`; they import this.
"""

from .topk import TopK, topk, topk_threshold_mask

__all__ = ["TopK", "topk", "topk_threshold_mask"]
