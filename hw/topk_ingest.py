"""Ingest, the first stage of the top-k engine: takes a packet at one beat per cycle.

Each beat is stored densely in a packet buffer (for Emit's final pass) and partitioned on the
fly against the quantiles of the packet's first beat: elements between two pivots are packed
into that bucket's candidate buffer, those equal to a pivot only counted. When the packet is
in, Ingest hands Select a :func:`~psa.hw.layouts.topk_select_job_layout`: where the packet
is, its ``k`` and ``n``, and the bucket counts, ties and pivot samples of that first
partition. Cycle model: docs/topk.md.
"""

from __future__ import annotations

from amaranth.hdl import Array, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out

from .layouts import topk_in_signature, topk_select_job_layout, value_shape
from .topk_blocks import (
    CAND_SLOTS,
    PACKET_SLOTS,
    Packer,
    Partition,
    RankSelect,
    SideLog,
    SideWriter,
    buffer_addr_width,
    lane_mask,
    slot_address,
)

__all__ = ["TopKIngest"]


class TopKIngest(wiring.Component):
    """Stores a packet and partitions it against the quantiles of its first beat.

    Parameters
    ----------
    lanes, width, max_n, signed
        As :class:`psa.hw.topk.TopKEngine` (checked there).
    pivots : int
        Pivots of the partition, the ``(t+1)/(pivots+1)`` quantiles of the first beat; buckets
        ``0..pivots`` run from the largest values down.
    samples : int
        Pivot sample slots per bucket (:class:`~psa.hw.topk_blocks.SideLog`).

    Members
    -------
    i_stream : ``In(stream.Signature(topk_in_layout(P, W, N, signed)))``
        The engine's input stream. ``ready`` is high for the whole packet once its first beat
        is taken; a packet starts only while a packet buffer and a candidate slot are free.
    overflow : ``Out(1)``
        One-cycle pulse when a packet holds more than ``N`` elements (the rest are dropped).
    packet_w : ``In(WritePort.Signature(...))``
        Write port of the packet buffers (:data:`~psa.hw.topk_blocks.PACKET_SLOTS` slots of
        ``ceil(N/P)`` dense rows), used in turn.
    cand_w : ``In(WritePort.Signature(...)).array(pivots + 1)``
        Per bucket, write port of its candidate buffers
        (:data:`~psa.hw.topk_blocks.CAND_SLOTS` slots).
    jobs : ``Out(stream.Signature(topk_select_job_layout(...)))``
        One per packet, valid from the cycle after its buffers are complete; its payload, and
        the candidate slot it names, hold until it is taken (when Select is done with it). At
        most :data:`~psa.hw.topk_blocks.CAND_SLOTS` are queued.
    packet_free : ``In(1)``
        One-cycle pulse: Emit is done with a packet buffer.
    """

    def __init__(self, lanes: int, width: int, max_n: int, signed: bool, pivots: int,
                 samples: int):
        self._lanes, self._width, self._max_n, self._signed = lanes, width, max_n, signed
        self._pivots, self._samples = pivots, samples
        self._rows = rows = -(-max_n // lanes)
        row = data.ArrayLayout(value_shape(width, signed), lanes)
        super().__init__({
            "i_stream": In(topk_in_signature(lanes, width, max_n, signed)),
            "overflow": Out(1),
            "packet_w": In(WritePort.Signature(
                addr_width=buffer_addr_width(rows, PACKET_SLOTS), shape=row)),
            "cand_w": In(WritePort.Signature(
                addr_width=buffer_addr_width(rows, CAND_SLOTS), shape=row)).array(pivots + 1),
            "jobs": Out(stream.Signature(
                topk_select_job_layout(width, max_n, signed, pivots, samples))),
            "packet_free": In(1),
        })

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p, n_max, rows = self._lanes, self._max_n, self._rows
        kp, s = self._pivots, self._samples
        vshape = value_shape(self._width, self._signed)
        row = data.ArrayLayout(vshape, p)
        count_shape = range(n_max + 1)

        # Buffers in use: packets stored and not yet emitted (0..3), jobs handed to Select and
        # not yet taken (0..2). A packet starts only with a buffer of each kind free.
        stored, queued = Signal(range(PACKET_SLOTS + 1)), Signal(range(CAND_SLOTS + 1))
        packet_slot = Signal(range(PACKET_SLOTS))     # buffers of the packet coming in
        cand_slot = Signal(range(CAND_SLOTS))
        job_head = Signal(range(CAND_SLOTS))          # candidate slot of the oldest job
        commit = Signal()
        job_taken = self.jobs.valid & self.jobs.ready
        m.d.sync += [stored.eq(stored + commit - self.packet_free),
                     queued.eq(queued + commit - job_taken)]
        with m.If(job_taken):
            m.d.sync += job_head.eq(job_head + 1)
        can_start = (stored < PACKET_SLOTS) & (queued < CAND_SLOTS)

        # The packet coming in.
        beat = self.i_stream.payload
        n, k = Signal(count_shape), Signal(count_shape)
        pivot = [Signal(vshape, name=f"pivot{t}") for t in range(kp)]
        ties = [Signal(count_shape, name=f"ties{t}") for t in range(kp)]
        overflowed = Signal()
        # The jobs committed, per candidate slot.
        job_packet = Array(Signal(range(PACKET_SLOTS), name=f"job{i}_packet")
                           for i in range(CAND_SLOTS))
        job_k = Array(Signal(count_shape, name=f"job{i}_k") for i in range(CAND_SLOTS))
        job_n = Array(Signal(count_shape, name=f"job{i}_n") for i in range(CAND_SLOTS))
        job_pivot = [Array(Signal(vshape, name=f"job{i}_pivot{t}") for i in range(CAND_SLOTS))
                     for t in range(kp)]
        job_ties = [Array(Signal(count_shape, name=f"job{i}_ties{t}") for i in range(CAND_SLOTS))
                    for t in range(kp)]

        idle = Signal()
        accept = self.i_stream.valid & self.i_stream.ready
        first = accept & idle
        n_before = Mux(idle, 0, n)
        beat_count = Mux(beat.count > p, p, beat.count)
        space = n_max - n_before
        taken = Signal(range(p + 1))   # elements of this beat that fit in the packet
        m.d.comb += taken.eq(Mux(beat_count > space, space, beat_count))

        # Stage 1 registers the beat; stage 2 partitions it. The pivots, the (t+1)/(kp+1)
        # quantiles of the first beat (largest first), are found while it is in stage 1.
        s1_data, s1_mask, s1_valid = Signal(row), Signal(p), Signal()
        s1_first, s1_taken = Signal(), Signal(range(p + 1))
        m.d.sync += [s1_valid.eq(accept), s1_first.eq(first)]
        with m.If(accept):
            m.d.sync += [s1_data.eq(beat.data), s1_mask.eq(lane_mask(taken, p)),
                         s1_taken.eq(taken), n.eq(n_before + taken)]
        m.d.sync += self.overflow.eq(0)
        with m.If(accept & (beat_count > space) & ~(overflowed & ~idle)):
            m.d.sync += [self.overflow.eq(1), overflowed.eq(1)]
        with m.If(first):
            m.d.sync += [k.eq(beat.k), overflowed.eq(0)]

        m.submodules.first_pivots = first_sel = RankSelect(p, vshape, ranks=kp)
        m.d.comb += [first_sel.i_data.eq(s1_data), first_sel.i_mask.eq(s1_mask)]
        for t in range(kp):     # rank round(taken * (t+1) / (kp+1)), from a table (no divider)
            table = Array(Const((c * (t + 1) + kp) // (kp + 1), range(p + 1))
                          for c in range(p + 1))
            m.d.comb += first_sel.rank[t].eq(table[s1_taken])
        with m.If(s1_first):
            m.d.sync += [pivot[t].eq(first_sel.value[t]) for t in range(kp)]

        s2_data, s2_mask, s2_valid = Signal(row), Signal(p), Signal()
        m.d.sync += [s2_data.eq(s1_data), s2_mask.eq(s1_mask), s2_valid.eq(s1_valid)]

        m.submodules.ingest_part = part = Partition(p, vshape, kp)
        m.d.comb += [part.i_data.eq(s2_data), part.i_mask.eq(s2_mask)]
        m.d.comb += [part.pivots[t].eq(pivot[t]) for t in range(kp)]
        for t in range(kp):
            with m.If(first):
                m.d.sync += ties[t].eq(0)
            with m.Elif(s2_valid):
                m.d.sync += ties[t].eq(ties[t] + part.eq_count[t])

        flush = Signal()
        m.submodules.packet_writer = packet_writer = SideWriter(p, vshape, rows)
        m.d.comb += [packet_writer.i_data.eq(s2_data), packet_writer.i_mask.eq(s2_mask),
                     packet_writer.i_valid.eq(s2_valid), packet_writer.i_flush.eq(flush),
                     packet_writer.clear.eq(first),
                     self.packet_w.addr.eq(slot_address(packet_slot, packet_writer.w_addr,
                                                        rows, PACKET_SLOTS)),
                     self.packet_w.data.eq(packet_writer.w_data),
                     self.packet_w.en.eq(packet_writer.w_en)]
        # One packer per bucket; a log per (candidate slot, bucket) keeps what Select needs
        # (counts, samples) while Ingest already fills the other slot.
        logs = [[] for _ in range(CAND_SLOTS)]
        for bucket in range(kp + 1):
            packer = Packer(p, vshape)
            m.submodules[f"cand_packer{bucket}"] = packer
            m.d.comb += [packer.i_data.eq(s2_data), packer.i_mask.eq(part.bucket[bucket]),
                         packer.i_valid.eq(s2_valid), packer.i_flush.eq(flush),
                         packer.clear.eq(first)]
            for i in range(CAND_SLOTS):
                mine = cand_slot == i
                log = SideLog(p, vshape, rows, s)
                m.submodules[f"cand_log{i}_{bucket}"] = log
                m.d.comb += [log.i_data.eq(packer.o_data), log.i_count.eq(packer.o_count),
                             log.i_valid.eq(packer.o_valid & mine), log.clear.eq(first & mine)]
                logs[i].append(log)
            # Both slots' logs see the packer's rows; the one of cand_slot writes them.
            w_addr = Mux(cand_slot, logs[1][bucket].w_addr, logs[0][bucket].w_addr)
            m.d.comb += [self.cand_w[bucket].addr.eq(slot_address(cand_slot, w_addr, rows,
                                                                  CAND_SLOTS)),
                         self.cand_w[bucket].data.eq(packer.o_data),
                         self.cand_w[bucket].en.eq(packer.o_valid)]

        job = self.jobs.payload
        m.d.comb += [self.jobs.valid.eq(queued != 0),
                     job.packet_slot.eq(job_packet[job_head]), job.cand_slot.eq(job_head),
                     job.k.eq(job_k[job_head]), job.n.eq(job_n[job_head])]
        for t in range(kp):
            m.d.comb += [job.pivot[t].eq(job_pivot[t][job_head]),
                         job.ties[t].eq(job_ties[t][job_head])]
        for b in range(kp + 1):
            m.d.comb += [job.count[b].eq(Array(slot[b].count for slot in logs)[job_head]),
                         job.sample[b].eq(Array(slot[b].sample for slot in logs)[job_head]),
                         job.n_sample[b].eq(Array(slot[b].n_sample for slot in logs)[job_head])]

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
            with m.State("LAST"):       # stage 1 holds the last beat
                m.next = "LAST2"
            with m.State("LAST2"):      # stage 2 holds it
                m.next = "FLUSH"
            with m.State("FLUSH"):      # packers send their residues
                m.d.comb += flush.eq(1)
                m.next = "DRAIN"
            with m.State("DRAIN"):      # rows the last beat completed are written
                m.next = "COMMIT"
            with m.State("COMMIT"):     # the residues are written this cycle
                m.d.comb += commit.eq(1)
                m.d.sync += [job_packet[cand_slot].eq(packet_slot), job_k[cand_slot].eq(k),
                             job_n[cand_slot].eq(n),
                             *[job_pivot[t][cand_slot].eq(pivot[t]) for t in range(kp)],
                             *[job_ties[t][cand_slot].eq(ties[t]) for t in range(kp)],
                             cand_slot.eq(cand_slot + 1),
                             packet_slot.eq(Mux(packet_slot == PACKET_SLOTS - 1, 0,
                                                packet_slot + 1))]
                m.next = "IDLE"
        return m
