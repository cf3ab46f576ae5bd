"""Every payload layout and stream signature of the hardware blocks.

Top-k engine (datasheet docs/topk.md): with ``P`` lanes, ``W``-bit values and at most ``N``
elements per packet,

- ``count``: ``$clog2(P+1)`` bits (0..P valid lanes, lanes 0..count-1),
- ``k``: ``$clog2(N+1)`` bits (0..N),
- ``index``: ``$clog2(N)`` bits (0..N-1, the element's position in its input packet).

Select hands Emit one descriptor per packet (:func:`topk_result_layout`; Ingest's job
descriptor lives in :mod:`psa.hw.topk_ingest`). Pruning unit (docs/pruner.md): commands
(:class:`Op`), probability beats, magnitudes, token and head lists; K/V fetch: the run-time
layout, row requests and addressed requests.
"""

from __future__ import annotations

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, enum, stream
from amaranth.utils import bits_for, ceil_log2

__all__ = [
    "value_shape", "count_shape", "k_shape", "index_shape",
    "topk_in_layout", "topk_out_layout", "topk_in_signature", "topk_out_signature",
    "topk_lane_layout", "EmitMode", "topk_result_layout",
    "Op", "CMD_ARG_BITS", "command_layout", "select_arg", "SELECT_TARGET_BITS",
    "SELECT_TOPP_BIT", "SELECT_ACC_BIT", "SELECT_HEAD_SHIFT", "SELECT_HEAD_BITS",
    "position_out_layout", "prob_beat_layout", "magnitude_layout",
    "token_out_layout", "head_out_layout",
    "ROW_BYTES_BITS", "PITCH_BITS", "kv_config_layout", "row_request_layout",
    "fetch_request_layout",
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


def topk_lane_layout(width: int, max_n: int, is_signed: bool) -> data.StructLayout:
    """One kept element inside the engine's output packer: ``value`` and its ``index``."""
    return data.StructLayout({"value": value_shape(width, is_signed),
                              "index": unsigned(max(1, index_shape(max_n).width))})


class EmitMode(enum.Enum, shape=2):
    """What the final pass of the top-k engine keeps of a packet."""

    NONE = 0        #: nothing (``min(k, n) = 0``): one empty beat
    ALL = 1         #: every element (``k >= n``)
    THRESHOLD = 2   #: ``> threshold``, then the first ``need`` elements ``== threshold``


def topk_result_layout(width: int, max_n: int, is_signed: bool) -> data.StructLayout:
    """What Select found for a packet, handed to Emit: keep ``mode`` (:class:`EmitMode`),
    ``threshold`` and ``need`` (ties to keep), ``n_keep = min(k, n)`` elements out of ``n``,
    stored in packet buffer ``packet_slot``."""
    count = unsigned(bits_for(max_n))
    return data.StructLayout({
        "packet_slot": unsigned(2),
        "mode": EmitMode,
        "threshold": value_shape(width, is_signed),
        "need": count,
        "n_keep": count,
        "n": count,
    })


# ------------------------------------------------------------------------- pruning unit

CMD_ARG_BITS = 32


class Op(enum.Enum, shape=3):
    """Command opcodes (``cmd.p.op``); ``cmd.p.arg`` is the command's argument."""

    START = 0        #: arg = n: tokens 0..n-1 alive, scores 0; all heads kept, head scores 0
    PRUNE = 1        #: arg = k: keep the top min(k, alive) tokens; streams the new alive list
    PRUNE_HEADS = 2  #: arg = kh: keep the top min(kh, kept) heads; streams the kept heads
    FETCH = 3        #: arg = layer: streams the K then V row reads of each kept head
    READ_TOKENS = 4  #: streams the alive list with scores (no state change)
    READ_HEADS = 5   #: streams the kept heads with scores (no state change)
    APPEND = 6       #: arg = initial score: the next token id joins the alive list at the end
    SELECT = 7       #: arg = :func:`select_arg`: one query row selects V rows (kv or top-p)


#: ``SELECT`` argument fields: ``target`` (kv count or top-p mass ``p_fixed``), bits 0..16
SELECT_TARGET_BITS = 17
SELECT_TOPP_BIT = 17        #: 0: keep the top ``target`` probabilities, 1: top-p mass
SELECT_ACC_BIT = 18         #: 1: the row is also accumulated into the token scores
SELECT_HEAD_SHIFT = 19      #: bits 19..26: K/V head of the requests
SELECT_HEAD_BITS = 8


def select_arg(target: int, head: int = 0, topp: bool = False, accumulate: bool = False
               ) -> int:
    """The ``SELECT`` command argument: ``target`` (0..2^17-1), ``head`` (0..255), flags."""
    if not 0 <= target < 1 << SELECT_TARGET_BITS:
        raise ValueError(f"select_arg: target must be in 0..{(1 << SELECT_TARGET_BITS) - 1}, "
                         f"got {target!r}")
    if not 0 <= head < 1 << SELECT_HEAD_BITS:
        raise ValueError(f"select_arg: head must be in 0..255, got {head!r}")
    return (int(target) | int(bool(topp)) << SELECT_TOPP_BIT
            | int(bool(accumulate)) << SELECT_ACC_BIT | int(head) << SELECT_HEAD_SHIFT)


def command_layout() -> data.StructLayout:
    return data.StructLayout({"op": Op, "arg": unsigned(CMD_ARG_BITS)})


def prob_beat_layout(lanes: int, prob_bits: int) -> data.StructLayout:
    """``P`` probabilities of one query row at alive positions ``beat*P ..``; ``last`` ends the
    row."""
    return data.StructLayout({"data": data.ArrayLayout(unsigned(prob_bits), lanes), "last": 1})


def position_out_layout(token_bits: int) -> data.StructLayout:
    """A selected alive position (:class:`psa.hw.pruner_select.RowSelect` output); ``last``
    marks the final one."""
    return data.StructLayout({"pos": unsigned(token_bits), "last": 1})


def magnitude_layout(head_bits: int, mag_bits: int) -> data.StructLayout:
    return data.StructLayout({"head": unsigned(head_bits), "value": unsigned(mag_bits)})


def token_out_layout(token_bits: int, score_bits: int) -> data.StructLayout:
    """One alive token with its score; ``last`` ends a list, ``empty`` marks an empty list (a
    single beat, ``last = 1``, no token)."""
    return data.StructLayout({"id": unsigned(token_bits), "score": unsigned(score_bits),
                              "last": 1, "empty": 1})


def head_out_layout(head_bits: int, head_score_bits: int) -> data.StructLayout:
    return data.StructLayout({"id": unsigned(head_bits), "score": unsigned(head_score_bits),
                              "last": 1, "empty": 1})


# ------------------------------------------------------------------------- K/V fetch

ROW_BYTES_BITS = 16   # row_bytes up to 65535 bytes (d_head * bits / 8)
PITCH_BITS = 17       # token_pitch up to 65536 (KVLayout.max_tokens), head_pitch up to 256


def kv_config_layout(addr_bits: int) -> data.StructLayout:
    """Run-time K/V layout: plane bases (bytes), row sizes (bytes, 0: plane absent), pitches.

    ``token_pitch`` is ``KVLayout.max_tokens`` and ``head_pitch`` is ``KVLayout.n_heads``.
    ``k_base``/``v_base``/``k_row_bytes``/``v_row_bytes`` are the MSB planes (``FETCH``); the
    ``*_lsb_*`` fields the LSB planes (``SELECT`` of a flat row).
    """
    return data.StructLayout({
        "k_base": unsigned(addr_bits),
        "v_base": unsigned(addr_bits),
        "k_row_bytes": unsigned(ROW_BYTES_BITS),
        "v_row_bytes": unsigned(ROW_BYTES_BITS),
        "token_pitch": unsigned(PITCH_BITS),
        "head_pitch": unsigned(9),
        "k_lsb_base": unsigned(addr_bits),
        "v_lsb_base": unsigned(addr_bits),
        "k_lsb_row_bytes": unsigned(ROW_BYTES_BITS),
        "v_lsb_row_bytes": unsigned(ROW_BYTES_BITS),
    })


def row_request_layout(head_bits: int, token_bits: int) -> data.StructLayout:
    """One K or V row of one head (``plane`` bit 0: V (else K), bit 1: LSB plane (else MSB):
    0 = K MSBs, 1 = V MSBs, 2 = K LSBs, 3 = V LSBs).

    ``last`` marks the final request of a fetch command; ``empty`` a fetch with no requests
    (a single beat with ``last = 1``, carrying no request).
    """
    return data.StructLayout({
        "head": unsigned(head_bits),
        "token": unsigned(token_bits),
        "plane": unsigned(2),
        "last": unsigned(1),
        "empty": unsigned(1),
    })


def fetch_request_layout(addr_bits: int, head_bits: int, token_bits: int) -> data.StructLayout:
    """A DRAM read of ``size`` bytes at byte address ``addr``; ``plane`` is the
    :class:`psa.golden.trace.Plane` value (0 = K_MSB, 1 = K_LSB, 2 = V_MSB, 3 = V_LSB);
    ``head``/``token`` tag it."""
    return data.StructLayout({
        "addr": unsigned(addr_bits),
        "size": unsigned(ROW_BYTES_BITS),
        "plane": unsigned(2),
        "head": unsigned(head_bits),
        "token": unsigned(token_bits),
        "last": unsigned(1),
        "empty": unsigned(1),
    })
