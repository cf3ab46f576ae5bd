"""SpAtten-style high-parallel quick-select top-k engine.

Three stages work on three packets at once, each owning its buffers, handing packets on in
order (contract and cycle model: docs/topk.md):

1. **Ingest** takes the packet at one beat per cycle, stores it densely in one of three
   packet buffers (for the final pass), and partitions it on the fly against a pivot (the
   median of the first beat): elements greater and smaller are packed by zero eliminators
   into two candidate buffers, equal ones are only counted.
2. **Select** runs quick-select on the side that holds the k-th largest element. Each round
   reads that side (``ceil(m/P)`` rows), partitions it against a pivot picked from an evenly
   spaced sample of that side (the sample element at the quantile of the k-th largest), and
   packs both sides into scratch buffers. It stops when the k-th largest equals the pivot, or
   when the side fits in one row (rank select over that row). Result: the threshold ``T`` and
   how many elements equal to ``T`` to keep (``need``).
3. **Emit** filters the stored packet in index order (keep ``> T`` and the first ``need``
   elements ``== T``), packs the survivors with their indices into ``P``-wide beats and
   streams them out through a small FIFO, stalling on back-pressure.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Elaboratable, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .layouts import (
    index_shape,
    topk_in_signature,
    topk_out_layout,
    topk_out_signature,
    value_shape,
)
from .params import check_bool, check_int
from .topk_blocks import (
    Packer,
    Partition,
    RankSelect,
    SideLog,
    SideWriter,
    TieFilter,
    lane_mask,
)

__all__ = ["TopKEngine", "validate_topk_params"]

_MODE_NONE, _MODE_ALL, _MODE_THRESHOLD = 0, 1, 2

#: Buffer memories of at most this many rows (all slots) and bits carry
#: ``ram_style = "distributed"`` (LUT RAM); others are left to the synthesiser (block RAM on
#: ECP5). The bit limit is one DP16KD's capacity: wider memories would cost more LUTs than the
#: block RAMs they save.
LUTRAM_MAX_ROWS = 96
LUTRAM_MAX_BITS = 18 * 1024


def validate_topk_params(lanes: int, width: int, max_n: int, signed: bool) -> None:
    """Raise ValueError naming the parameter and its allowed range if any is out of range."""
    check_int("lanes", lanes, 1, 64, owner="topk", power_of_two=True)
    check_int("width", width, 1, 32, owner="topk")
    check_int("max_n", max_n, lanes, 65536, owner="topk", bounds="lanes..65536")
    check_bool("signed", signed, owner="topk")


class TopKEngine(wiring.Component):
    """Exact top-k of each packet, ``P`` elements per cycle in and out.

    Parameters
    ----------
    lanes : int
        ``P``, elements per beat: a power of two in 1..64.
    width : int
        ``W``, bits per value, 1..32.
    max_n : int
        ``N``, the most elements a packet may hold, ``lanes..65536``.
    signed : bool
        Values are two's-complement signed (else unsigned).

    Members
    -------
    i_stream : ``In(stream.Signature(topk_in_layout(P, W, N, signed)))``
        Payload ``data`` (P values; lane ``j`` is element ``j`` of the beat), ``count``
        (valid lanes ``0..count-1``, 0..P; 0 only on a last beat), ``last``, and ``k``
        (0..N, read on the first beat of a packet). A packet is the beats up to ``last``.
    o_stream : ``Out(stream.Signature(topk_out_layout(P, W, N, signed)))``
        Payload ``data``, ``index`` (the element's 0-based position in its input packet,
        ``$clog2(N)`` bits), ``count``, ``last``. A packet holds exactly ``min(k, n)``
        elements, those :func:`psa.golden.topk.topk` keeps (ties to the lowest index), in
        ascending index order, P per beat except the last; a single beat with ``count = 0``
        when ``min(k, n) = 0``.
    overflow : ``Out(1)``
        One-cycle pulse when a packet holds more than ``N`` elements; elements past the
        ``N``-th are dropped and the packet is processed as its first ``N`` elements.

    Streams follow ``amaranth.lib.stream``: a transfer happens when ``valid`` and ``ready``
    are high; ``valid`` never waits for ``ready`` and the payload holds until accepted. A new
    packet is accepted while up to two earlier ones are still being selected and emitted.
    """

    def __init__(self, lanes: int = 16, width: int = 16, max_n: int = 1024,
                 signed: bool = False):
        validate_topk_params(lanes, width, max_n, signed)
        self._lanes, self._width, self._max_n, self._signed = lanes, width, max_n, signed
        super().__init__({
            "i_stream": In(topk_in_signature(lanes, width, max_n, signed)),
            "o_stream": Out(topk_out_signature(lanes, width, max_n, signed)),
            "overflow": Out(1),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def width(self) -> int:
        return self._width

    @property
    def max_n(self) -> int:
        return self._max_n

    @property
    def signed(self) -> bool:
        return self._signed

    @property
    def ingest_pivots(self) -> int:
        """Pivots of the round done while the packet streams in (quantiles of beat 0)."""
        return 3 if self._lanes >= 4 else 1

    @property
    def samples(self) -> int:
        """Pivot sample size of a quick-select round: ``max(lanes, 8)``."""
        return max(self._lanes, 8)

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p, n_max = self._lanes, self._max_n
        rows = -(-n_max // p)
        vshape = value_shape(self._width, self._signed)
        row = data.ArrayLayout(vshape, p)
        s = self.samples
        lane_bits = exact_log2(p)

        def memory(name: str, slots: int) -> Memory:
            # A small, shallow buffer is asked for in LUT RAM: in 512-row block RAMs it would
            # leave each block over 80% empty, and routing P*W bits into the few block-RAM
            # columns congests (the pruning unit's engine, 32 rows per slot).
            depth = slots * rows
            small = depth <= LUTRAM_MAX_ROWS and depth * row.size <= LUTRAM_MAX_BITS
            attrs = {"ram_style": "distributed"} if small else None
            mem = Memory(shape=row, depth=depth, init=[], attrs=attrs)
            m.submodules[name] = mem
            return mem

        def slot_addr(slot, addr, slots: int):
            """Row ``addr`` of buffer ``slot`` in a memory holding ``slots`` buffers."""
            return Array(Const(i * rows, range(slots * rows)) for i in range(slots))[slot] + addr

        # Buffers, each a memory of several slots: while one stage writes a slot, the next
        # reads another, so one write and one read port serve them all, and a read picks its
        # slot by address rather than through a multiplexer of memories.
        # packet (3 slots): Ingest -> Emit. cand[bucket] (2 slots): Ingest -> Select.
        # scratch[side] (2 slots): Select's own ping-pong. Buckets and sides run from the
        # largest values down (side 0 = greater, 1 = smaller than the pivot).
        kp = self.ingest_pivots
        packet = memory("packet", 3)
        cand = [memory(f"cand{side}", 2) for side in range(kp + 1)]
        scratch = [memory(f"scratch{side}", 2) for side in range(2)]

        # Packets done per stage (mod 8): Ingest may start packet a if a - emitted < 3
        # (a packet buffer is free) and a - selected < 2 (a candidate buffer is free).
        ingested, selected, emitted = Signal(3), Signal(3), Signal(3)

        # ---------------------------------------------------------------- Ingest
        i_pl = self.i_stream.payload
        a_packet = Signal(range(3))
        a_cand = Signal(1)
        a_n, a_k = Signal(range(n_max + 1)), Signal(range(n_max + 1))
        a_pivot = [Signal(vshape, name=f"a_pivot{t}") for t in range(kp)]
        a_eq = [Signal(range(n_max + 1), name=f"a_eq{t}") for t in range(kp)]
        a_overflowed = Signal()
        slot_k = Array(Signal(range(n_max + 1), name=f"slot{i}_k") for i in range(2))
        slot_n = Array(Signal(range(n_max + 1), name=f"slot{i}_n") for i in range(2))
        slot_pivot = [Array(Signal(vshape, name=f"slot{i}_pivot{t}") for i in range(2))
                      for t in range(kp)]
        slot_eq = [Array(Signal(range(n_max + 1), name=f"slot{i}_eq{t}") for i in range(2))
                   for t in range(kp)]

        can_start = (((ingested - emitted)[:3] < 3) & ((ingested - selected)[:3] < 2))
        a_idle = Signal()
        accept = self.i_stream.valid & self.i_stream.ready
        first = accept & a_idle
        n_before = Mux(a_idle, 0, a_n)
        count = Mux(i_pl.count > p, p, i_pl.count)
        space = n_max - n_before
        taken = Signal(range(p + 1))   # elements of this beat that fit in the packet
        m.d.comb += taken.eq(Mux(count > space, space, count))
        in_mask = lane_mask(taken, p)

        # Stage 1 registers the beat; stage 2 partitions it. Round-1 pivots, the (t+1)/(kp+1)
        # quantiles of the first beat (largest first), are found while it is in stage 1.
        s1_data, s1_mask, s1_valid = Signal(row), Signal(p), Signal()
        s1_first, s1_taken = Signal(), Signal(range(p + 1))
        m.d.sync += [s1_valid.eq(accept), s1_first.eq(first)]
        with m.If(accept):
            m.d.sync += [s1_data.eq(i_pl.data), s1_mask.eq(in_mask), s1_taken.eq(taken),
                         a_n.eq(n_before + taken)]
        m.d.sync += self.overflow.eq(0)
        with m.If(accept & (count > space) & ~(a_overflowed & ~a_idle)):
            m.d.sync += [self.overflow.eq(1), a_overflowed.eq(1)]
        with m.If(first):
            m.d.sync += [a_k.eq(i_pl.k), a_overflowed.eq(0)]

        m.submodules.first_pivots = first_sel = RankSelect(p, vshape, ranks=kp)
        m.d.comb += [first_sel.i_data.eq(s1_data), first_sel.i_mask.eq(s1_mask)]
        for t in range(kp):     # rank round(taken * (t+1) / (kp+1)), from a table (no divider)
            table = Array(Const((c * (t + 1) + kp) // (kp + 1), range(p + 1))
                          for c in range(p + 1))
            m.d.comb += first_sel.rank[t].eq(table[s1_taken])
        with m.If(s1_first):
            m.d.sync += [a_pivot[t].eq(first_sel.value[t]) for t in range(kp)]

        s2_data, s2_mask, s2_valid = Signal(row), Signal(p), Signal()
        m.d.sync += [s2_data.eq(s1_data), s2_mask.eq(s1_mask), s2_valid.eq(s1_valid)]

        m.submodules.ingest_part = a_part = Partition(p, vshape, kp)
        m.d.comb += [a_part.i_data.eq(s2_data), a_part.i_mask.eq(s2_mask)]
        m.d.comb += [a_part.pivots[t].eq(a_pivot[t]) for t in range(kp)]
        for t in range(kp):
            with m.If(first):
                m.d.sync += a_eq[t].eq(0)
            with m.Elif(s2_valid):
                m.d.sync += a_eq[t].eq(a_eq[t] + a_part.eq_count[t])

        a_flush = Signal()
        m.submodules.packet_writer = pw = SideWriter(p, vshape, rows)
        m.d.comb += [pw.i_data.eq(s2_data), pw.i_mask.eq(s2_mask), pw.i_valid.eq(s2_valid),
                     pw.i_flush.eq(a_flush), pw.clear.eq(first)]
        wp = packet.write_port()
        m.d.comb += [wp.addr.eq(slot_addr(a_packet, pw.w_addr, 3)), wp.data.eq(pw.w_data),
                     wp.en.eq(pw.w_en)]
        # One packer per bucket; a log per (candidate slot, bucket) keeps what Select needs
        # (counts, samples) while Ingest already fills the other slot.
        cand_logs = [[] for _ in range(2)]
        for side in range(kp + 1):
            packer = Packer(p, vshape)
            m.submodules[f"cand_packer{side}"] = packer
            m.d.comb += [packer.i_data.eq(s2_data), packer.i_mask.eq(a_part.bucket[side]),
                         packer.i_valid.eq(s2_valid), packer.i_flush.eq(a_flush),
                         packer.clear.eq(first)]
            for i in range(2):
                mine = a_cand == i
                log = SideLog(p, vshape, rows, s)
                m.submodules[f"cand_log{i}_{side}"] = log
                m.d.comb += [log.i_data.eq(packer.o_data), log.i_count.eq(packer.o_count),
                             log.i_valid.eq(packer.o_valid & mine), log.clear.eq(first & mine)]
                cand_logs[i].append(log)
            # Both slots' logs see the packer's rows; the one of slot a_cand writes them.
            wp = cand[side].write_port()
            m.d.comb += [wp.addr.eq(slot_addr(a_cand, Mux(a_cand, cand_logs[1][side].w_addr,
                                                          cand_logs[0][side].w_addr), 2)),
                         wp.data.eq(packer.o_data), wp.en.eq(packer.o_valid)]

        with m.FSM(name="ingest"):
            with m.State("IDLE"):
                m.d.comb += [a_idle.eq(1), self.i_stream.ready.eq(can_start)]
                with m.If(accept):
                    m.next = "RUN"
                    with m.If(i_pl.last):
                        m.next = "LAST"
            with m.State("RUN"):
                m.d.comb += self.i_stream.ready.eq(1)
                with m.If(accept & i_pl.last):
                    m.next = "LAST"
            with m.State("LAST"):       # stage 1 holds the last beat
                m.next = "LAST2"
            with m.State("LAST2"):      # stage 2 holds it
                m.next = "FLUSH"
            with m.State("FLUSH"):      # packers send their residues
                m.d.comb += a_flush.eq(1)
                m.next = "DRAIN"
            with m.State("DRAIN"):      # rows the last beat completed are written
                m.next = "COMMIT"
            with m.State("COMMIT"):     # the residues are written this cycle
                m.d.sync += [slot_k[a_cand].eq(a_k), slot_n[a_cand].eq(a_n),
                             *[slot_pivot[t][a_cand].eq(a_pivot[t]) for t in range(kp)],
                             *[slot_eq[t][a_cand].eq(a_eq[t]) for t in range(kp)],
                             a_cand.eq(~a_cand), ingested.eq(ingested + 1),
                             a_packet.eq(Mux(a_packet == 2, 0, a_packet + 1))]
                m.next = "IDLE"

        # ---------------------------------------------------------------- Select
        b_cand = Signal(1)              # candidate slot of the packet being selected
        b_meta = Signal(range(3))       # result slot it goes to
        b_k_rem = Signal(range(n_max + 1))
        b_m = Signal(range(n_max + 1))
        b_keff, b_n = Signal(range(n_max + 1)), Signal(range(n_max + 1))
        b_from_ingest = Signal()        # the round result to decide on is Ingest's
        b_side = Signal(range(kp + 1))
        b_write_q = Signal(1)           # scratch buffer the current round writes
        b_read_cand = Signal()          # the round reads cand[b_cand] (else scratch)
        b_read_q = Signal(1)
        b_pivot = Signal(vshape)
        b_eq = Signal(range(n_max + 1))
        b_row, b_rows = Signal(range(rows + 1)), Signal(range(rows + 1))
        b_last_count = Signal(range(p + 1))
        b_clear, b_flush = Signal(), Signal()
        r1_valid, r1_last = Signal(), Signal()

        meta_mode = Array(Signal(2, name=f"meta{i}_mode") for i in range(3))
        meta_t = Array(Signal(vshape, name=f"meta{i}_t") for i in range(3))
        meta_need = Array(Signal(range(n_max + 1), name=f"meta{i}_need") for i in range(3))
        meta_keff = Array(Signal(range(n_max + 1), name=f"meta{i}_keff") for i in range(3))
        meta_n = Array(Signal(range(n_max + 1), name=f"meta{i}_n") for i in range(3))

        select_writers = []
        for side in range(2):
            w = SideWriter(p, vshape, rows, s)
            m.submodules[f"select_writer{side}"] = w
            select_writers.append(w)
            wp = scratch[side].write_port()
            m.d.comb += [wp.addr.eq(slot_addr(b_write_q, w.w_addr, 2)), wp.data.eq(w.w_data),
                         wp.en.eq(w.w_en)]

        # The result of the last partition: Ingest's round 1 or Select's latest round.
        # Buckets 0..kp with ties between them, in value order from the largest; Select's
        # own rounds fill buckets 0 and 1 and one tie count.
        res_count = [Signal(range(n_max + 1), name=f"res_count{b}") for b in range(kp + 1)]
        res_eq = [Signal(range(n_max + 1), name=f"res_eq{t}") for t in range(kp)]
        res_pivot = [Signal(vshape, name=f"res_pivot{t}") for t in range(kp)]
        with m.If(b_from_ingest):
            m.d.comb += [res_count[b].eq(Array(slot[b].count for slot in cand_logs)[b_cand])
                         for b in range(kp + 1)]
            m.d.comb += [res_eq[t].eq(slot_eq[t][b_cand]) for t in range(kp)]
            m.d.comb += [res_pivot[t].eq(slot_pivot[t][b_cand]) for t in range(kp)]
        with m.Else():
            m.d.comb += [res_count[0].eq(select_writers[0].count),
                         res_count[1].eq(select_writers[1].count),
                         res_eq[0].eq(b_eq), res_pivot[0].eq(b_pivot)]

        t_bound = [Signal(range(n_max + 1), name=f"t_bound{i}") for i in range(2 * kp + 1)]
        t_count = [Signal(range(n_max + 1), name=f"t_count{b}") for b in range(kp + 1)]
        t_pivot = [Signal(vshape, name=f"t_pivot{t}") for t in range(kp)]

        # Samples of the chosen side (b_side is set by DECIDE, so valid from SAMPLE on). Its
        # first row is read from the buffer: DECIDE reads row 0 of every side, SAMPLE takes
        # the chosen one off the read multiplexer.
        cm_sample, cm_n_sample = Signal(data.ArrayLayout(vshape, s)), Signal(range(s + 1))
        sources = [(b_from_ingest & (b_cand == i) & (b_side == side), cand_logs[i][side])
                   for i in range(2) for side in range(kp + 1)]
        sources += [(~b_from_ingest & (b_side == side), select_writers[side])
                    for side in range(2)]
        for cond, w in sources:
            with m.If(cond):
                m.d.comb += [cm_sample.eq(w.sample), cm_n_sample.eq(w.n_sample)]
        sm_sample, sm_n_sample = Signal.like(cm_sample), Signal.like(cm_n_sample)
        m.d.sync += [sm_sample.eq(cm_sample), sm_n_sample.eq(cm_n_sample)]

        # The rank select works on registers only: q_data/q_mask/q_rank hold the side's first
        # row and k_rem from SAMPLE (PIVOT: is the k-th largest in that row?), then the pivot
        # sample from PIVOT and its aimed rank from QUANTILE (PIVOT2: the pivot). The sample
        # is the first row while fewer than half the sample slots are used.
        m.submodules.select_rank = rank_sel = RankSelect(s, vshape)
        q_data = Signal(data.ArrayLayout(vshape, s))
        q_mask = Signal(s)
        q_rank = Signal(range(s + 1))
        m.d.comb += [rank_sel.i_data.eq(q_data), rank_sel.i_mask.eq(q_mask),
                     rank_sel.rank[0].eq(q_rank)]
        f_value, f_greater = Signal(vshape), Signal(range(s + 1))   # for FOUND
        use_first = sm_n_sample < (s // 2)
        c_sample = Mux(use_first, p, sm_n_sample)
        q_c = Signal(range(s + 1))
        q_target = Signal(range(2 * n_max * s + 1))     # 2 * k_rem * c

        # Quantile of the k-th largest in the sample: round(k_rem * c / m), clamped to 1..c,
        # from (2j - 1) * m for each sample rank j, registered in PIVOT (the multipliers stay
        # off the QUANTILE path).
        q_bm = [Signal(range((2 * s - 1) * n_max + 1), name=f"q_bm{j}") for j in range(1, s + 1)]
        ranks = [((j <= q_c) & (q_bm[j - 1] <= q_target)) for j in range(1, s + 1)]
        quantile = Signal(range(s + 1))
        m.d.comb += quantile.eq(sum(ranks))
        # Aim past the target, toward the median, by about two standard deviations of the
        # sample quantile (c/8 ranks), so that the k-th largest lands on the smaller side.
        half = q_c >> 1
        margin = Mux(q_c >= 16, q_c >> 3, 1)
        aimed = Signal(range(s + 1))
        with m.If(quantile + margin <= half):
            m.d.comb += aimed.eq(quantile + margin)
        with m.Elif(quantile < half):
            m.d.comb += aimed.eq(half)
        with m.Elif(quantile >= half + margin):
            m.d.comb += aimed.eq(quantile - margin)
        with m.Else():
            m.d.comb += aimed.eq(half)

        # Round read pipeline: address b_row -> data next cycle in stage r1.
        r1_data = Signal(row)
        for side, mem in enumerate(cand):
            rp = mem.read_port()
            m.d.comb += rp.addr.eq(slot_addr(b_cand, b_row, 2))
            with m.If(b_read_cand & (b_side == side)):
                m.d.comb += r1_data.eq(rp.data)
        for side, mem in enumerate(scratch):
            rp = mem.read_port()
            m.d.comb += rp.addr.eq(slot_addr(b_read_q, b_row, 2))
            with m.If(~b_read_cand & (b_side == side)):
                m.d.comb += r1_data.eq(rp.data)
        r1_mask = Mux(r1_last, lane_mask(b_last_count, p), (1 << p) - 1)
        m.submodules.select_part = b_part = Partition(p, vshape)
        m.d.comb += [b_part.i_data.eq(r1_data), b_part.i_mask.eq(r1_mask),
                     b_part.pivots[0].eq(b_pivot)]
        for side in range(2):
            mask = b_part.bucket[side]
            w = select_writers[side]
            m.d.comb += [w.i_data.eq(r1_data), w.i_mask.eq(mask), w.i_valid.eq(r1_valid),
                         w.i_flush.eq(b_flush), w.clear.eq(b_clear)]
        with m.If(b_clear):
            m.d.sync += b_eq.eq(0)
        with m.Elif(r1_valid):
            m.d.sync += b_eq.eq(b_eq + b_part.eq_count[0])
        m.d.sync += [r1_valid.eq(0), r1_last.eq(0)]

        def finish(mode, threshold, need):
            m.d.sync += [meta_mode[b_meta].eq(mode), meta_t[b_meta].eq(threshold),
                         meta_need[b_meta].eq(need), meta_keff[b_meta].eq(b_keff),
                         meta_n[b_meta].eq(b_n), selected.eq(selected + 1),
                         b_cand.eq(~b_cand), b_meta.eq(Mux(b_meta == 2, 0, b_meta + 1))]
            m.next = "IDLE"

        with m.FSM(name="select"):
            with m.State("IDLE"):
                with m.If(selected != ingested):
                    k, n = slot_k[b_cand], slot_n[b_cand]
                    m.d.sync += [b_keff.eq(Mux(k < n, k, n)), b_n.eq(n),
                                 b_k_rem.eq(Mux(k < n, k, n)), b_from_ingest.eq(1)]
                    m.next = "START"
            with m.State("START"):
                with m.If(b_keff == 0):
                    finish(_MODE_NONE, 0, 0)
                with m.Elif(b_keff == b_n):
                    finish(_MODE_ALL, 0, 0)
                with m.Else():
                    m.next = "TALLY"
            with m.State("TALLY"):
                # Running counts from the largest values: end of bucket b at bound[2b], end
                # of its ties at bound[2b + 1] (registered, so DECIDE only compares).
                m.d.sync += b_row.eq(0)     # DECIDE reads the first rows
                above = Const(0, range(n_max + 1))
                for b in range(kp + 1):
                    above = above + res_count[b]
                    m.d.sync += [t_bound[2 * b].eq(above), t_count[b].eq(res_count[b])]
                    if b < kp:
                        above = above + res_eq[b]
                        m.d.sync += [t_bound[2 * b + 1].eq(above), t_pivot[b].eq(res_pivot[b])]
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.sync += b_read_cand.eq(b_from_ingest)
                # The k-th largest is in the first bucket or tie whose bound reaches k_rem.
                for b in range(kp + 1):
                    before = t_bound[2 * b - 1] if b else 0
                    with (m.If if b == 0 else m.Elif)(b_k_rem <= t_bound[2 * b]):
                        m.d.sync += [b_side.eq(b), b_m.eq(t_count[b]),
                                     b_k_rem.eq(b_k_rem - before)]
                        m.next = "SAMPLE"
                    if b < kp:
                        with m.Elif(b_k_rem <= t_bound[2 * b + 1]):
                            finish(_MODE_THRESHOLD, t_pivot[b], b_k_rem - t_bound[2 * b])
            with m.State("SAMPLE"):
                # Rows are dense, so the first holds min(m, P) elements.
                m.d.sync += [q_data.eq(Cat(r1_data.as_value(),
                                           Const(0, (s - p) * vshape.width))),
                             q_mask.eq(lane_mask(Mux(b_m < p, b_m, p), s)),
                             q_rank.eq(b_k_rem)]
                m.next = "PIVOT"
            with m.State("PIVOT"):
                with m.If(b_m <= p):
                    m.d.sync += [f_value.eq(rank_sel.value[0]), f_greater.eq(rank_sel.greater[0])]
                    m.next = "FOUND"
                with m.Else():
                    with m.If(~use_first):
                        m.d.sync += [q_data.eq(sm_sample), q_mask.eq(lane_mask(sm_n_sample, s))]
                    with m.Else():
                        m.d.sync += q_mask.eq((1 << p) - 1)
                    m.d.sync += [q_c.eq(c_sample), q_target.eq(2 * b_k_rem * c_sample)]
                    m.d.sync += [q_bm[j - 1].eq((2 * j - 1) * b_m) for j in range(1, s + 1)]
                    m.next = "QUANTILE"
            with m.State("FOUND"):
                finish(_MODE_THRESHOLD, f_value, b_k_rem - f_greater)
            with m.State("QUANTILE"):
                m.d.sync += q_rank.eq(Mux(aimed == 0, 1, aimed))
                m.next = "PIVOT2"
            with m.State("PIVOT2"):
                m.d.comb += b_clear.eq(1)
                n_rows = (b_m + (p - 1)) >> lane_bits
                m.d.sync += [b_pivot.eq(rank_sel.value[0]), b_row.eq(0), b_rows.eq(n_rows),
                             b_last_count.eq(b_m - ((n_rows - 1) << lane_bits)),
                             b_write_q.eq(Mux(b_read_cand, 0, ~b_read_q))]
                m.next = "ROUND"
            with m.State("ROUND"):
                m.d.sync += [r1_valid.eq(1), r1_last.eq(b_row == b_rows - 1),
                             b_row.eq(b_row + 1)]
                with m.If(b_row == b_rows - 1):
                    m.next = "ROUND_LAST"
            with m.State("ROUND_LAST"):
                m.next = "ROUND_FLUSH"
            with m.State("ROUND_FLUSH"):
                m.d.comb += b_flush.eq(1)
                m.next = "ROUND_DRAIN"
            with m.State("ROUND_DRAIN"):
                m.next = "ROUND_COMMIT"
            with m.State("ROUND_COMMIT"):
                # The next round reads what this one wrote (set now so that DECIDE's read
                # of the first row already addresses it).
                m.d.sync += [b_from_ingest.eq(0), b_read_q.eq(b_write_q)]
                m.next = "TALLY"

        # ---------------------------------------------------------------- Emit
        ishape = index_shape(n_max)
        ibits = max(1, ishape.width)
        lane = data.StructLayout({"value": vshape, "index": unsigned(ibits)})
        out_layout = topk_out_layout(p, self._width, n_max, self._signed)
        fifo_depth = 8
        m.submodules.out_fifo = fifo = SyncFIFOBuffered(
            width=Shape.cast(out_layout).width, depth=fifo_depth)
        m.d.comb += [self.o_stream.valid.eq(fifo.r_rdy),
                     self.o_stream.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.o_stream.ready)]

        c_packet = Signal(range(3))
        c_meta = Signal(range(3))
        c_mode = Signal(2)
        c_t = Signal(vshape)
        c_need, c_keff = Signal(range(n_max + 1)), Signal(range(n_max + 1))
        c_row = Signal(range(rows + 1))
        c_last, c_last_mask = Signal(range(rows)), Signal(p)   # last row, its lanes
        c_ties = Signal(range(n_max + 1))
        c_sent = Signal(range(n_max + 1))
        e1_valid, e1_row, e1_mask = Signal(), Signal(range(rows)), Signal(p)
        c_flush, c_empty = Signal(), Signal()
        # Room for the rows in flight: the row taken now, the packer's two stages, e1.
        advance = fifo.w_level <= fifo_depth - 4

        e_port = packet.read_port()
        e1_data = Signal(row)
        m.d.comb += [e_port.addr.eq(slot_addr(c_packet, c_row, 3)), e_port.en.eq(advance),
                     e1_data.eq(e_port.data)]
        m.submodules.filter = filt = TieFilter(p, vshape, n_max)
        m.d.comb += [filt.i_data.eq(e1_data), filt.i_mask.eq(e1_mask),
                     filt.threshold.eq(c_t), filt.need.eq(c_need), filt.ties_before.eq(c_ties),
                     filt.keep_all.eq(c_mode == _MODE_ALL)]
        m.submodules.out_packer = packer = Packer(p, lane)
        for j in range(p):
            m.d.comb += [packer.i_data[j].value.eq(e1_data[j]),
                         packer.i_data[j].index.eq(Cat(Const(j, lane_bits), e1_row))]
        m.d.comb += [packer.i_mask.eq(filt.keep), packer.i_valid.eq(e1_valid & advance),
                     packer.i_flush.eq(c_flush)]
        with m.If(e1_valid & advance):
            m.d.sync += c_ties.eq(c_ties + filt.ties)

        beat = Signal(out_layout)
        for j in range(p):
            m.d.comb += [beat.data[j].eq(packer.o_data[j].value),
                         beat.index[j].eq(packer.o_data[j].index)]
        m.d.comb += [beat.count.eq(Mux(c_empty, 0, packer.o_count)),
                     beat.last.eq(c_empty | (c_sent + packer.o_count == c_keff)),
                     fifo.w_data.eq(beat), fifo.w_en.eq(packer.o_valid | c_empty)]
        with m.If(packer.o_valid):
            m.d.sync += c_sent.eq(c_sent + packer.o_count)

        def emitted_one():
            m.d.sync += [emitted.eq(emitted + 1),
                         c_packet.eq(Mux(c_packet == 2, 0, c_packet + 1)),
                         c_meta.eq(Mux(c_meta == 2, 0, c_meta + 1))]
            m.next = "IDLE"

        with m.FSM(name="emit"):
            with m.State("IDLE"):
                with m.If(emitted != selected):
                    mode = meta_mode[c_meta]
                    n = meta_n[c_meta]
                    m.d.sync += [c_mode.eq(mode), c_t.eq(meta_t[c_meta]),
                                 c_need.eq(meta_need[c_meta]), c_keff.eq(meta_keff[c_meta]),
                                 c_row.eq(0), c_last.eq((n - 1) >> lane_bits),
                                 c_last_mask.eq(lane_mask(((n - 1) & (p - 1)) + 1, p)),
                                 c_ties.eq(0), c_sent.eq(0)]
                    with m.If(mode == _MODE_NONE):
                        m.next = "EMPTY"
                    with m.Else():
                        m.next = "SCAN"
            with m.State("EMPTY"):
                with m.If(advance):
                    m.d.comb += c_empty.eq(1)
                    emitted_one()
            with m.State("SCAN"):
                with m.If(advance):
                    m.d.sync += [e1_valid.eq(1), e1_row.eq(c_row), c_row.eq(c_row + 1),
                                 e1_mask.eq(Mux(c_row == c_last, c_last_mask, (1 << p) - 1))]
                    with m.If(c_row == c_last):
                        m.next = "SCAN_LAST"
            with m.State("SCAN_LAST"):
                with m.If(advance):
                    m.d.sync += e1_valid.eq(0)
                    m.next = "FLUSH"
            with m.State("FLUSH"):
                with m.If(advance):
                    m.d.comb += c_flush.eq(1)
                    m.next = "DRAIN"
            with m.State("DRAIN"):      # the packer's first stage holds the flush
                m.next = "DRAIN_LAST"
            with m.State("DRAIN_LAST"):  # the last row enters the FIFO this cycle
                emitted_one()
        return m
