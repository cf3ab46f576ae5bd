"""Emit, the last stage of the top-k engine: the final pass over a stored packet.

For each :func:`~psa.hw.layouts.topk_result_layout` it takes from Select, Emit reads the packet
buffer in index order, keeps what the result says (``> threshold``, then the first ``need``
elements ``== threshold``; everything; or nothing), packs the kept values with their indices
into ``P``-wide beats and streams them out through an 8-deep FIFO. Cycle model: docs/topk.md.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Shape, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .layouts import (
    EmitMode,
    topk_lane_layout,
    topk_out_layout,
    topk_out_signature,
    topk_result_layout,
    value_shape,
)
from .topk_blocks import (
    PACKET_SLOTS,
    Packer,
    TieFilter,
    block_counts,
    buffer_addr_width,
    slot_address,
)
from .topk_blocks import (
    last_row as packet_last_row,
)

__all__ = ["TopKEmit", "FIFO_DEPTH"]

#: Output FIFO entries (16: one LUT RAM's depth on ECP5).
FIFO_DEPTH = 16


class TopKEmit(wiring.Component):
    """Filters a stored packet in index order and streams the survivors out, ``P`` per beat.

    Parameters
    ----------
    lanes, width, max_n, signed
        As :class:`psa.hw.topk.TopKEngine` (checked there).

    Members
    -------
    results : ``In(stream.Signature(topk_result_layout(W, N, signed)))``
        One per packet, in packet order; taken (``ready`` for one cycle) when Emit starts
        the packet: idle, or in the cycle the previous packet's last beat enters the FIFO.
    packet_r : ``In(ReadPort.Signature(...))``
        Read port of the packet buffers (:func:`~psa.hw.topk_blocks.buffer_memory`,
        :data:`~psa.hw.topk_blocks.PACKET_SLOTS` slots of ``ceil(N/P)`` rows): one row per
        cycle while the FIFO has room.
    o_stream : ``Out(stream.Signature(topk_out_layout(P, W, N, signed)))``
        The engine's output stream (contract: :class:`psa.hw.topk.TopKEngine`).
    packet_done : ``Out(1)``
        One-cycle pulse when the packet's last beat enters the output FIFO: its buffer is
        free.
    """

    def __init__(self, lanes: int, width: int, max_n: int, signed: bool):
        self._lanes, self._width, self._max_n, self._signed = lanes, width, max_n, signed
        self._rows = rows = -(-max_n // lanes)
        row = data.ArrayLayout(value_shape(width, signed), lanes)
        super().__init__({
            "results": In(stream.Signature(topk_result_layout(width, max_n, signed))),
            "packet_r": In(ReadPort.Signature(
                addr_width=buffer_addr_width(rows, PACKET_SLOTS), shape=row)),
            "o_stream": Out(topk_out_signature(lanes, width, max_n, signed)),
            "packet_done": Out(1),
        })

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p, n_max, rows = self._lanes, self._max_n, self._rows
        lane_bits = exact_log2(p)
        vshape = value_shape(self._width, self._signed)
        out_layout = topk_out_layout(p, self._width, n_max, self._signed)

        m.submodules.out_fifo = fifo = SyncFIFOBuffered(
            width=Shape.cast(out_layout).width, depth=FIFO_DEPTH)
        m.d.comb += [self.o_stream.valid.eq(fifo.r_rdy),
                     self.o_stream.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.o_stream.ready)]
        # Room for the rows that still reach the FIFO once the read pipeline holds: the
        # packer's three stages, its output and the row entering it. A register (it enables
        # the whole read pipeline), so it reads the level of the cycle before, which may have
        # grown by one since.
        room = Signal()
        m.d.sync += room.eq(fifo.w_level <= FIFO_DEPTH - 6)

        # The packet being emitted, copied from its result when Emit starts it.
        result = self.results.payload
        packet_slot = Signal(range(PACKET_SLOTS))
        mode = Signal(EmitMode)
        threshold = Signal(vshape)
        last_row, last_row_mask = Signal(range(rows)), Signal(p)
        row = Signal(range(rows + 1))               # next row to address
        ties_left = Signal(range(n_max + 1))        # elements == threshold still to keep
        ties_many = Signal()                        # ties_left >= P
        keep_left = Signal(range(n_max + 1))        # elements still to pack into beats
        flush, send_empty = Signal(), Signal()

        # The row the memory returns this cycle (addressed in the previous one that had room),
        # then three registers: the row (E1), the row with its lanes' comparisons with the
        # threshold (E1b), the row with its keep mask (E2, the packer's input). All hold while
        # the FIFO has no room.
        read_valid, read_row, read_mask = Signal(), Signal(range(rows)), Signal(p)
        m.d.comb += [self.packet_r.addr.eq(slot_address(packet_slot, row, rows, PACKET_SLOTS)),
                     self.packet_r.en.eq(room)]
        row_layout = data.ArrayLayout(vshape, p)
        e1_valid, e1_row, e1_mask = Signal(), Signal(range(rows)), Signal(p)
        e1_data = Signal(row_layout)
        e1b_valid, e1b_row, e1b_above, e1b_tie = Signal(), Signal(range(rows)), Signal(p), \
            Signal(p)
        e1b_data = Signal(row_layout)
        e1b_local = Signal(data.ArrayLayout(range(4), p))
        e1b_block = Signal(data.ArrayLayout(range(5), -(-p // 4)))
        e2_valid, e2_row, e2_keep = Signal(), Signal(range(rows)), Signal(p)
        e2_data = Signal(row_layout)
        keep_all = Signal()
        with m.If(room):
            m.d.sync += [e1_valid.eq(read_valid), e1_row.eq(read_row), e1_mask.eq(read_mask),
                         e1_data.eq(self.packet_r.data),
                         e1b_valid.eq(e1_valid), e1b_row.eq(e1_row), e1b_data.eq(e1_data),
                         e2_valid.eq(e1b_valid), e2_row.eq(e1b_row), e2_data.eq(e1b_data)]
            m.d.sync += [e1b_above[i].eq(e1_valid & e1_mask[i]
                                         & (keep_all | (e1_data[i] > threshold)))
                         for i in range(p)]
            is_tie = [e1_valid & e1_mask[i] & (e1_data[i] == threshold) for i in range(p)]
            local, totals = block_counts(is_tie)
            m.d.sync += [e1b_tie[i].eq(is_tie[i]) for i in range(p)]
            m.d.sync += [e1b_local[i].eq(local[i]) for i in range(p)]
            m.d.sync += [e1b_block[j].eq(t) for j, t in enumerate(totals)]

        m.submodules.filter = filt = TieFilter(p)
        m.d.comb += [filt.i_above.eq(e1b_above), filt.i_tie.eq(e1b_tie),
                     filt.i_local.eq(e1b_local), filt.i_block.eq(e1b_block),
                     filt.budget.eq(Mux(ties_many, p, ties_left[:lane_bits]))]
        with m.If(room):
            m.d.sync += e2_keep.eq(filt.keep)
        left = Signal(signed(len(ties_left) + 1))
        m.d.comb += left.eq(ties_left - filt.ties)
        with m.If(e1b_valid & room):
            m.d.sync += [ties_left.eq(Mux(left[-1], 0, left)),
                         ties_many.eq(~left[-1] & left[lane_bits:-1].any())]
        m.submodules.out_packer = packer = Packer(
            p, topk_lane_layout(self._width, n_max, self._signed))
        for j in range(p):
            m.d.comb += [packer.i_data[j].value.eq(e2_data[j]),
                         packer.i_data[j].index.eq(Cat(Const(j, lane_bits), e2_row))]
        m.d.comb += [packer.i_mask.eq(e2_keep), packer.i_valid.eq(e2_valid & room),
                     packer.i_flush.eq(flush)]

        beat = Signal(out_layout)
        for j in range(p):
            m.d.comb += [beat.data[j].eq(packer.o_data[j].value),
                         beat.index[j].eq(packer.o_data[j].index)]
        m.d.comb += [beat.count.eq(Mux(send_empty, 0, packer.o_count)),
                     beat.last.eq(send_empty | (packer.o_count == keep_left)),
                     fifo.w_data.eq(beat), fifo.w_en.eq(packer.o_valid | send_empty)]
        with m.If(packer.o_valid):
            m.d.sync += keep_left.eq(keep_left - packer.o_count)

        def start_packet():
            """Take the next result, if any, and start its packet in the next cycle."""
            m.next = "IDLE"
            with m.If(self.results.valid):
                last_of_n = packet_last_row(result.n, p)
                m.d.comb += self.results.ready.eq(1)
                m.d.sync += [packet_slot.eq(result.packet_slot), mode.eq(result.mode),
                             threshold.eq(result.threshold), ties_left.eq(result.need),
                             ties_many.eq(result.need[lane_bits:].any()),
                             keep_all.eq(result.mode == EmitMode.ALL),
                             keep_left.eq(result.n_keep),
                             row.eq(0), last_row.eq(last_of_n[0]),
                             last_row_mask.eq(last_of_n[1])]
                with m.If(result.mode == EmitMode.NONE):
                    m.next = "EMPTY"
                with m.Else():
                    m.next = "SCAN"

        with m.FSM(name="emit"):
            with m.State("IDLE"):
                start_packet()
            with m.State("EMPTY"):
                with m.If(room):
                    m.d.comb += [send_empty.eq(1), self.packet_done.eq(1)]
                    m.next = "IDLE"
            with m.State("SCAN"):
                with m.If(room):
                    m.d.sync += [read_valid.eq(1), read_row.eq(row), row.eq(row + 1),
                                 read_mask.eq(Mux(row == last_row, last_row_mask, (1 << p) - 1))]
                    with m.If(row == last_row):
                        m.next = "SCAN_LAST"
            with m.State("SCAN_LAST"):     # the memory returns the last row
                with m.If(room):
                    m.d.sync += read_valid.eq(0)
                    m.next = "PIPE1"
            with m.State("PIPE1"):         # E1 holds it
                with m.If(room):
                    m.next = "PIPE1B"
            with m.State("PIPE1B"):        # E1b holds it
                with m.If(room):
                    m.next = "PIPE2"
            with m.State("PIPE2"):         # E2 holds it: it enters the packer
                with m.If(room):
                    m.next = "FLUSH"
            with m.State("FLUSH"):
                with m.If(room):
                    m.d.comb += flush.eq(1)
                    m.next = "DRAIN"
            with m.State("DRAIN"):      # the packer's first stage holds the flush
                m.next = "DRAIN2"
            with m.State("DRAIN2"):     # its second stage
                m.next = "DRAIN_LAST"
            with m.State("DRAIN_LAST"):  # the last row enters the FIFO this cycle
                m.d.comb += self.packet_done.eq(1)
                start_packet()
        return m
