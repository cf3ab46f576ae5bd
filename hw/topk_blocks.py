"""Sub-blocks of the top-k engine: zero eliminator, row packer, partition, filter, rank select.

All blocks work on rows of ``lanes`` elements (``data.ArrayLayout(shape, lanes)``) with a
``lanes``-bit mask of the lanes that hold an element. Combinational blocks settle in the cycle
their inputs are presented; :class:`Packer` and :class:`SideWriter` register their outputs.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Elaboratable, Module, Shape, ShapeLike, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

__all__ = ["Compactor", "Packer", "SideWriter", "Partition", "TieFilter", "RankSelect",
           "lane_mask"]


def _check_lanes(owner: str, lanes: int, limit: int = 64) -> None:
    if not isinstance(lanes, int) or not 1 <= lanes <= limit:
        raise ValueError(f"{owner}: lanes must be an integer in 1..{limit}, got {lanes!r}")


class Compactor(wiring.Component):
    """Zero eliminator: moves the lanes whose mask bit is set to lanes ``0..count-1``.

    Lane order is kept (a prefix sum over the mask gives each kept lane its output position).
    Combinational. Output lanes at or beyond ``o_count`` are zero.

    Parameters
    ----------
    lanes : int
        Lanes per row, 1..64 (any integer; the engine uses powers of two).
    shape : ShapeLike
        Shape of one lane (a value, or a layout such as value + index).
    """

    def __init__(self, lanes: int, shape: ShapeLike):
        _check_lanes("Compactor", lanes, 128)
        self._lanes, self._shape = lanes, shape
        super().__init__({
            "i_data": In(data.ArrayLayout(shape, lanes)),
            "i_mask": In(lanes),
            "o_data": Out(data.ArrayLayout(shape, lanes)),
            "o_count": Out(range(lanes + 1)),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p = self._lanes
        pos = [Signal(range(p + 1), name=f"pos{i}") for i in range(p + 1)]
        m.d.comb += pos[0].eq(0)
        for i in range(p):
            m.d.comb += pos[i + 1].eq(pos[i] + self.i_mask[i])
        m.d.comb += self.o_count.eq(pos[p])
        for j in range(p):
            for i in range(j, p):
                with m.If(self.i_mask[i] & (pos[i] == j)):
                    m.d.comb += self.o_data[j].eq(self.i_data[i])
        return m


class Packer(wiring.Component):
    """Packs masked lanes, beat after beat, into dense rows of ``lanes`` elements.

    Each cycle with ``i_valid`` appends the masked lanes of ``i_data`` (in lane order) to a
    residue of fewer than ``lanes`` elements; when ``lanes`` or more are held, the first
    ``lanes`` leave as a full row. ``i_flush`` (on a cycle without ``i_valid``) sends the residue
    as a partial row. ``clear`` drops the residue. Outputs are registered: a row shows on
    ``o_data``/``o_count`` with ``o_valid`` high for one cycle, one cycle after its last element
    came in (or after the flush).
    """

    def __init__(self, lanes: int, shape: ShapeLike):
        _check_lanes("Packer", lanes)
        self._lanes, self._shape = lanes, shape
        super().__init__({
            "i_data": In(data.ArrayLayout(shape, lanes)),
            "i_mask": In(lanes),
            "i_valid": In(1),
            "i_flush": In(1),
            "clear": In(1),
            "o_data": Out(data.ArrayLayout(shape, lanes)),
            "o_count": Out(range(lanes + 1)),
            "o_valid": Out(1),
        })

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p = self._lanes
        m.submodules.compactor = comp = Compactor(p, self._shape)
        m.d.comb += [comp.i_data.eq(self.i_data), comp.i_mask.eq(self.i_mask)]

        residue = Signal(data.ArrayLayout(self._shape, p))
        held = Signal(range(p + 1))
        merged = Signal(data.ArrayLayout(self._shape, 2 * p - 1))
        for j in range(2 * p - 1):
            with m.Switch(held):
                for r in range(p):
                    with m.Case(r):
                        if j < r:
                            m.d.comb += merged[j].eq(residue[j])
                        elif j - r < p:
                            m.d.comb += merged[j].eq(comp.o_data[j - r])
        total = held + comp.o_count
        lane_bits = Shape.cast(self._shape).width
        low = merged.as_value()[:p * lane_bits]
        high = Cat(merged.as_value()[p * lane_bits:], Const(0, lane_bits))

        m.d.sync += self.o_valid.eq(0)
        with m.If(self.clear):
            m.d.sync += held.eq(0)
        with m.Elif(self.i_valid):
            with m.If(total >= p):
                m.d.sync += [self.o_data.eq(low), self.o_count.eq(p), self.o_valid.eq(1),
                             residue.eq(high), held.eq(total - p)]
            with m.Else():
                m.d.sync += [residue.eq(low), held.eq(total)]
        with m.Elif(self.i_flush & (held != 0)):
            m.d.sync += [self.o_data.eq(residue), self.o_count.eq(held), self.o_valid.eq(1),
                         held.eq(0)]
        return m


class SideWriter(wiring.Component):
    """A :class:`Packer` writing dense rows to a memory, with a sample of what it wrote.

    Rows go to addresses ``0, 1, 2...`` through ``w_addr``/``w_data``/``w_en`` (connect to a
    write port); ``rows`` and ``count`` are the rows and elements written since ``clear``.
    ``first``/``first_count`` hold the first row written (all elements when ``count <=
    lanes``). When ``samples > 0``, ``sample`` holds lane 0 of rows ``0, s, 2s, ...`` with the
    stride ``s`` doubling (and every other sample dropped) whenever the ``samples`` slots fill
    up, so ``n_sample`` (``samples/2..samples`` once that many rows exist) evenly spaced
    elements represent the whole side: the pivot source of the next quick-select round.
    """

    def __init__(self, lanes: int, shape: ShapeLike, depth: int, samples: int = 0):
        _check_lanes("SideWriter", lanes)
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"SideWriter: depth must be a positive integer, got {depth!r}")
        if samples and (samples < 2 or samples & (samples - 1)):
            raise ValueError(f"SideWriter: samples must be 0 or a power of two >= 2, "
                             f"got {samples!r}")
        self._lanes, self._shape, self._depth, self._samples = lanes, shape, depth, samples
        ports = {
            "i_data": In(data.ArrayLayout(shape, lanes)),
            "i_mask": In(lanes),
            "i_valid": In(1),
            "i_flush": In(1),
            "clear": In(1),
            "w_addr": Out(range(depth)),
            "w_data": Out(data.ArrayLayout(shape, lanes)),
            "w_en": Out(1),
            "rows": Out(range(depth + 1)),
            "count": Out(range(lanes * depth + 1)),
            "first": Out(data.ArrayLayout(shape, lanes)),
            "first_count": Out(range(lanes + 1)),
        }
        if samples:
            ports["sample"] = Out(data.ArrayLayout(shape, samples))
            ports["n_sample"] = Out(range(samples + 1))
        super().__init__(ports)

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        m.submodules.packer = packer = Packer(self._lanes, self._shape)
        m.d.comb += [
            packer.i_data.eq(self.i_data), packer.i_mask.eq(self.i_mask),
            packer.i_valid.eq(self.i_valid), packer.i_flush.eq(self.i_flush),
            packer.clear.eq(self.clear),
            self.w_addr.eq(self.rows), self.w_data.eq(packer.o_data),
            self.w_en.eq(packer.o_valid),
        ]
        s = self._samples
        if s:
            stride_mask = Signal(range(self._depth + 1))
        with m.If(self.clear):
            m.d.sync += [self.rows.eq(0), self.count.eq(0), self.first_count.eq(0)]
            if s:
                m.d.sync += [self.n_sample.eq(0), stride_mask.eq(0)]
        with m.Elif(packer.o_valid):
            m.d.sync += [self.rows.eq(self.rows + 1), self.count.eq(self.count + packer.o_count)]
            with m.If(self.rows == 0):
                m.d.sync += [self.first.eq(packer.o_data), self.first_count.eq(packer.o_count)]
            if s:
                pick = packer.o_data[0]
                with m.If((self.rows & stride_mask) == 0):
                    with m.If(self.n_sample == s):
                        m.d.sync += [self.sample[j].eq(self.sample[2 * j]) for j in range(s // 2)]
                        m.d.sync += [self.sample[s // 2].eq(pick), self.n_sample.eq(s // 2 + 1),
                                     stride_mask.eq((stride_mask << 1) | 1)]
                    with m.Else():
                        for j in range(s):
                            with m.If(self.n_sample == j):
                                m.d.sync += self.sample[j].eq(pick)
                        m.d.sync += self.n_sample.eq(self.n_sample + 1)
        return m


class Partition(wiring.Component):
    """P lanes of comparators against ``pivots`` descending pivots: bucket masks, tie counts.

    With pivots ``p0 >= p1 >= ...`` a masked lane goes to the first class it matches in the
    order ``v > p0`` (bucket 0), ``v == p0`` (tie 0), ``v > p1`` (bucket 1), ``v == p1``
    (tie 1), ..., else bucket ``pivots``. So buckets and ties follow value order, from the
    largest. ``bucket[b]`` is the lane mask of bucket ``b``; ``eq_count[i]`` counts ties with
    pivot ``i`` (tied lanes are in no bucket). Combinational.
    """

    def __init__(self, lanes: int, shape: ShapeLike, pivots: int = 1):
        _check_lanes("Partition", lanes)
        if not isinstance(pivots, int) or not 1 <= pivots <= 7:
            raise ValueError(f"Partition: pivots must be an integer in 1..7, got {pivots!r}")
        super().__init__({
            "i_data": In(data.ArrayLayout(shape, lanes)),
            "i_mask": In(lanes),
            "pivots": In(data.ArrayLayout(shape, pivots)),
            "bucket": Out(data.ArrayLayout(unsigned(lanes), pivots + 1)),
            "eq_count": Out(data.ArrayLayout(unsigned(bits_for(lanes)), pivots)),
        })
        self._lanes, self._pivots = lanes, pivots

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p, k = self._lanes, self._pivots
        ties = [Signal(p, name=f"tie{t}") for t in range(k)]
        for i in range(p):
            v = self.i_data[i]
            rest = self.i_mask[i]
            for t in range(k):
                pivot = self.pivots[t]
                m.d.comb += [self.bucket[t][i].eq(rest & (v > pivot)),
                             ties[t][i].eq(rest & (v == pivot))]
                rest = rest & (v < pivot)
            m.d.comb += self.bucket[k][i].eq(rest)
        for t in range(k):
            m.d.comb += self.eq_count[t].eq(sum(ties[t][i] for i in range(p)))
        return m


class TieFilter(wiring.Component):
    """Keep mask of the final pass: ``v > threshold``, plus ties while the tie budget lasts.

    A lane equal to ``threshold`` is kept when fewer than ``need`` ties came before it in
    index order (``ties_before`` from earlier rows, plus the equal lanes below it in this
    row). ``keep_all`` keeps every masked lane. ``ties`` counts this row's equal lanes.
    Combinational.
    """

    def __init__(self, lanes: int, shape: ShapeLike, max_n: int):
        _check_lanes("TieFilter", lanes)
        super().__init__({
            "i_data": In(data.ArrayLayout(shape, lanes)),
            "i_mask": In(lanes),
            "threshold": In(shape),
            "need": In(range(max_n + 1)),
            "ties_before": In(range(max_n + 1)),
            "keep_all": In(1),
            "keep": Out(lanes),
            "ties": Out(range(lanes + 1)),
        })
        self._lanes, self._max_n = lanes, max_n

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p = self._lanes
        seen = self.ties_before
        for i in range(p):
            v = self.i_data[i]
            is_tie = Signal(name=f"tie{i}")
            m.d.comb += is_tie.eq(self.i_mask[i] & (v == self.threshold))
            m.d.comb += self.keep[i].eq(self.i_mask[i] & (
                self.keep_all | (v > self.threshold) | (is_tie & (seen < self.need))))
            nxt = Signal(range(self._max_n + p + 1), name=f"seen{i + 1}")
            m.d.comb += nxt.eq(seen + is_tie)
            seen = nxt
        m.d.comb += self.ties.eq(seen - self.ties_before)
        return m


class RankSelect(wiring.Component):
    """The ``rank``-th largest masked lane (1-based, duplicates counted) and how many exceed it.

    For each lane it counts the masked lanes strictly greater and greater-or-equal; the lane
    with ``greater < rank <= greater_equal`` holds the answer (lanes^2 comparators).
    ``found`` is low when ``rank`` is 0 or above the number of masked lanes. Combinational.
    """

    def __init__(self, lanes: int, shape: ShapeLike):
        _check_lanes("RankSelect", lanes)
        super().__init__({
            "i_data": In(data.ArrayLayout(shape, lanes)),
            "i_mask": In(lanes),
            "rank": In(range(lanes + 1)),
            "value": Out(shape),
            "greater": Out(range(lanes + 1)),
            "found": Out(1),
        })
        self._lanes = lanes

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p = self._lanes
        hits = []
        for i in range(p):
            gt = [self.i_mask[j] & (self.i_data[j] > self.i_data[i]) for j in range(p)]
            eq = [self.i_mask[j] & (self.i_data[j] == self.i_data[i]) for j in range(p)]
            n_gt = Signal(range(p + 1), name=f"gt{i}")
            n_ge = Signal(range(p + 1), name=f"ge{i}")
            m.d.comb += [n_gt.eq(sum(gt)), n_ge.eq(n_gt + sum(eq))]
            hit = Signal(name=f"hit{i}")
            m.d.comb += hit.eq(self.i_mask[i] & (n_gt < self.rank) & (self.rank <= n_ge))
            hits.append((hit, n_gt))
        for i, (hit, n_gt) in reversed(list(enumerate(hits))):
            with m.If(hit):
                m.d.comb += [self.value.eq(self.i_data[i]), self.greater.eq(n_gt),
                             self.found.eq(1)]
        return m


def lane_mask(count, lanes: int):
    """``lanes``-bit mask with lanes ``0..count-1`` set (``count`` may exceed ``lanes``)."""
    return Cat(*[count > i for i in range(lanes)])
