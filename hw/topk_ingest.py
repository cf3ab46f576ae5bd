"""Ingest, the first stage of the top-k engine: takes a packet at one beat per cycle.

Each beat is stored densely in a packet buffer (for Select's scan and Emit's final pass) and
its elements' top radix digits are counted in a :class:`~psa.hw.topk_blocks.DigitHistogram`
on the fly. When the packet is in, a :class:`~psa.hw.topk_blocks.BinSelect` finds the bin of
the k-th largest element and Ingest hands Select a job (:func:`topk_scan_job_layout`): where
the packet is, ``k`` and ``n``, that top digit, the k-th largest's rank among the elements
that share it and how many do. Cycle model: docs/topk.md.
"""

from __future__ import annotations

from amaranth.hdl import Array, Elaboratable, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .layouts import topk_in_signature, value_shape
from .topk_blocks import (
    PACKET_SLOTS,
    BinSelect,
    DigitHistogram,
    SideWriter,
    buffer_addr_width,
    digit_plan,
    lane_mask,
    slot_address,
    sort_key,
)

__all__ = ["TopKIngest", "topk_scan_job_layout", "JOB_QUEUE"]

#: Jobs Ingest queues for Select.
JOB_QUEUE = 2


def topk_scan_job_layout(width: int, max_n: int) -> data.StructLayout:
    """A packet handed from Ingest to Select: ``packet_slot`` (its buffer), ``n``,
    ``n_keep = min(k, n)``, and from the top digit's histogram: ``prefix`` (the sort key with
    the top digit of the ``n_keep``-th largest, lower bits 0), ``rank`` (the ``n_keep``-th
    largest's rank among the elements with that top digit) and ``cands`` (how many there are).
    """
    count = range(max_n + 1)
    return data.StructLayout({
        "packet_slot": range(PACKET_SLOTS), "n": count, "n_keep": count,
        "prefix": width, "rank": count, "cands": count,
    })


class TopKIngest(wiring.Component):
    """Stores a packet and counts its elements' top digits.

    Parameters
    ----------
    lanes, width, max_n, signed
        As :class:`psa.hw.topk.TopKEngine` (checked there).

    Members
    -------
    i_stream : ``In(stream.Signature(topk_in_layout(P, W, N, signed)))``
        The engine's input stream. ``ready`` is high for the whole packet once its first beat
        is taken; a packet starts only while a packet buffer is free.
    overflow : ``Out(1)``
        One-cycle pulse when a packet holds more than ``N`` elements (the rest are dropped).
    packet_w : ``In(WritePort.Signature(...))``
        Write port of the packet buffers (:data:`~psa.hw.topk_blocks.PACKET_SLOTS` slots of
        ``ceil(N/P)`` dense rows), used in turn.
    jobs : ``Out(stream.Signature(topk_scan_job_layout(W, N)))``
        One per packet, valid from the cycle after its buffer is complete and its top digit
        decided; a queue of :data:`JOB_QUEUE` registers, so Ingest waits (after the packet's
        last beat) while Select has not taken the earlier jobs.
    packet_free : ``In(1)``
        One-cycle pulse: Emit is done with a packet buffer.
    """

    def __init__(self, lanes: int, width: int, max_n: int, signed: bool):
        self._lanes, self._width, self._max_n, self._signed = lanes, width, max_n, signed
        self._rows = rows = -(-max_n // lanes)
        row = data.ArrayLayout(value_shape(width, signed), lanes)
        super().__init__({
            "i_stream": In(topk_in_signature(lanes, width, max_n, signed)),
            "overflow": Out(1),
            "packet_w": In(WritePort.Signature(
                addr_width=buffer_addr_width(rows, PACKET_SLOTS), shape=row)),
            "jobs": Out(stream.Signature(topk_scan_job_layout(width, max_n))),
            "packet_free": In(1),
        })

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p, w, n_max, rows = self._lanes, self._width, self._max_n, self._rows
        vshape = value_shape(w, self._signed)
        row = data.ArrayLayout(vshape, p)
        count_shape = range(n_max + 1)
        lo, bits = digit_plan(w)[0]

        # Packets stored and not yet emitted (0..PACKET_SLOTS); a packet starts with one free.
        stored = Signal(range(PACKET_SLOTS + 1))
        packet_slot = Signal(range(PACKET_SLOTS))     # buffer of the packet coming in
        commit = Signal()
        m.d.sync += stored.eq(stored + commit - self.packet_free)
        can_start = stored < PACKET_SLOTS

        beat = self.i_stream.payload
        # Elements of the packet so far and the room left (n_max - n), both registers, both
        # back at 0 and n_max from the commit on: the accounting of a beat is one small
        # compare against the room (only when less than a beat's worth is left) and two
        # adders, with no multiplexer on the packet's start in front.
        n, k = Signal(count_shape), Signal(count_shape)
        space = Signal(count_shape, init=n_max)
        overflowed = Signal()
        idle = Signal()
        accept = self.i_stream.valid & self.i_stream.ready
        first = accept & idle
        beat_count = Mux(beat.count > p, p, beat.count)
        lane_bits = exact_log2(p)
        roomy = space[lane_bits:].any()                 # space >= P: every lane fits
        space_low = space[:lane_bits + 1]
        short = ~roomy & (beat_count > space_low)       # the beat crosses N
        taken = Signal(range(p + 1))   # elements of this beat that fit in the packet
        m.d.comb += taken.eq(Mux(short, space_low, beat_count))

        # Stage 1 registers the beat: the histogram counts it, stage 2 packs it.
        s1_data, s1_mask, s1_valid, s1_first = Signal(row), Signal(p), Signal(), Signal()
        m.d.sync += [s1_valid.eq(accept), s1_first.eq(first), s1_data.eq(beat.data),
                     s1_mask.eq(lane_mask(taken, p))]
        with m.If(accept):
            m.d.sync += [n.eq(n + taken), space.eq(space - taken)]
        m.d.sync += self.overflow.eq(0)
        with m.If(accept & short & ~(overflowed & ~idle)):
            m.d.sync += [self.overflow.eq(1), overflowed.eq(1)]
        with m.If(first):
            m.d.sync += [k.eq(beat.k), overflowed.eq(0)]

        m.submodules.hist = hist = DigitHistogram(p, bits, n_max)
        m.d.comb += [hist.i_digit[i].eq(sort_key(s1_data[i], w, self._signed)[lo:lo + bits])
                     for i in range(p)]
        m.d.comb += [hist.i_mask.eq(s1_mask), hist.i_valid.eq(s1_valid),
                     hist.i_first.eq(s1_first)]

        s2_data, s2_mask, s2_valid = Signal(row), Signal(p), Signal()
        m.d.sync += [s2_data.eq(s1_data), s2_mask.eq(s1_mask), s2_valid.eq(s1_valid)]
        flush = Signal()
        m.submodules.packet_writer = packet_writer = SideWriter(p, vshape, rows)
        m.d.comb += [packet_writer.i_data.eq(s2_data), packet_writer.i_mask.eq(s2_mask),
                     packet_writer.i_valid.eq(s2_valid), packet_writer.i_flush.eq(flush),
                     packet_writer.clear.eq(first),
                     self.packet_w.addr.eq(slot_address(packet_slot, packet_writer.w_addr,
                                                        rows, PACKET_SLOTS)),
                     self.packet_w.data.eq(packet_writer.w_data),
                     self.packet_w.en.eq(packet_writer.w_en)]

        # The top digit of the n_keep-th largest (n_keep = 0 selects nothing: Select's mode).
        n_keep = Signal(count_shape)
        m.submodules.top_digit = pick = BinSelect(1 << bits, n_max)
        m.d.comb += [pick.count_ge.eq(hist.count_ge), pick.group_ge.eq(hist.group_ge),
                     pick.target.eq(n_keep)]

        # Jobs wait in a queue of two registers: Ingest commits while fewer than two wait, so
        # no path runs from Select's take of a job into Ingest's commit.
        job_layout = topk_scan_job_layout(w, n_max)
        queue = Array(Signal(job_layout, name=f"job{i}") for i in range(JOB_QUEUE))
        queued = Signal(range(JOB_QUEUE + 1))
        head, tail = Signal(range(JOB_QUEUE)), Signal(range(JOB_QUEUE))
        job = Signal(job_layout)
        job_taken = self.jobs.valid & self.jobs.ready
        m.d.comb += [self.jobs.valid.eq(queued != 0), self.jobs.payload.eq(queue[head])]
        m.d.sync += queued.eq(queued + commit - job_taken)
        with m.If(job_taken):
            m.d.sync += head.eq(head + 1)
        with m.If(commit):
            m.d.sync += [queue[tail].eq(job), tail.eq(tail + 1)]

        with m.FSM(name="ingest"):
            with m.State("IDLE"):
                m.d.comb += [idle.eq(1), self.i_stream.ready.eq(can_start)]
                with m.If(accept):
                    m.next = "RUN"
                    with m.If(beat.last):
                        m.next = "LAST"
            with m.State("RUN"):
                m.d.comb += self.i_stream.ready.eq(1)
                with m.If(accept & beat.last):
                    m.next = "LAST"
            with m.State("LAST"):       # stage 1 holds the last beat; the histogram takes it
                m.d.sync += n_keep.eq(Mux(k < n, k, n))
                m.next = "LAST2"
            with m.State("LAST2"):      # stage 2 holds it
                m.next = "FLUSH"
            with m.State("FLUSH"):      # the packer sends its residue; the counts are final
                m.d.comb += [flush.eq(1), pick.start.eq(1)]
                m.next = "PICK"
            with m.State("PICK"):       # the packer's rows are written; the bin is picked
                with m.If(pick.done):
                    m.next = "COMMIT"
            with m.State("COMMIT"):     # queue the job once there is room
                m.d.comb += [job.packet_slot.eq(packet_slot), job.n.eq(n),
                             job.n_keep.eq(n_keep), job.prefix.eq((pick.bin << lo)[:w]),
                             job.rank.eq(pick.rank), job.cands.eq(pick.in_bin)]
                with m.If(queued != JOB_QUEUE):
                    m.d.comb += commit.eq(1)
                    m.d.sync += [packet_slot.eq(Mux(packet_slot == PACKET_SLOTS - 1, 0,
                                                    packet_slot + 1)),
                                 n.eq(0), space.eq(n_max)]
                    m.next = "IDLE"
        return m
