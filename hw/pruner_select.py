"""Per-query selection of the pruning unit: top-``kv`` or top-p mass of one probability row.

:class:`RowSelect` takes one query row (``P`` probabilities per beat over the alive
positions), stores it, finds the selection threshold by a radix search over the row and then
emits the selected positions in ascending order. Both rules of ``psa.golden.decode`` reduce to
one threshold search over a weight per element (``w = 1`` for ``kv``, ``w = v`` for top-p) and
a target ``t`` (``kv`` or ``p_fixed``):

- ``T`` is the largest value with ``W(v >= T) >= t`` (``W``: the summed weight);
- every element ``v > T`` is kept, and ties ``v == T`` in position order while the weight kept
  so far is ``< t`` (the ``j``-th tie is kept iff ``W(v > T) + j w(T) < t``);
- ``W(all) < t`` keeps every element (``kv >= alive``; a row whose mass is below ``p``);
  ``t = 0`` keeps nothing.

This is exactly :func:`~psa.golden.decode.select_kv` (top ``min(kv, n)``, ties to the lower
position) and :func:`~psa.golden.decode.select_topp` (shortest prefix of the value-descending,
position-ascending order whose sum reaches ``p_fixed``).

Search: ``T`` is found ``r`` bits at a time (``digit_bits``), from the most significant: one
pass over the row per digit accumulates the weight of each of the ``2^r`` digit values among
the elements that match the digits found so far (``2^r`` adder trees over the ``P`` lanes),
then a scan from the largest digit down (one bin per cycle) picks the digit. Pass 0 runs while
the row streams in, so a row of ``b``-bit probabilities costs ``ceil(b / r) - 1`` further
passes of ``ceil(n / P)`` cycles after its last beat, plus at most ``2^r`` scan cycles per
digit. Emission reads the stored row once more, one selected position per cycle (a row beat
without selected lanes costs one cycle).
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2, exact_log2

from .layouts import SELECT_TARGET_BITS, position_out_layout, prob_beat_layout
from .params import check_int

__all__ = ["RowSelect", "lowest_set"]



def lowest_set(m: Module, mask, width: int, name: str):
    """(found, index) of the lowest set bit of ``mask`` (combinational priority encoder)."""
    found = Signal(name=f"{name}_found")
    index = Signal(range(max(width, 2)), name=f"{name}_index")
    m.d.comb += found.eq(mask.any())
    for i in reversed(range(width)):
        with m.If(mask[i]):
            m.d.comb += index.eq(i)
    return found, index


class RowSelect(wiring.Component):
    """Threshold search and ascending emission of a top-``kv`` / top-p selection of one row.

    Parameters
    ----------
    max_tokens : int
        ``N``, longest row (2..65536).
    lanes : int
        ``P``, probabilities per beat (power of two, 1..64).
    prob_bits : int
        ``b``, ``UQ0.b`` probabilities (1..16).
    digit_bits : int
        ``r``, threshold bits found per pass (1..prob_bits; ``2^r`` weight bins).

    Members
    -------
    start : In(1)
        Begin a row of ``n`` elements with ``target`` and ``topp`` (sampled this cycle);
        ``n`` must be >= 1.
    beats : In(stream.Signature(prob_beat_layout))
        The row, exactly ``ceil(n / P)`` beats (lanes past ``n`` ignored); ready every cycle
        from the cycle after ``start`` until the last beat. ``last`` is checked: a mismatch
        pulses ``error``.
    found : Out(1)
        The selection is known (until the next ``start``); ``flat`` is valid:
        no element ``>= lsb_threshold``.
    rewind : In(1)
        Restart the emission from position 0 (a second stream of the same selection). Use
        with ``found`` high, before each emission.
    out : Out(stream.Signature(position_out_layout))
        The selected positions, ascending, ``last`` on the final one; nothing when ``target``
        is 0 (the caller skips the emission then).
    """

    def __init__(self, max_tokens: int, lanes: int, prob_bits: int = 12, digit_bits: int = 4):
        owner = type(self).__name__
        self._n = check_int("max_tokens", max_tokens, 2, 65536, owner=owner)
        self._p = check_int("lanes", lanes, 1, 64, owner=owner, power_of_two=True)
        self._b = check_int("prob_bits", prob_bits, 1, 16, owner=owner)
        self._r = check_int("digit_bits", digit_bits, 1, prob_bits, owner=owner)
        self._rows = -(-max_tokens // lanes)
        # weight sums: at most n * (2^b - 1) for top-p, n for kv
        self._sum_bits = bits_for(max(max_tokens * ((1 << prob_bits) - 1), max_tokens))
        pos_bits = max(1, ceil_log2(max_tokens))
        super().__init__({
            "start": In(1),
            "n": In(range(max_tokens + 1)),
            "target": In(unsigned(SELECT_TARGET_BITS)),
            "topp": In(1),
            "lsb_threshold": In(unsigned(prob_bits + 1)),
            "beats": In(stream.Signature(prob_beat_layout(lanes, prob_bits))),
            "found": Out(1),
            "flat": Out(1),
            "error": Out(1),
            "rewind": In(1),
            "out": Out(stream.Signature(position_out_layout(pos_bits))),
        })

    @property
    def passes(self) -> int:
        """Passes over the row: ``ceil(prob_bits / digit_bits)`` (the first while it streams)."""
        return -(-self._b // self._r)

    def elaborate(self, platform) -> Module:
        m = Module()
        p, b, r = self._p, self._b, self._r
        shift = exact_log2(p)
        passes = self.passes
        bins = 1 << r
        row_shape = data.ArrayLayout(unsigned(b), p)

        buf = Memory(shape=row_shape, depth=self._rows, init=[])
        m.submodules.row_buffer = buf
        wp = buf.write_port()
        rp = buf.read_port()

        n = Signal(range(self._n + 1))
        n_rows = Signal(range(self._rows + 1))
        target = Signal(SELECT_TARGET_BITS)
        topp = Signal()
        thr = Signal(b + 1)
        flat = Signal()
        m.d.comb += [self.flat.eq(flat)]

        # -- the row entering a pass: `feed` (one beat of P lanes, its row index), from the
        # ingest register (pass 0) or the row buffer's read port (later passes)
        ing_valid, ing_data = Signal(), Signal(row_shape)
        ing_row = Signal(range(self._rows))
        rd_valid = Signal()
        rd_row = Signal(range(self._rows + 1))      # next row the pass reads
        rd_row_d = Signal(range(self._rows))        # row on the read port's output
        feed_valid = Signal()
        feed_data = Signal(row_shape)
        feed_row = Signal(range(self._rows))
        m.d.comb += [feed_valid.eq(ing_valid | rd_valid),
                     feed_data.eq(Mux(rd_valid, rp.data, ing_data)),
                     feed_row.eq(Mux(rd_valid, rd_row_d, ing_row))]
        pass_ = Signal(range(max(passes, 2)))
        prefix = Signal(b)                  # digits of T found so far (low bits of `prefix`)
        s_above = Signal(self._sum_bits)    # weight of the elements known to be > T
        bin_w = [Signal(self._sum_bits, name=f"bin{j}") for j in range(bins)]

        lane_ok = Cat(((feed_row << shift) + i < n) for i in range(p))
        digit = [Signal(r, name=f"digit{i}") for i in range(p)]
        match = Signal(p)
        hi = b
        with m.Switch(pass_):
            for d in range(passes):
                w = min(r, hi)
                lo = hi - w
                with m.Case(d):
                    for i in range(p):
                        v = feed_data[i]
                        m.d.comb += digit[i].eq(v[lo:hi])
                        m.d.comb += match[i].eq(
                            (v[hi:] == prefix[:b - hi]) if hi < b else 1)
                hi = lo
        weight = [Mux(topp, feed_data[i], 1) for i in range(p)]
        with m.If(feed_valid):
            for j in range(bins):
                terms = [Mux(lane_ok[i] & match[i] & (digit[i] == j), weight[i], 0)
                         for i in range(p)]
                m.d.sync += bin_w[j].eq(bin_w[j] + _tree(terms))

        # -- search state
        scan = Signal(range(bins))
        all_ = Signal()
        none = Signal()

        T = Signal(b)
        beat = Signal(range(self._rows + 1))
        m.d.sync += [ing_valid.eq(0), rd_valid.eq(0)]

        # -- emission state
        row = Signal(range(self._rows + 1))    # row of rp.data being emitted
        rem = Signal(p)                        # lanes of that row not yet passed
        kept_w = Signal(self._sum_bits)        # weight kept so far
        ties_done = Signal()
        a_valid = Signal()                     # rp.data holds row `row` (rows remain)
        hold_valid = Signal()
        hold_pos = Signal.like(self.out.p.pos)

        vals = rp.data
        gt = Cat(vals[i] > T for i in range(p))
        eq = Cat(vals[i] == T for i in range(p))
        e_ok = Cat(((row << shift) + i < n) for i in range(p))
        ones = (1 << p) - 1
        cand = Signal(p)
        m.d.comb += cand.eq(rem & e_ok & Mux(all_, ones,
                                             gt | (eq & Mux(ties_done, 0, ones))))
        has, first = lowest_set(m, cand, p, "cand")
        below = Signal(p)   # lanes 0..first
        m.d.comb += below.eq((2 << first) - 1)
        rest = cand & ~below
        tie_w = Mux(topp, T, 1)
        scan_done = ~a_valid                   # no row left
        take_a = Signal()                      # the scanner hands its candidate on
        out_fire = self.out.valid & self.out.ready
        m.d.comb += [self.out.valid.eq(hold_valid & ((a_valid & has) | scan_done)),
                     self.out.p.pos.eq(hold_pos),
                     self.out.p.last.eq(scan_done),
                     take_a.eq(a_valid & has & (~hold_valid | out_fire))]
        m.d.comb += [rp.addr.eq(rd_row), rp.en.eq(0)]

        def start_row():
            with m.If(self.start):
                m.d.sync += [n.eq(self.n), n_rows.eq((self.n + (p - 1)) >> shift),
                             target.eq(self.target), topp.eq(self.topp),
                             thr.eq(self.lsb_threshold), flat.eq(1), beat.eq(0), pass_.eq(0),
                             prefix.eq(0), s_above.eq(0), all_.eq(0), none.eq(0),
                             scan.eq((1 << min(r, b)) - 1)]
                m.d.sync += [bw.eq(0) for bw in bin_w]
                m.next = "INGEST"

        with m.FSM(name="select"):
            with m.State("IDLE"):
                start_row()
            with m.State("INGEST"):
                m.d.comb += self.beats.ready.eq(1)
                with m.If(self.beats.valid):
                    lanes = self.beats.p.data
                    m.d.comb += [wp.addr.eq(beat), wp.data.eq(lanes), wp.en.eq(1)]
                    m.d.sync += [ing_valid.eq(1), ing_data.eq(lanes), ing_row.eq(beat),
                                 beat.eq(beat + 1)]
                    ok = Cat(((beat << shift) + i < n) for i in range(p))
                    with m.If((ok & Cat(lanes[i] >= thr for i in range(p))).any()):
                        m.d.sync += flat.eq(0)
                    with m.If(self.beats.p.last != (beat + 1 == n_rows)):
                        m.d.comb += self.error.eq(1)
                    with m.If(beat + 1 == n_rows):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                # the last beat's weights are being added (feed stage)
                with m.If(~feed_valid):
                    m.next = "SCAN"
            with m.State("PASS"):
                m.d.comb += [rp.en.eq(1)]
                m.d.sync += [rd_valid.eq(1), rd_row_d.eq(rd_row), rd_row.eq(rd_row + 1)]
                with m.If(rd_row + 1 == n_rows):
                    m.next = "DRAIN"
            with m.State("SCAN"):
                acc = s_above + Array(bin_w)[scan]
                width = Array([min(r, b - r * d) for d in range(passes)])[pass_]
                w_next = Array([min(r, b - r * (d + 1)) if d + 1 < passes else r
                                for d in range(passes)])[pass_]
                with m.If(acc >= target):
                    with m.If((pass_ == passes - 1) | (target == 0)):
                        # the last pass covers bit 0: `prefix:scan` is T
                        m.d.sync += [T.eq((prefix << width) | scan), none.eq(target == 0)]
                        m.next = "FOUND"
                    with m.Else():
                        m.d.sync += [prefix.eq(((prefix << r) | scan)[:b]), pass_.eq(pass_ + 1),
                                     rd_row.eq(0), scan.eq((1 << w_next) - 1)]
                        m.d.sync += [bw.eq(0) for bw in bin_w]
                        m.next = "PASS"
                with m.Elif(scan == 0):
                    m.d.sync += all_.eq(1)     # only reachable in pass 0: W(all) < target
                    m.next = "FOUND"
                with m.Else():
                    m.d.sync += [s_above.eq(acc), scan.eq(scan - 1)]
            with m.State("FOUND"):
                m.d.comb += self.found.eq(1)
                with m.If(self.rewind):
                    m.d.comb += [rp.addr.eq(0), rp.en.eq(1)]
                    m.d.sync += [row.eq(0), rem.eq(ones), kept_w.eq(s_above),
                                 ties_done.eq(s_above >= target), a_valid.eq(1),
                                 hold_valid.eq(0)]
                    m.next = "EMIT"
                start_row()
            with m.State("EMIT"):
                m.d.comb += self.found.eq(1)
                with m.If(take_a):
                    m.d.sync += [hold_valid.eq(1), hold_pos.eq((row << shift) + first)]
                    with m.If(~all_ & eq.bit_select(first, 1)):
                        m.d.sync += [kept_w.eq(kept_w + tie_w),
                                     ties_done.eq(kept_w + tie_w >= target)]
                with m.Elif(out_fire):
                    m.d.sync += hold_valid.eq(0)
                # move to the next row once this one has nothing left after this cycle
                row_end = a_valid & (~has | (take_a & (rest == 0)))
                with m.If(take_a):
                    m.d.sync += rem.eq(rem & ~below)
                with m.If(row_end):
                    m.d.comb += [rp.addr.eq(row + 1), rp.en.eq(row + 1 != n_rows)]
                    m.d.sync += [row.eq(row + 1), rem.eq(ones)]
                    with m.If(row + 1 == n_rows):
                        m.d.sync += a_valid.eq(0)
                with m.If(out_fire & scan_done):
                    m.next = "FOUND"

        return m


def _tree(terms):
    """Balanced sum of ``terms``."""
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]
