"""Select, the middle stage of the top-k engine: quick-select down to the threshold.

For each job from Ingest (:func:`~psa.hw.layouts.topk_select_job_layout`) Select walks the
buckets and ties of the last partition from the largest value down to the one that holds the
k-th largest element. A tie ends it (the k-th largest equals that pivot); otherwise a round
reads that bucket (``ceil(m/P)`` rows), partitions it against a pivot picked from its sample
and packs both sides into a scratch buffer pair, and the walk repeats on the new partition.
A side that fits in one row is finished by a rank select over that row. The result (keep
``> T`` and the first ``need`` elements ``== T``) goes to Emit as a
:func:`~psa.hw.layouts.topk_result_layout`. Cycle model: docs/topk.md.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .layouts import EmitMode, topk_result_layout, topk_select_job_layout, value_shape
from .topk_blocks import (
    CAND_SLOTS,
    PACKET_SLOTS,
    Partition,
    RankSelect,
    SideWriter,
    buffer_addr_width,
    buffer_memory,
    lane_mask,
    slot_address,
)

__all__ = ["TopKSelect"]


class TopKSelect(wiring.Component):
    """Finds the threshold and tie budget of each packet by quick-select rounds.

    Parameters
    ----------
    lanes, width, max_n, signed
        As :class:`psa.hw.topk.TopKEngine` (checked there).
    pivots : int
        Pivots of Ingest's partition (the job's buckets are ``0..pivots``).
    samples : int
        Pivot sample slots (:class:`~psa.hw.topk_blocks.SideLog`), a power of two ``>= lanes``.

    Members
    -------
    jobs : ``In(stream.Signature(topk_select_job_layout(...)))``
        Packets from Ingest, in order; a job's payload is read while Select works on it and
        taken (``ready`` for one cycle) when its result is queued.
    cand_r : ``In(ReadPort.Signature(...)).array(pivots + 1)``
        Per bucket, read port of its candidate buffers; the job's ``cand_slot`` is read.
    results : ``Out(stream.Signature(topk_result_layout(W, N, signed)))``
        One per job, in order, queued in :data:`~psa.hw.topk_blocks.PACKET_SLOTS` registers;
        each holds until taken (Emit takes it when the packet is out).

    Select owns its scratch buffers: two sides (greater, smaller than the round's pivot), each
    a ping-pong pair, so a round reads the pair the previous round wrote.
    """

    def __init__(self, lanes: int, width: int, max_n: int, signed: bool, pivots: int,
                 samples: int):
        self._lanes, self._width, self._max_n, self._signed = lanes, width, max_n, signed
        self._pivots, self._samples = pivots, samples
        self._rows = rows = -(-max_n // lanes)
        row = data.ArrayLayout(value_shape(width, signed), lanes)
        super().__init__({
            "jobs": In(stream.Signature(
                topk_select_job_layout(width, max_n, signed, pivots, samples))),
            "cand_r": In(ReadPort.Signature(
                addr_width=buffer_addr_width(rows, CAND_SLOTS), shape=row)).array(pivots + 1),
            "results": Out(stream.Signature(topk_result_layout(width, max_n, signed))),
        })

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p, n_max, rows = self._lanes, self._max_n, self._rows
        kp, s = self._pivots, self._samples
        lane_bits = exact_log2(p)
        vshape = value_shape(self._width, self._signed)
        row = data.ArrayLayout(vshape, p)
        count_shape = range(n_max + 1)
        job = self.jobs.payload

        # Results queue (Select -> Emit): written at result_tail, read at result_head.
        result_packet = Array(Signal(range(PACKET_SLOTS), name=f"result{i}_packet")
                              for i in range(PACKET_SLOTS))
        result_mode = Array(Signal(EmitMode, name=f"result{i}_mode")
                            for i in range(PACKET_SLOTS))
        result_threshold = Array(Signal(vshape, name=f"result{i}_threshold")
                                 for i in range(PACKET_SLOTS))
        result_need = Array(Signal(count_shape, name=f"result{i}_need")
                            for i in range(PACKET_SLOTS))
        result_n_keep = Array(Signal(count_shape, name=f"result{i}_n_keep")
                              for i in range(PACKET_SLOTS))
        result_n = Array(Signal(count_shape, name=f"result{i}_n") for i in range(PACKET_SLOTS))
        result_tail, result_head = Signal(range(PACKET_SLOTS)), Signal(range(PACKET_SLOTS))
        results_queued = Signal(range(PACKET_SLOTS + 1))
        result_pushed = Signal()
        result_taken = self.results.valid & self.results.ready
        m.d.sync += results_queued.eq(results_queued + result_pushed - result_taken)
        with m.If(result_taken):
            m.d.sync += result_head.eq(Mux(result_head == PACKET_SLOTS - 1, 0, result_head + 1))
        out = self.results.payload
        m.d.comb += [self.results.valid.eq(results_queued != 0),
                     out.packet_slot.eq(result_packet[result_head]),
                     out.mode.eq(result_mode[result_head]),
                     out.threshold.eq(result_threshold[result_head]),
                     out.need.eq(result_need[result_head]),
                     out.n_keep.eq(result_n_keep[result_head]), out.n.eq(result_n[result_head])]

        # The packet being selected.
        n_keep, n = Signal(count_shape), Signal(count_shape)    # min(k, n), n
        target = Signal(count_shape)    # the k-th largest is the target-th largest of the side
        side_size = Signal(count_shape)  # elements of the side the next round reads
        first_round = Signal()           # the partition to decide on is Ingest's
        side = Signal(range(kp + 1))     # bucket of that partition holding the k-th largest
        read_cands = Signal()            # the round reads cand[side] (else scratch[side])
        scratch_r_slot = Signal(1)       # scratch pair the round reads
        scratch_w_slot = Signal(1)       # scratch pair the round writes
        pivot = Signal(vshape)           # the round's pivot
        ties = Signal(count_shape)       # elements equal to it seen by the round
        row_addr, n_rows = Signal(range(rows + 1)), Signal(range(rows + 1))
        last_row_count = Signal(range(p + 1))
        round_start, round_flush = Signal(), Signal()
        row_valid, row_last = Signal(), Signal()   # the row the memory returns this cycle

        scratch = []
        writers = []
        for w_side in range(2):
            mem = buffer_memory(row, rows, 2)
            m.submodules[f"scratch{w_side}"] = mem
            scratch.append(mem)
            writer = SideWriter(p, vshape, rows, s)
            m.submodules[f"select_writer{w_side}"] = writer
            writers.append(writer)
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(slot_address(scratch_w_slot, writer.w_addr, rows, 2)),
                         wp.data.eq(writer.w_data), wp.en.eq(writer.w_en)]

        # The last partition: Ingest's (buckets 0..kp with ties between them, in value order
        # from the largest) or Select's latest round (buckets 0 and 1, one tie count).
        part_count = [Signal(count_shape, name=f"part_count{b}") for b in range(kp + 1)]
        part_ties = [Signal(count_shape, name=f"part_ties{t}") for t in range(kp)]
        part_pivot = [Signal(vshape, name=f"part_pivot{t}") for t in range(kp)]
        with m.If(first_round):
            m.d.comb += [part_count[b].eq(job.count[b]) for b in range(kp + 1)]
            m.d.comb += [part_ties[t].eq(job.ties[t]) for t in range(kp)]
            m.d.comb += [part_pivot[t].eq(job.pivot[t]) for t in range(kp)]
        with m.Else():
            m.d.comb += [part_count[0].eq(writers[0].count), part_count[1].eq(writers[1].count),
                         part_ties[0].eq(ties), part_pivot[0].eq(pivot)]

        # Registered by TALLY: running counts from the largest values (end of bucket b at
        # bound[2b], end of its ties at bound[2b + 1]), bucket counts and pivots.
        bound = [Signal(count_shape, name=f"bound{i}") for i in range(2 * kp + 1)]
        bucket_count = [Signal(count_shape, name=f"bucket_count{b}") for b in range(kp + 1)]
        bucket_pivot = [Signal(vshape, name=f"bucket_pivot{t}") for t in range(kp)]

        # Pivot sample of the chosen side (side is set by DECIDE, so valid from SAMPLE on).
        side_sample, n_side_sample = Signal(data.ArrayLayout(vshape, s)), Signal(range(s + 1))
        sources = [(first_round & (side == b), job.sample[b], job.n_sample[b])
                   for b in range(kp + 1)]
        sources += [(~first_round & (side == b), writers[b].sample, writers[b].n_sample)
                    for b in range(2)]
        for cond, sample, n_sample in sources:
            with m.If(cond):
                m.d.comb += [side_sample.eq(sample), n_side_sample.eq(n_sample)]
        sample_q, n_sample_q = Signal.like(side_sample), Signal.like(n_side_sample)
        m.d.sync += [sample_q.eq(side_sample), n_sample_q.eq(n_side_sample)]

        # The rank select works on registers only: rank_data/rank_mask/rank_target hold the
        # side's first row and target from SAMPLE (PIVOT: is the k-th largest in that row?),
        # then the pivot sample from PIVOT and its aimed rank from QUANTILE (PIVOT2: the
        # pivot). The sample is the first row while fewer than half the sample slots are used.
        m.submodules.select_rank = rank_sel = RankSelect(s, vshape)
        rank_data = Signal(data.ArrayLayout(vshape, s))
        rank_mask = Signal(s)
        rank_target = Signal(range(s + 1))
        m.d.comb += [rank_sel.i_data.eq(rank_data), rank_sel.i_mask.eq(rank_mask),
                     rank_sel.rank[0].eq(rank_target)]
        found_value, found_greater = Signal(vshape), Signal(range(s + 1))   # for FOUND
        use_first_row = n_sample_q < (s // 2)
        sample_size = Mux(use_first_row, p, n_sample_q)
        n_sampled = Signal(range(s + 1))
        quantile_target = Signal(range(2 * n_max * s + 1))     # 2 * target * n_sampled

        # Quantile of the k-th largest in the sample: round(target * c / m), clamped to 1..c,
        # from (2j - 1) * m for each sample rank j, registered in PIVOT (the multipliers stay
        # off the QUANTILE path).
        quantile_bound = [Signal(range((2 * s - 1) * n_max + 1), name=f"quantile_bound{j}")
                          for j in range(1, s + 1)]
        ranks = [((j <= n_sampled) & (quantile_bound[j - 1] <= quantile_target))
                 for j in range(1, s + 1)]
        quantile = Signal(range(s + 1))
        m.d.comb += quantile.eq(sum(ranks))
        # Aim past the target, toward the median, by about two standard deviations of the
        # sample quantile (c/8 ranks), so that the k-th largest lands on the smaller side.
        half = n_sampled >> 1
        margin = Mux(n_sampled >= 16, n_sampled >> 3, 1)
        aimed = Signal(range(s + 1))
        with m.If(quantile + margin <= half):
            m.d.comb += aimed.eq(quantile + margin)
        with m.Elif(quantile < half):
            m.d.comb += aimed.eq(half)
        with m.Elif(quantile >= half + margin):
            m.d.comb += aimed.eq(quantile - margin)
        with m.Else():
            m.d.comb += aimed.eq(half)

        # Round read pipeline: address row_addr -> row_data the next cycle.
        row_data = Signal(row)
        for b, port in enumerate(self.cand_r):
            m.d.comb += port.addr.eq(slot_address(job.cand_slot, row_addr, rows, CAND_SLOTS))
            with m.If(read_cands & (side == b)):
                m.d.comb += row_data.eq(port.data)
        for b, mem in enumerate(scratch):
            rp = mem.read_port()
            m.d.comb += rp.addr.eq(slot_address(scratch_r_slot, row_addr, rows, 2))
            with m.If(~read_cands & (side == b)):
                m.d.comb += row_data.eq(rp.data)
        row_mask = Mux(row_last, lane_mask(last_row_count, p), (1 << p) - 1)
        m.submodules.select_part = part = Partition(p, vshape)
        m.d.comb += [part.i_data.eq(row_data), part.i_mask.eq(row_mask),
                     part.pivots[0].eq(pivot)]
        for w_side, writer in enumerate(writers):
            m.d.comb += [writer.i_data.eq(row_data), writer.i_mask.eq(part.bucket[w_side]),
                         writer.i_valid.eq(row_valid), writer.i_flush.eq(round_flush),
                         writer.clear.eq(round_start)]
        with m.If(round_start):
            m.d.sync += ties.eq(0)
        with m.Elif(row_valid):
            m.d.sync += ties.eq(ties + part.eq_count[0])
        m.d.sync += [row_valid.eq(0), row_last.eq(0)]

        def finish(mode, threshold, need):
            m.d.comb += [result_pushed.eq(1), self.jobs.ready.eq(1)]
            m.d.sync += [result_packet[result_tail].eq(job.packet_slot),
                         result_mode[result_tail].eq(mode),
                         result_threshold[result_tail].eq(threshold),
                         result_need[result_tail].eq(need), result_n_keep[result_tail].eq(n_keep),
                         result_n[result_tail].eq(n),
                         result_tail.eq(Mux(result_tail == PACKET_SLOTS - 1, 0, result_tail + 1))]
            m.next = "IDLE"

        with m.FSM(name="select"):
            with m.State("IDLE"):
                with m.If(self.jobs.valid):
                    keep = Mux(job.k < job.n, job.k, job.n)
                    m.d.sync += [n_keep.eq(keep), n.eq(job.n), target.eq(keep),
                                 first_round.eq(1)]
                    m.next = "START"
            with m.State("START"):
                with m.If(n_keep == 0):
                    finish(EmitMode.NONE, 0, 0)
                with m.Elif(n_keep == n):
                    finish(EmitMode.ALL, 0, 0)
                with m.Else():
                    m.next = "TALLY"
            with m.State("TALLY"):
                m.d.sync += row_addr.eq(0)     # DECIDE reads the first rows
                above = Const(0, count_shape)
                for b in range(kp + 1):
                    above = above + part_count[b]
                    m.d.sync += [bound[2 * b].eq(above), bucket_count[b].eq(part_count[b])]
                    if b < kp:
                        above = above + part_ties[b]
                        m.d.sync += [bound[2 * b + 1].eq(above),
                                     bucket_pivot[b].eq(part_pivot[b])]
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.d.sync += read_cands.eq(first_round)
                # The k-th largest is in the first bucket or tie whose bound reaches target.
                for b in range(kp + 1):
                    before = bound[2 * b - 1] if b else 0
                    with (m.If if b == 0 else m.Elif)(target <= bound[2 * b]):
                        m.d.sync += [side.eq(b), side_size.eq(bucket_count[b]),
                                     target.eq(target - before)]
                        m.next = "SAMPLE"
                    if b < kp:
                        with m.Elif(target <= bound[2 * b + 1]):
                            finish(EmitMode.THRESHOLD, bucket_pivot[b], target - bound[2 * b])
            with m.State("SAMPLE"):
                # Rows are dense, so the first holds min(side_size, P) elements.
                m.d.sync += [rank_data.eq(Cat(row_data.as_value(),
                                              Const(0, (s - p) * vshape.width))),
                             rank_mask.eq(lane_mask(Mux(side_size < p, side_size, p), s)),
                             rank_target.eq(target)]
                m.next = "PIVOT"
            with m.State("PIVOT"):
                with m.If(side_size <= p):
                    m.d.sync += [found_value.eq(rank_sel.value[0]),
                                 found_greater.eq(rank_sel.greater[0])]
                    m.next = "FOUND"
                with m.Else():
                    with m.If(~use_first_row):
                        m.d.sync += [rank_data.eq(sample_q),
                                     rank_mask.eq(lane_mask(n_sample_q, s))]
                    with m.Else():
                        m.d.sync += rank_mask.eq((1 << p) - 1)
                    m.d.sync += [n_sampled.eq(sample_size),
                                 quantile_target.eq(2 * target * sample_size)]
                    m.d.sync += [quantile_bound[j - 1].eq((2 * j - 1) * side_size)
                                 for j in range(1, s + 1)]
                    m.next = "QUANTILE"
            with m.State("FOUND"):
                finish(EmitMode.THRESHOLD, found_value, target - found_greater)
            with m.State("QUANTILE"):
                m.d.sync += rank_target.eq(Mux(aimed == 0, 1, aimed))
                m.next = "PIVOT2"
            with m.State("PIVOT2"):
                m.d.comb += round_start.eq(1)
                rows_needed = (side_size + (p - 1)) >> lane_bits
                m.d.sync += [pivot.eq(rank_sel.value[0]), row_addr.eq(0),
                             n_rows.eq(rows_needed),
                             last_row_count.eq(side_size - ((rows_needed - 1) << lane_bits)),
                             scratch_w_slot.eq(Mux(read_cands, 0, ~scratch_r_slot))]
                m.next = "ROUND"
            with m.State("ROUND"):
                m.d.sync += [row_valid.eq(1), row_last.eq(row_addr == n_rows - 1),
                             row_addr.eq(row_addr + 1)]
                with m.If(row_addr == n_rows - 1):
                    m.next = "ROUND_LAST"
            with m.State("ROUND_LAST"):
                m.next = "ROUND_FLUSH"
            with m.State("ROUND_FLUSH"):
                m.d.comb += round_flush.eq(1)
                m.next = "ROUND_DRAIN"
            with m.State("ROUND_DRAIN"):
                m.next = "ROUND_COMMIT"
            with m.State("ROUND_COMMIT"):
                # The next round reads what this one wrote (set now so that DECIDE's read
                # of the first row already addresses it).
                m.d.sync += [first_round.eq(0), scratch_r_slot.eq(scratch_w_slot)]
                m.next = "TALLY"
        return m
