"""DRAM layout of a decoder's K/V cache and metadata, and the access records of a decode step.

:class:`DecodeKVLayout` places, one region after another (each aligned to ``align`` bytes):

``K_MSB, K_LSB, V_MSB, V_LSB``
    rows ``[layer][kv_head][token]`` of ``head_dim`` elements at the plane's bit width, token
    pitch ``capacity`` (context + decode steps). Widths 16 / 32 with no LSB plane are fp16 /
    fp32 rows. Narrower widths are integer codes (:func:`quantize_rows`); then each MSB row
    also carries its own ``scale_bytes`` scale (a row is quantized once, when it is written).
``PAGE_MINMAX``
    Quest metadata, rows ``[layer][kv_head][page]``: per page of ``page_tokens`` tokens the
    element-wise min and max of its keys, ``2 * head_dim`` elements at ``meta_bits``.
``BLOCK_SUMMARY``
    NSA metadata, rows ``[layer][kv_head][block]``: per block of ``block_tokens`` tokens one
    compressed key (the mean of its keys), ``head_dim`` elements at ``meta_bits``.

A region of 0 bytes per row does not exist (its rows have no address). :class:`DecodePlane`
values ``0..3`` equal :class:`~psa.golden.trace.Plane`'s, so an :class:`AccessTrace` tagged
with them reads the same in tools that only know K/V planes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from .fixed_point import check_bits
from .trace import AccessTrace

__all__ = ["DecodePlane", "DecodeKVLayout", "rows_trace", "quantize_rows"]


class DecodePlane(IntEnum):
    """Region of a :class:`DecodeKVLayout`; also the ``plane`` tag of its requests."""

    K_MSB = 0
    K_LSB = 1
    V_MSB = 2
    V_LSB = 3
    PAGE_MINMAX = 4
    BLOCK_SUMMARY = 5


KV_PLANES = (DecodePlane.K_MSB, DecodePlane.K_LSB, DecodePlane.V_MSB, DecodePlane.V_LSB)


@dataclass(frozen=True)
class DecodeKVLayout:
    """Byte layout of a decode K/V cache (regions in the module docstring).

    Parameters
    ----------
    n_layers, n_kv_heads, capacity, head_dim:
        Cache extents; ``capacity`` is the token pitch.
    k_msb_bits, k_lsb_bits, v_msb_bits, v_lsb_bits:
        Plane widths (default fp16 K and V, no LSB planes).
    scale_bytes:
        Per-row scale stored with each integer-coded MSB row (widths other than 16/32+0).
    page_tokens, block_tokens:
        Quest page and NSA block sizes, in tokens.
    meta_bits:
        Element width of the metadata rows (0: no metadata regions).
    """

    n_layers: int
    n_kv_heads: int
    capacity: int
    head_dim: int
    k_msb_bits: int = 16
    k_lsb_bits: int = 0
    v_msb_bits: int = 16
    v_lsb_bits: int = 0
    scale_bytes: int = 2
    page_tokens: int = 16
    block_tokens: int = 64
    meta_bits: int = 16
    align: int = 4096
    _base: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_kv_heads", "capacity", "head_dim", "page_tokens",
                     "block_tokens", "align"):
            check_bits(name, getattr(self, name), 1, 1 << 40)
        for name in ("k_msb_bits", "k_lsb_bits", "v_msb_bits", "v_lsb_bits", "meta_bits"):
            bits = check_bits(name, getattr(self, name), 0, 32)
            if (self.head_dim * bits) % 8:
                raise ValueError(f"DecodeKVLayout: head_dim * {name} must be whole bytes, got "
                                 f"{self.head_dim} * {bits}")
        if self.k_msb_bits == 0 or self.v_msb_bits == 0:
            raise ValueError("DecodeKVLayout: k_msb_bits and v_msb_bits must be >= 1")
        check_bits("scale_bytes", self.scale_bytes, 0, 8)
        base, nxt = [], 0
        for plane in DecodePlane:
            base.append(nxt)
            nxt += -(-self.region_bytes(plane) // self.align) * self.align
        object.__setattr__(self, "_base", tuple(base))

    @property
    def n_pages(self) -> int:
        return -(-self.capacity // self.page_tokens)

    @property
    def n_blocks(self) -> int:
        return -(-self.capacity // self.block_tokens)

    def bits(self, plane: DecodePlane) -> int:
        if plane >= DecodePlane.PAGE_MINMAX:
            return self.meta_bits
        return (self.k_msb_bits, self.k_lsb_bits, self.v_msb_bits, self.v_lsb_bits)[plane]

    def is_float(self, kv: str) -> bool:
        """Whether ``"k"`` or ``"v"`` is stored as fp16/fp32 rows (else integer codes)."""
        msb, lsb = (self.k_msb_bits, self.k_lsb_bits) if kv == "k" else \
            (self.v_msb_bits, self.v_lsb_bits)
        return lsb == 0 and msb in (16, 32)

    def row_bytes(self, plane: DecodePlane) -> int:
        """Bytes of one row of ``plane`` (an integer MSB row includes its scale)."""
        plane = DecodePlane(plane)
        if plane is DecodePlane.PAGE_MINMAX:
            return 2 * self.head_dim * self.meta_bits // 8
        b = self.head_dim * self.bits(plane) // 8
        if plane is DecodePlane.K_MSB and not self.is_float("k"):
            b += self.scale_bytes
        if plane is DecodePlane.V_MSB and not self.is_float("v"):
            b += self.scale_bytes
        return b

    def rows_per_head(self, plane: DecodePlane) -> int:
        if plane is DecodePlane.PAGE_MINMAX:
            return self.n_pages
        if plane is DecodePlane.BLOCK_SUMMARY:
            return self.n_blocks
        return self.capacity

    def region_bytes(self, plane: DecodePlane) -> int:
        return self.n_layers * self.n_kv_heads * self.rows_per_head(plane) * self.row_bytes(plane)

    def base(self, plane: DecodePlane) -> int:
        return self._base[plane]

    def address(self, plane: DecodePlane, layer, kv_head, index):
        """Byte address of row ``index`` (token, page or block) of ``(layer, kv_head)``;
        broadcasts over arrays. Raises :class:`ValueError` for an index out of range."""
        plane = DecodePlane(plane)
        index = np.asarray(index, dtype=np.int64)
        n = self.rows_per_head(plane)
        if index.size and (index.min() < 0 or index.max() >= n):
            raise ValueError(f"DecodeKVLayout.address: {plane.name} index must be in "
                             f"0..{n - 1}, got {int(index.min())}..{int(index.max())}")
        if not 0 <= int(np.min(layer)) <= int(np.max(layer)) < self.n_layers:
            raise ValueError(f"DecodeKVLayout.address: layer out of 0..{self.n_layers - 1}")
        if not 0 <= int(np.min(kv_head)) <= int(np.max(kv_head)) < self.n_kv_heads:
            raise ValueError(f"DecodeKVLayout.address: kv_head out of 0..{self.n_kv_heads - 1}")
        row = (np.asarray(layer, np.uint64) * np.uint64(self.n_kv_heads)
               + np.asarray(kv_head, np.uint64)) * np.uint64(n) + index.astype(np.uint64)
        return np.uint64(self.base(plane)) + row * np.uint64(self.row_bytes(plane))


def rows_trace(layout: DecodeKVLayout, plane: DecodePlane, layer: int, kv_head: int,
               index, write: bool = False) -> AccessTrace:
    """One request per row ``index`` (ascending as given) of ``plane`` for ``(layer,
    kv_head)``, each ``layout.row_bytes(plane)`` bytes; empty if the plane has no bytes."""
    index = np.asarray(index, dtype=np.int64).ravel()
    size = layout.row_bytes(plane)
    if size == 0 or len(index) == 0:
        return AccessTrace.empty()
    return AccessTrace(layout.address(plane, layer, kv_head, index), size, is_write=write,
                       layer=layer, plane=int(plane))


def quantize_rows(x: np.ndarray, msb_bits: int, lsb_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row storage format of ``x [..., head_dim]``: ``(msb_only, full)`` float64.

    fp16 / fp32 (``lsb_bits == 0`` and ``msb_bits`` 16 / 32) round to that float type (both
    results equal). Otherwise symmetric ``msb + lsb``-bit two's complement codes with one
    scale per row (``max |x|`` maps to the largest code, round half to even); the MSB-only
    reconstruction keeps the top ``msb_bits`` and adds half an LSB step, as
    :mod:`psa.golden.quant` does per tensor.
    """
    x = np.asarray(x, np.float64)
    if lsb_bits == 0 and msb_bits in (16, 32):
        f = x.astype(np.float16 if msb_bits == 16 else np.float32).astype(np.float64)
        return f, f
    check_bits("msb_bits", msb_bits, 2, 32)
    check_bits("lsb_bits", lsb_bits, 0, 30)
    total = msb_bits + lsb_bits
    lim = (1 << (total - 1)) - 1
    amax = np.abs(x).max(axis=-1, keepdims=True)
    scale = np.where(amax > 0, amax / lim, 1.0)
    code = np.clip(np.rint(x / scale), -lim, lim).astype(np.int64)
    msb = code if lsb_bits == 0 else ((code >> lsb_bits) << lsb_bits) + (1 << (lsb_bits - 1))
    return msb * scale, code * scale
