"""Select, the middle stage of the top-k engine: radix select of the threshold, digit by digit.

Ingest decided the top digit (``DIGIT_BITS`` bits of the sort key) of the k-th largest
element. Select resolves the others, one digit per pass, in two sub-stages that work on two
packets at once:

- the **scanner** reads the stored packet (``ceil(n/P)`` rows), counts the second digit of
  the elements whose top digit matches in a :class:`~psa.hw.topk_blocks.DigitHistogram`, and
  packs those elements densely into a scratch buffer; a
  :class:`~psa.hw.topk_blocks.BinSelect` then picks the second digit;
- the **finisher** resolves the remaining digits, one pass over the scratch buffer each
  (``ceil(m/P)`` rows for the ``m`` elements that share the top digit), counting the next
  digit of the elements that match the digits found so far.

After the last digit the threshold ``T`` is known and ``need``, the k-th largest's rank
among the elements equal to ``T``. Every pass reads a fixed number of rows, so the cycles do
not depend on the values beyond ``m``: the bound of docs/topk.md. The result (keep ``> T`` and
the first ``need`` elements ``== T``) goes to Emit as a
:func:`~psa.hw.layouts.topk_result_layout`.
"""

from __future__ import annotations

from amaranth.hdl import Array, Elaboratable, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

from .layouts import EmitMode, topk_result_layout, value_shape
from .topk_blocks import (
    PACKET_SLOTS,
    SCRATCH_SLOTS,
    BinSelect,
    DigitHistogram,
    SideWriter,
    buffer_addr_width,
    buffer_memory,
    digit_plan,
    last_row,
    slot_address,
    sort_key,
)
from .topk_ingest import topk_scan_job_layout

__all__ = ["TopKSelect", "HIST_LATENCY"]

#: Cycles from a row's address to its elements being in a histogram's counts: memory read,
#: output register, filter register, then the histogram's two stages.
HIST_LATENCY = 5


class TopKSelect(wiring.Component):
    """Finds the threshold and tie budget of each packet by radix passes.

    Parameters
    ----------
    lanes, width, max_n, signed
        As :class:`psa.hw.topk.TopKEngine` (checked there).

    Members
    -------
    jobs : ``In(stream.Signature(topk_scan_job_layout(W, N)))``
        Packets from Ingest, in order; a job is taken (``ready`` for one cycle) when the
        scanner starts it.
    packet_r : ``In(ReadPort.Signature(...))``
        Read port of the packet buffers (the scanner's pass).
    results : ``Out(stream.Signature(topk_result_layout(W, N, signed)))``
        One per job, in order, queued in :data:`~psa.hw.topk_blocks.PACKET_SLOTS` registers;
        each holds until taken (Emit takes it when the packet is out).

    Select owns its scratch buffers (:data:`~psa.hw.topk_blocks.SCRATCH_SLOTS`: the scanner
    writes one while the finisher reads the other).
    """

    def __init__(self, lanes: int, width: int, max_n: int, signed: bool):
        self._lanes, self._width, self._max_n, self._signed = lanes, width, max_n, signed
        self._rows = rows = -(-max_n // lanes)
        row = data.ArrayLayout(value_shape(width, signed), lanes)
        super().__init__({
            "jobs": In(stream.Signature(topk_scan_job_layout(width, max_n))),
            "packet_r": In(ReadPort.Signature(
                addr_width=buffer_addr_width(rows, PACKET_SLOTS), shape=row)),
            "results": Out(stream.Signature(topk_result_layout(width, max_n, signed))),
        })

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p, w, n_max, rows, sg = self._lanes, self._width, self._max_n, self._rows, self._signed
        vshape = value_shape(w, sg)
        row = data.ArrayLayout(vshape, p)
        count_shape = range(n_max + 1)
        digits = digit_plan(w)
        n_digits = len(digits)
        lo0 = digits[0][0]

        def key(value):
            return sort_key(value, w, sg)

        def last_lanes(count):
            return last_row(count, p)[1]

        def last_row_of(count):
            return last_row(count, p)[0]

        def pipeline(name, port_data, start_row, last_row, last_mask, match):
            """Address rows ``0..last_row`` from ``start_row`` (high one cycle; ``last_row``
            and ``last_mask``, the valid lanes of the last row, are registers set by then);
            returns the row address, ``busy`` and the registered, filtered rows three cycles
            later."""
            addr = Signal(range(rows + 1), name=f"{name}_addr")
            busy = Signal(name=f"{name}_busy")
            first = Signal(name=f"{name}_first")
            a_valid, a_last, a_first = Signal(name=f"{name}_a_valid"), \
                Signal(name=f"{name}_a_last"), Signal(name=f"{name}_a_first")
            with m.If(start_row):
                m.d.sync += [addr.eq(0), busy.eq(1), first.eq(1)]
            with m.Elif(busy):
                m.d.sync += [addr.eq(addr + 1), first.eq(0)]
                with m.If(addr == last_row):
                    m.d.sync += busy.eq(0)
            m.d.sync += [a_valid.eq(busy), a_last.eq(busy & (addr == last_row)),
                         a_first.eq(busy & first)]
            r_data = Signal(row, name=f"{name}_r_data")
            r_valid, r_last, r_first = Signal(name=f"{name}_r_valid"), \
                Signal(name=f"{name}_r_last"), Signal(name=f"{name}_r_first")
            m.d.sync += [r_data.eq(port_data), r_valid.eq(a_valid), r_last.eq(a_last),
                         r_first.eq(a_first)]
            lanes_ok = Mux(r_last, last_mask, (1 << p) - 1)
            q_data, q_mask = Signal(row, name=f"{name}_q_data"), Signal(p, name=f"{name}_q_mask")
            q_valid, q_first = Signal(name=f"{name}_q_valid"), Signal(name=f"{name}_q_first")
            m.d.sync += [q_data.eq(r_data), q_valid.eq(r_valid), q_first.eq(r_first)]
            m.d.sync += [q_mask[i].eq(lanes_ok[i] & match(r_data[i])) for i in range(p)]
            return addr, busy, q_data, q_mask, q_valid, q_first

        # ---------------------------------------------------------------- results queue
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

        # ------------------------------------------------- scanner -> finisher hand-off
        f_full = Signal()               # a packet waits for, or is in, the finisher
        f_slot = Signal(range(PACKET_SLOTS))
        f_n, f_keep = Signal(count_shape), Signal(count_shape)
        f_mode = Signal(EmitMode)
        f_prefix, f_rank = Signal(w), Signal(count_shape)
        # The last row of the scratch slot's elements and its valid lanes.
        f_last_row, f_last_mask = Signal(range(rows)), Signal(p)
        f_scratch = Signal(range(SCRATCH_SLOTS))
        f_done = Signal()               # the finisher pushes the packet's result

        # ---------------------------------------------------------------------- scanner
        job = self.jobs.payload
        s_slot = Signal(range(PACKET_SLOTS))
        s_n, s_keep = Signal(count_shape), Signal(count_shape)
        s_prefix, s_rank = Signal(w), Signal(count_shape)
        s_last_row, s_last_mask = Signal(range(rows)), Signal(p)
        s_scratch = Signal(range(SCRATCH_SLOTS))    # the scratch slot the scan writes
        s_start, s_flush = Signal(), Signal()
        s_commit = Signal()
        can_hand_off = ~f_full | f_done

        def hand_off(mode, prefix, rank, cands):
            m.d.comb += s_commit.eq(1)
            m.d.sync += [f_full.eq(1), f_slot.eq(s_slot), f_n.eq(s_n), f_keep.eq(s_keep),
                         f_mode.eq(mode), f_prefix.eq(prefix), f_rank.eq(rank),
                         f_scratch.eq(s_scratch),
                         f_last_row.eq(last_row_of(cands)), f_last_mask.eq(last_lanes(cands))]

        with m.If(f_done & ~s_commit):
            m.d.sync += f_full.eq(0)

        if n_digits >= 2:
            lo1, bits1 = digits[1]
            m.submodules.scratch = scratch = buffer_memory(row, rows, SCRATCH_SLOTS)
            s_addr, s_busy, sq_data, sq_mask, sq_valid, sq_first = pipeline(
                "scan", self.packet_r.data, s_start, s_last_row, s_last_mask,
                lambda v: key(v)[lo0:] == s_prefix[lo0:])
            m.d.comb += self.packet_r.addr.eq(slot_address(s_slot, s_addr, rows, PACKET_SLOTS))
            m.submodules.scan_hist = s_hist = DigitHistogram(p, bits1, n_max)
            m.d.comb += [s_hist.i_digit[i].eq(key(sq_data[i])[lo1:lo1 + bits1])
                         for i in range(p)]
            m.d.comb += [s_hist.i_mask.eq(sq_mask), s_hist.i_valid.eq(sq_valid),
                         s_hist.i_first.eq(sq_first)]
            m.submodules.scan_writer = writer = SideWriter(p, vshape, rows)
            m.d.comb += [writer.i_data.eq(sq_data), writer.i_mask.eq(sq_mask),
                         writer.i_valid.eq(sq_valid), writer.i_flush.eq(s_flush),
                         writer.clear.eq(s_start)]
            wp = scratch.write_port()
            m.d.comb += [wp.addr.eq(slot_address(s_scratch, writer.w_addr, rows,
                                                 SCRATCH_SLOTS)),
                         wp.data.eq(writer.w_data), wp.en.eq(writer.w_en)]
            m.submodules.scan_pick = s_pick = BinSelect(1 << bits1, n_max)
            m.d.comb += [s_pick.count_ge.eq(s_hist.count_ge), s_pick.group_ge.eq(s_hist.group_ge),
                         s_pick.target.eq(s_rank)]
            s_tail = Signal(range(HIST_LATENCY + 1))

        def take_job():
            """Take the next job, if any; a threshold search starts its scan at once."""
            with m.If(self.jobs.valid):
                m.d.comb += self.jobs.ready.eq(1)
                m.d.sync += [s_slot.eq(job.packet_slot), s_n.eq(job.n), s_keep.eq(job.n_keep),
                             s_prefix.eq(job.prefix), s_rank.eq(job.rank),
                             s_last_row.eq(last_row_of(job.n)), s_last_mask.eq(last_lanes(job.n))]
                if n_digits >= 2:
                    with m.If((job.n_keep != 0) & (job.n_keep != job.n)):
                        m.d.comb += s_start.eq(1)
                        m.d.sync += s_tail.eq(0)
                        m.next = "SCAN"
                    with m.Else():
                        m.next = "COMMIT"
                else:
                    m.next = "COMMIT"

        def scanned():
            hand_off(EmitMode.THRESHOLD, s_prefix | (s_pick.bin << lo1)[:w],
                     s_pick.rank, writer.count)
            m.d.sync += s_scratch.eq(s_scratch + 1)
            m.next = "IDLE"
            take_job()

        with m.FSM(name="scan"):
            with m.State("IDLE"):
                take_job()
            if n_digits >= 2:
                with m.State("SCAN"):       # rows addressed; then the pipeline drains
                    with m.If(~s_busy):
                        m.d.sync += s_tail.eq(s_tail + 1)
                        with m.If(s_tail == 3):     # the last row left the packer's input
                            m.d.comb += s_flush.eq(1)
                        with m.If(s_tail == HIST_LATENCY - 1):   # counts final
                            m.d.comb += s_pick.start.eq(1)
                            m.next = "PICK"
                with m.State("PICK"):       # (the scratch rows are written by done)
                    with m.If(s_pick.done):
                        m.next = "PICKED"
                        with m.If(can_hand_off):
                            scanned()
                with m.State("PICKED"):     # the finisher is still busy
                    with m.If(can_hand_off):
                        scanned()
            with m.State("COMMIT"):
                with m.If(can_hand_off):
                    mode = Mux(s_keep == 0, EmitMode.NONE,
                               Mux(s_keep == s_n, EmitMode.ALL, EmitMode.THRESHOLD))
                    hand_off(mode, s_prefix, s_rank, 0)
                    m.next = "IDLE"

        # --------------------------------------------------------------------- finisher
        fi_prefix, fi_rank = Signal(w), Signal(count_shape)

        def push(threshold_key, need):
            m.d.comb += [result_pushed.eq(1), f_done.eq(1)]
            value = threshold_key ^ (1 << (w - 1)) if sg else threshold_key
            m.d.sync += [result_packet[result_tail].eq(f_slot),
                         result_mode[result_tail].eq(f_mode),
                         result_threshold[result_tail].eq(value),
                         result_need[result_tail].eq(need), result_n_keep[result_tail].eq(f_keep),
                         result_n[result_tail].eq(f_n),
                         result_tail.eq(Mux(result_tail == PACKET_SLOTS - 1, 0, result_tail + 1))]

        if n_digits >= 3:
            f_bits = digits[2][1]
            fi_start = Signal()
            fi_digit = Signal(range(n_digits))
            rp = scratch.read_port()
            f_addr, f_busy, fq_data, fq_mask, fq_valid, fq_first = pipeline(
                "finish", rp.data, fi_start, f_last_row, f_last_mask,
                lambda v: Array(key(v)[digits[j - 1][0]:lo0] == fi_prefix[digits[j - 1][0]:lo0]
                                for j in range(2, n_digits))[fi_digit - 2])
            m.d.comb += rp.addr.eq(slot_address(f_scratch, f_addr, rows, SCRATCH_SLOTS))
            m.submodules.finish_hist = f_hist = DigitHistogram(p, f_bits, n_max)
            for i in range(p):
                k_i = key(fq_data[i])
                m.d.comb += f_hist.i_digit[i].eq(
                    Array(k_i[lo:lo + b] for lo, b in digits[2:])[fi_digit - 2])
            m.d.comb += [f_hist.i_mask.eq(fq_mask), f_hist.i_valid.eq(fq_valid),
                         f_hist.i_first.eq(fq_first)]
            m.submodules.finish_pick = f_pick = BinSelect(1 << f_bits, n_max)
            m.d.comb += [f_pick.count_ge.eq(f_hist.count_ge), f_pick.group_ge.eq(f_hist.group_ge),
                         f_pick.target.eq(fi_rank)]
            f_tail = Signal(range(HIST_LATENCY + 1))
            digit_lo = Array(lo for lo, _ in digits[2:])[fi_digit - 2]

        if n_digits < 3:
            with m.If(f_full):
                push(f_prefix, f_rank)
            return m
        with m.FSM(name="finish"):
            with m.State("IDLE"):
                with m.If(f_full):
                    with m.If(f_mode == EmitMode.THRESHOLD):
                        m.d.comb += fi_start.eq(1)
                        m.d.sync += [fi_prefix.eq(f_prefix), fi_rank.eq(f_rank),
                                     fi_digit.eq(2), f_tail.eq(0)]
                        m.next = "PASS"
                    with m.Else():
                        push(f_prefix, f_rank)
            with m.State("PASS"):
                with m.If(~f_busy):
                    m.d.sync += f_tail.eq(f_tail + 1)
                    with m.If(f_tail == HIST_LATENCY - 1):
                        m.d.comb += f_pick.start.eq(1)
                        m.next = "PICK"
            with m.State("PICK"):
                with m.If(f_pick.done):
                    new_prefix = fi_prefix | (f_pick.bin << digit_lo)[:w]
                    new_rank = f_pick.rank
                    with m.If(fi_digit == n_digits - 1):
                        push(new_prefix, new_rank)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += fi_start.eq(1)
                        m.d.sync += [fi_prefix.eq(new_prefix), fi_rank.eq(new_rank),
                                     fi_digit.eq(fi_digit + 1), f_tail.eq(0)]
                        m.next = "PASS"
        return m
