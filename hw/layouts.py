"""Payload layouts and stream signatures shared by the top-k engine and the blocks around it.

Widths follow the datasheet of ``topk_engine`` (docs/topk.md): with ``P`` lanes, ``W``-bit
values and at most ``N`` elements per packet,

- ``count``: ``$clog2(P+1)`` bits (0..P valid lanes, lanes 0..count-1),
- ``k``: ``$clog2(N+1)`` bits (0..N),
- ``index``: ``$clog2(N)`` bits (0..N-1, the element's position in its input packet).
"""

from __future__ import annotations

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, stream
from amaranth.utils import bits_for, ceil_log2

__all__ = [
    "value_shape", "count_shape", "k_shape", "index_shape",
    "topk_in_layout", "topk_out_layout", "topk_in_signature", "topk_out_signature",
]


def value_shape(width: int, is_signed: bool) -> Shape:
    """Shape of one score: ``signed(width)`` or ``unsigned(width)``."""
    return signed(width) if is_signed else unsigned(width)


def count_shape(lanes: int) -> Shape:
    """Valid-lane count of a beat: 0..lanes, ``$clog2(lanes+1)`` bits."""
    return unsigned(bits_for(lanes))


def k_shape(max_n: int) -> Shape:
    """``k`` of a packet: 0..max_n, ``$clog2(max_n+1)`` bits."""
    return unsigned(bits_for(max_n))


def index_shape(max_n: int) -> Shape:
    """Position of an element in its packet: 0..max_n-1, ``$clog2(max_n)`` bits."""
    return unsigned(ceil_log2(max_n))


def topk_in_layout(lanes: int, width: int, max_n: int, is_signed: bool) -> data.StructLayout:
    """One input beat: ``data`` (lanes x value), ``count``, ``last``, ``k`` (first beat only)."""
    return data.StructLayout({
        "data": data.ArrayLayout(value_shape(width, is_signed), lanes),
        "count": count_shape(lanes),
        "last": 1,
        "k": k_shape(max_n),
    })


def topk_out_layout(lanes: int, width: int, max_n: int, is_signed: bool) -> data.StructLayout:
    """One output beat: kept ``data`` and their ``index`` lanes, ``count``, ``last``."""
    return data.StructLayout({
        "data": data.ArrayLayout(value_shape(width, is_signed), lanes),
        "index": data.ArrayLayout(index_shape(max_n), lanes),
        "count": count_shape(lanes),
        "last": 1,
    })


def topk_in_signature(lanes: int, width: int, max_n: int, is_signed: bool) -> stream.Signature:
    """Input stream of :class:`psa.hw.topk.TopKEngine` (payload :func:`topk_in_layout`)."""
    return stream.Signature(topk_in_layout(lanes, width, max_n, is_signed))


def topk_out_signature(lanes: int, width: int, max_n: int, is_signed: bool) -> stream.Signature:
    """Output stream of :class:`psa.hw.topk.TopKEngine` (payload :func:`topk_out_layout`)."""
    return stream.Signature(topk_out_layout(lanes, width, max_n, is_signed))
