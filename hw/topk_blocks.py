"""Sub-blocks of the top-k engine: digit histogram and bin select (the radix select), zero
eliminator, row packer, tie filter, and the slotted row buffers the stages share; partition
and rank select (comparator blocks of the earlier quick-select engine, kept as library blocks).

All blocks work on rows of ``lanes`` elements (``data.ArrayLayout(shape, lanes)``) with a
``lanes``-bit mask of the lanes that hold an element. Combinational blocks settle in the cycle
their inputs are presented; :class:`Packer` and :class:`SideWriter` register their outputs.
"""

from __future__ import annotations

from amaranth.hdl import (
    Array,
    Cat,
    Const,
    Elaboratable,
    Module,
    Mux,
    Shape,
    ShapeLike,
    Signal,
    Value,
    signed,
    unsigned,
)
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from .params import check_int

__all__ = ["Compactor", "Packer", "SideLog", "SideWriter", "Partition", "TieFilter", "RankSelect",
           "DigitHistogram", "BinSelect", "digit_plan", "sort_key", "suffix_sums",
           "lane_mask", "last_row", "block_counts", "buffer_memory", "buffer_addr_width",
           "slot_address",
           "LUTRAM_MAX_ROWS", "LUTRAM_MAX_BITS", "PACKET_SLOTS", "SCRATCH_SLOTS", "DIGIT_BITS"]

#: Packet buffers of the engine: one each being ingested, scanned, finished and emitted.
PACKET_SLOTS = 4
#: Candidate buffers: one written by Select's scan while its finisher reads the other.
SCRATCH_SLOTS = 2
#: Bits per radix digit: histograms have ``2**DIGIT_BITS`` bins.
DIGIT_BITS = 6

#: Buffer memories of at most this many rows (all slots) and bits carry
#: ``ram_style = "distributed"`` (LUT RAM); others are left to the synthesiser (block RAM on
#: ECP5). The bit limit is about one DP16KD's capacity: wider memories would cost more LUTs
#: than the block RAMs they save.
LUTRAM_MAX_ROWS = 128
LUTRAM_MAX_BITS = 24 * 1024


def buffer_memory(row: ShapeLike, rows: int, slots: int) -> Memory:
    """A memory of ``slots`` row buffers of ``rows`` rows each, slot ``i`` at rows
    ``i*rows ..`` (address with :func:`slot_address`).

    One write and one read port serve all slots: while one stage writes a slot, the next reads
    another. A small, shallow buffer is asked for in LUT RAM: in 512-row block RAMs it would
    leave each block over 80% empty, and routing the row's bits into the few block-RAM columns
    congests (the pruning unit's engine, 32 rows per slot).
    """
    depth = slots * rows
    small = depth <= LUTRAM_MAX_ROWS and depth * Shape.cast(row).width <= LUTRAM_MAX_BITS
    attrs = {"ram_style": "distributed"} if small else None
    return Memory(shape=row, depth=depth, init=[], attrs=attrs)


def buffer_addr_width(rows: int, slots: int) -> int:
    """Address width of a :func:`buffer_memory` (for the port signatures of its users)."""
    return ceil_log2(slots * rows)


def slot_address(slot: Value, row: Value, rows: int, slots: int) -> Value:
    """Address of row ``row`` of buffer ``slot`` in a :func:`buffer_memory`."""
    if rows & (rows - 1) == 0:      # a power of two: the slot is the high address bits
        return Cat(Value.cast(row)[:exact_bits(rows)], slot)
    bases = Array(Const(i * rows, range(slots * rows)) for i in range(slots))
    return bases[slot] + row


def digit_plan(width: int, digit_bits: int = DIGIT_BITS) -> list[tuple[int, int]]:
    """Radix digits of a ``width``-bit key from the most significant: ``(lo, bits)`` each,
    digit ``j`` being key bits ``lo .. lo+bits-1``; all ``digit_bits`` wide but the last."""
    digits, hi = [], width
    while hi > 0:
        lo = max(hi - digit_bits, 0)
        digits.append((lo, hi - lo))
        hi = lo
    return digits


def sort_key(value: Value, width: int, is_signed: bool) -> Value:
    """Unsigned ``width``-bit key ordered as ``value`` (the sign bit flipped when signed)."""
    bits = Value.cast(value).as_unsigned()[:width]
    return bits ^ (1 << (width - 1)) if is_signed else bits


def suffix_sums(m: Module, values: list[Value], shape: ShapeLike, name: str) -> list[Value]:
    """``sums[i]`` = ``values[i] + .. + values[-1]`` (``sums[len]`` = 0), in ``log2(n)`` adder
    levels (a Kogge-Stone scan from the top)."""
    n = len(values)
    level = [Signal(shape, name=f"{name}_l0_{i}") for i in range(n)]
    m.d.comb += [level[i].eq(values[i]) for i in range(n)]
    step, depth = 1, 0
    while step < n:
        depth += 1
        nxt = [Signal(shape, name=f"{name}_l{depth}_{i}") for i in range(n)]
        m.d.comb += [nxt[i].eq(level[i] + level[i + step] if i + step < n else level[i])
                     for i in range(n)]
        level, step = nxt, step * 2
    return [*level, Const(0, shape)]


def _check_lanes(owner: str, lanes: int, limit: int = 64) -> None:
    check_int("lanes", lanes, 1, limit, owner=owner)


def _first_reaching(m: Module, suffix: list[Value], target: Value, name: str) -> list[Signal]:
    """Registered one-hot over descending suffix counts: entry ``i`` is set when
    ``suffix[i] >= target`` and ``suffix[i + 1] < target`` (the last entry has no successor)."""
    n = len(suffix)
    ge = [Signal(name=f"{name}_ge{i}") for i in range(n)]
    m.d.comb += [ge[i].eq(suffix[i] >= target) for i in range(n)]
    hit = [Signal(name=f"{name}_hit{i}") for i in range(n)]
    m.d.sync += [hit[i].eq(ge[i] & ~(ge[i + 1] if i + 1 < n else 0)) for i in range(n)]
    return hit


def prefix_counts(m: Module, bits: list[Value], name: str) -> list[Value]:
    """``counts[i]`` = set bits among ``bits[0..i-1]`` (``counts[len]`` = all of them).

    Within each block of four lanes the counts are logic of at most four inputs (one LUT4
    level on ECP5, no carry chain); the blocks' totals are scanned Kogge-Stone style
    (``log2(n/4)`` adder levels) and added to them: a row's running counts do not limit the
    clock as the lanes grow.
    """
    n = len(bits)
    bits = [Value.cast(b) for b in bits]
    blocks = [bits[j:j + 4] for j in range(0, n, 4)]
    # Before each block: a Kogge-Stone scan of the block totals.
    totals = [popcount(b) for b in blocks]
    level = [Signal(range(4 * j + 5), name=f"{name}_blk_l0_{j}") for j in range(len(blocks))]
    m.d.comb += [level[j].eq(totals[j]) for j in range(len(blocks))]
    step, depth = 1, 0
    while step < len(blocks):
        depth += 1
        nxt = [Signal(range(4 * j + 5), name=f"{name}_blk_l{depth}_{j}")
               for j in range(len(blocks))]
        m.d.comb += [nxt[j].eq(level[j] + level[j - step] if j >= step else level[j])
                     for j in range(len(blocks))]
        level, step = nxt, step * 2
    counts = [Const(0, range(n + 1))]
    for j, block in enumerate(blocks):
        for i in range(len(block)):
            local = popcount(block[:i + 1])
            total = Signal(range(n + 1), name=f"{name}_{4 * j + i + 1}")
            m.d.comb += total.eq(local if j == 0 else level[j - 1] + local)
            counts.append(total)
    return counts


class Compactor(wiring.Component):
    """Zero eliminator: moves the lanes whose mask bit is set to lanes ``0..count-1``.

    Lane order is kept. Each kept lane moves down by the number of unmasked lanes below it;
    the move is done in ``log2(lanes)`` stages of 2:1 multiplexers, stage ``b`` moving by
    ``2**b`` (least significant first, which never lands two lanes on one place), so the
    network costs ``lanes * log2(lanes)`` multiplexers rather than ``lanes**2``.
    Combinational. Output lanes at or beyond ``o_count`` are zero.

    Parameters
    ----------
    lanes : int
        Lanes per row, 1..128 (any integer; the engine uses powers of two).
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
        # Lane i moves down by the number of unmasked lanes below it.
        gaps = prefix_counts(m, [~self.i_mask[i] for i in range(p)], "gaps")
        m.d.comb += self.o_count.eq(p - gaps[p])

        elem, valid = compact_lanes(m, [self.i_data[i] for i in range(p)],
                                    [self.i_mask[i] for i in range(p)],
                                    [gaps[i] for i in range(p)],
                                    Shape.cast(self._shape).width)
        for j in range(p):
            m.d.comb += self.o_data[j].eq(Mux(valid[j], elem[j], 0))
        return m


def compact_lanes(m: Module, elems: list, valid: list, moves: list,
                  width: int) -> tuple[list[Value], list[Value]]:
    """The network of :class:`Compactor`: lane ``i`` (if ``valid[i]``) moves down by
    ``moves[i]`` lanes, in ``log2(lanes)`` stages of 2:1 multiplexers (stage ``b`` moves by
    ``2**b``). Returns the lanes' elements and valid bits after it."""
    p = len(elems)
    stages = bits_for(p - 1) if p > 1 else 0
    # Per stage, each lane holds (valid, remaining move, element).
    move = list(moves)
    elem = [Value.cast(e) for e in elems]
    for b in range(stages):
        step = 1 << b
        n_valid = [Signal(name=f"s{b}_valid{i}") for i in range(p)]
        n_move = [Signal(range(p + 1), name=f"s{b}_move{i}") for i in range(p)]
        n_elem = [Signal(width, name=f"s{b}_elem{i}") for i in range(p)]
        for i in range(p):
            # A lane stays, or takes the one arriving from `step` above (never both).
            stay = valid[i] & ~move[i][b]
            if i + step < p:
                arrive = valid[i + step] & move[i + step][b]
                m.d.comb += [n_valid[i].eq(stay | arrive),
                             n_move[i].eq(Mux(stay, move[i], move[i + step])),
                             n_elem[i].eq(Mux(stay, elem[i], elem[i + step]))]
            else:
                m.d.comb += [n_valid[i].eq(stay), n_move[i].eq(move[i]),
                             n_elem[i].eq(elem[i])]
        valid, move, elem = n_valid, n_move, n_elem
    return elem, valid


class Packer(wiring.Component):
    """Packs masked lanes, beat after beat, into dense rows of ``lanes`` elements.

    Each cycle with ``i_valid`` appends the masked lanes of ``i_data`` (in lane order) to a
    residue of fewer than ``lanes`` elements; when ``lanes`` or more are held, the first
    ``lanes`` leave as a full row. ``i_flush`` (on a cycle without ``i_valid``) sends the residue
    as a partial row. ``clear`` drops the residue and anything in flight. Three pipeline
    stages (each lane's move: a prefix count of the empty lanes below it; the zero
    eliminator's multiplexers; rotation into the accumulator), outputs registered: a row shows
    on ``o_data``/``o_count`` with ``o_valid`` high for one cycle, three cycles after its last
    element came in (or after the flush). Lanes past ``o_count`` of a flushed row are zero.
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
        width = Shape.cast(self._shape).width

        # Stage 0: the row, its mask and each lane's move (empty lanes below it) registered.
        gaps = prefix_counts(m, [~self.i_mask[i] for i in range(p)], "gaps")
        s0_data = Signal(data.ArrayLayout(self._shape, p))
        s0_mask, s0_count = Signal(p), Signal(range(p + 1))
        s0_moves = [Signal(range(p + 1), name=f"s0_move{i}") for i in range(p)]
        s0_valid, s0_flush = Signal(), Signal()
        m.d.sync += [s0_data.eq(self.i_data), s0_mask.eq(self.i_mask),
                     s0_count.eq(p - gaps[p]),
                     s0_valid.eq(self.i_valid & ~self.clear),
                     s0_flush.eq(self.i_flush & ~self.i_valid & ~self.clear)]
        m.d.sync += [s0_moves[i].eq(gaps[i]) for i in range(p)]

        # Stage 1: the compacted row (or a flush) registered.
        elem, valid = compact_lanes(m, [s0_data[i] for i in range(p)],
                                    [s0_mask[i] for i in range(p)], s0_moves, width)
        row = Signal(data.ArrayLayout(self._shape, p))
        row_count = Signal(range(p + 1))
        row_valid, row_flush = Signal(), Signal()
        m.d.sync += [row[j].eq(Mux(valid[j], elem[j], 0)) for j in range(p)]
        m.d.sync += [row_count.eq(s0_count), row_valid.eq(s0_valid & ~self.clear),
                     row_flush.eq(s0_flush & ~self.clear)]

        # Stage 2. The residue sits in lanes 0..held-1 of `acc`. The compacted row is rotated
        # up by `held` lanes (log2(lanes) stages), so its element i lands on lane
        # (held + i) mod lanes: lanes held.. complete the current row, lanes below
        # (total - lanes) wrap into the next one.
        acc = Signal(data.ArrayLayout(self._shape, p))
        held = Signal(range(p))
        rot = [Value.cast(row[i]) for i in range(p)]
        step, b = 1, 0
        while step < p:
            nxt = [Signal(width, name=f"rot{b}_{j}") for j in range(p)]
            m.d.comb += [nxt[j].eq(Mux(held[b], rot[(j - step) % p], rot[j]))
                         for j in range(p)]
            rot, step, b = nxt, step * 2, b + 1
        total = Signal(range(2 * p))
        m.d.comb += total.eq(held + row_count)
        full = total >= p

        m.d.sync += self.o_valid.eq(0)
        with m.If(self.clear):
            m.d.sync += held.eq(0)
        with m.Elif(row_valid):
            for j in range(p):
                with m.If(((j >= held) & (j < total)) | (j + p < total)):
                    m.d.sync += acc[j].eq(rot[j])
            with m.If(full):
                m.d.sync += [self.o_data[j].eq(Mux(j < held, Value.cast(acc[j]), rot[j]))
                             for j in range(p)]
                m.d.sync += [self.o_count.eq(p), self.o_valid.eq(1), held.eq(total - p)]
            with m.Else():
                m.d.sync += held.eq(total)
        with m.Elif(row_flush & (held != 0)):
            m.d.sync += [self.o_data[j].eq(Mux(j < held, Value.cast(acc[j]), 0))
                         for j in range(p)]
            m.d.sync += [self.o_count.eq(held), self.o_valid.eq(1), held.eq(0)]
        return m


class SideLog(wiring.Component):
    """Bookkeeping of the rows a :class:`Packer` writes to one buffer, and a sample of them.

    Each cycle with ``i_valid`` takes one row (``i_data``, ``i_count`` elements) and sends it to
    addresses ``0, 1, 2...`` through ``w_addr``/``w_data``/``w_en`` (connect to a write port);
    ``rows`` and ``count`` are the rows and elements written since ``clear``. When
    ``samples > 0``, ``sample`` holds lane 0 of rows ``0, s, 2s, ...`` with the stride ``s``
    doubling (and every other sample dropped) whenever the ``samples`` slots fill up, so
    ``n_sample`` (``samples/2..samples`` once that many rows exist) evenly spaced elements
    represent the whole side: the pivot source of the next quick-select round. Several logs
    may share one packer (one per buffer it fills in turn).
    """

    def __init__(self, lanes: int, shape: ShapeLike, depth: int, samples: int = 0):
        _check_lanes("SideLog", lanes)
        check_int("depth", depth, 1, 1 << 20, owner="SideLog")
        if samples != 0:
            check_int("samples", samples, 2, 1 << 10, owner="SideLog", power_of_two=True)
        self._lanes, self._shape, self._depth, self._samples = lanes, shape, depth, samples
        ports = {
            "i_data": In(data.ArrayLayout(shape, lanes)),
            "i_count": In(range(lanes + 1)),
            "i_valid": In(1),
            "clear": In(1),
            "w_addr": Out(range(depth)),
            "w_data": Out(data.ArrayLayout(shape, lanes)),
            "w_en": Out(1),
            "rows": Out(range(depth + 1)),
            "count": Out(range(lanes * depth + 1)),
        }
        if samples:
            ports["sample"] = Out(data.ArrayLayout(shape, samples))
            ports["n_sample"] = Out(range(samples + 1))
        super().__init__(ports)

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        m.d.comb += [self.w_addr.eq(self.rows), self.w_data.eq(self.i_data),
                     self.w_en.eq(self.i_valid)]
        s = self._samples
        if s:
            stride_mask = Signal(range(self._depth + 1))
        with m.If(self.clear):
            m.d.sync += [self.rows.eq(0), self.count.eq(0)]
            if s:
                m.d.sync += [self.n_sample.eq(0), stride_mask.eq(0)]
        with m.Elif(self.i_valid):
            m.d.sync += [self.rows.eq(self.rows + 1), self.count.eq(self.count + self.i_count)]
            if s:
                pick = self.i_data[0]
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


class SideWriter(wiring.Component):
    """A :class:`Packer` feeding a :class:`SideLog`: masked lanes in, dense rows to a memory.

    Inputs as :class:`Packer` (``i_data``, ``i_mask``, ``i_valid``, ``i_flush``; ``clear``
    also clears the log); outputs as :class:`SideLog`. A row reaches the write port three cycles
    after its last element came in.
    """

    def __init__(self, lanes: int, shape: ShapeLike, depth: int, samples: int = 0):
        self._log = SideLog(lanes, shape, depth, samples)  # validates the parameters
        self._lanes, self._shape = lanes, shape
        ports = {
            "i_data": In(data.ArrayLayout(shape, lanes)),
            "i_mask": In(lanes),
            "i_valid": In(1),
            "i_flush": In(1),
            "clear": In(1),
        }
        ports.update({name: member for name, member in self._log.signature.members.items()
                      if member.flow == wiring.Out})
        super().__init__(ports)

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        m.submodules.packer = packer = Packer(self._lanes, self._shape)
        m.submodules.log = log = self._log
        m.d.comb += [
            packer.i_data.eq(self.i_data), packer.i_mask.eq(self.i_mask),
            packer.i_valid.eq(self.i_valid), packer.i_flush.eq(self.i_flush),
            packer.clear.eq(self.clear),
            log.i_data.eq(packer.o_data), log.i_count.eq(packer.o_count),
            log.i_valid.eq(packer.o_valid), log.clear.eq(self.clear),
        ]
        for name, member in log.signature.members.items():
            if member.flow == wiring.Out:
                m.d.comb += getattr(self, name).eq(getattr(log, name))
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
        check_int("pivots", pivots, 1, 7, owner="Partition")
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


def block_counts(bits: list[Value]) -> tuple[list[Value], list[Value]]:
    """Set bits in blocks of four lanes: ``local[i]``, those below lane ``i`` in its block
    (0..3), and ``totals[j]``, those of block ``j`` (0..4); logic of at most four inputs each
    (one LUT4 level), so a row's comparisons and these counts fit in one register stage."""
    bits = [Value.cast(b) for b in bits]
    local = [popcount(bits[i - i % 4:i]) if i % 4 else Const(0, 2) for i in range(len(bits))]
    totals = [popcount(bits[j:j + 4]) for j in range(0, len(bits), 4)]
    return local, totals


class TieFilter(wiring.Component):
    """Keep mask of the final pass from the lanes' comparisons with the threshold.

    ``i_above`` marks the lanes to keep in any case (greater than the threshold, or every lane
    when all are kept), ``i_tie`` the lanes equal to it, with their :func:`block_counts`
    (``i_local``, ``i_block``: ties below each lane in its block of four, ties per block). A
    tie is kept while fewer than ``budget`` ties lie below it in this row: ``budget`` is the
    ties still to keep after the earlier rows, clamped to ``lanes``. ``ties`` counts this
    row's ties. Combinational: the ties before each block (a scan of ``lanes/4`` block
    totals), less than the budget by more than the lane's local count. The comparisons with
    the threshold and the block counts are the caller's, registered before this block.
    """

    def __init__(self, lanes: int):
        _check_lanes("TieFilter", lanes)
        blocks = -(-lanes // 4)
        super().__init__({
            "i_above": In(lanes),
            "i_tie": In(lanes),
            "i_local": In(data.ArrayLayout(range(4), lanes)),
            "i_block": In(data.ArrayLayout(range(5), blocks)),
            "budget": In(range(lanes + 1)),
            "keep": Out(lanes),
            "ties": Out(range(lanes + 1)),
        })
        self._lanes, self._blocks = lanes, blocks

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p, nb = self._lanes, self._blocks
        # Ties before each block: Kogge-Stone over the block totals.
        level = [Signal(range(4 * j + 5), name=f"blk_l0_{j}") for j in range(nb)]
        m.d.comb += [level[j].eq(self.i_block[j]) for j in range(nb)]
        step, depth = 1, 0
        while step < nb:
            depth += 1
            nxt = [Signal(range(4 * j + 5), name=f"blk_l{depth}_{j}") for j in range(nb)]
            m.d.comb += [nxt[j].eq(level[j] + level[j - step] if j >= step else level[j])
                         for j in range(nb)]
            level, step = nxt, step * 2
        # The budget left for each block (negative: none).
        room = [Signal(signed(bits_for(p) + 2), name=f"room{j}") for j in range(nb)]
        m.d.comb += [room[j].eq(self.budget - (level[j - 1] if j else 0)) for j in range(nb)]
        for i in range(p):
            m.d.comb += self.keep[i].eq(self.i_above[i] | (
                self.i_tie[i] & (self.i_local[i] < room[i // 4])))
        m.d.comb += self.ties.eq(level[nb - 1])
        return m


class RankSelect(wiring.Component):
    """The ``rank[t]``-th largest masked lane (1-based, duplicates counted), for ``ranks`` ranks.

    For each lane it counts the masked lanes strictly greater and greater-or-equal; the lane
    with ``greater < rank <= greater_equal`` holds the answer. The counts are shared by all
    ranks, and each pair of lanes is compared once (``lanes*(lanes-1)/2`` comparators, one
    ``>`` and one ``==`` each). ``value[t]`` is the answer, ``greater[t]`` how many masked
    lanes exceed it; ``found[t]`` is low when ``rank[t]`` is 0 or above the number of masked
    lanes. Combinational.
    """

    def __init__(self, lanes: int, shape: ShapeLike, ranks: int = 1):
        _check_lanes("RankSelect", lanes)
        check_int("ranks", ranks, 1, 7, owner="RankSelect")
        super().__init__({
            "i_data": In(data.ArrayLayout(shape, lanes)),
            "i_mask": In(lanes),
            "rank": In(data.ArrayLayout(range(lanes + 1), ranks)),
            "value": Out(data.ArrayLayout(shape, ranks)),
            "greater": Out(data.ArrayLayout(range(lanes + 1), ranks)),
            "found": Out(ranks),
        })
        self._lanes, self._ranks = lanes, ranks

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p, d, mask = self._lanes, self.i_data, self.i_mask
        # above[i][j]: lane j holds a larger value than lane i; same[i][j]: an equal one.
        above = [[None] * p for _ in range(p)]
        same = [[None] * p for _ in range(p)]
        for i in range(p):
            for j in range(i + 1, p):
                gt, eq = Signal(name=f"gt{i}_{j}"), Signal(name=f"eq{i}_{j}")
                m.d.comb += [gt.eq(d[i] > d[j]), eq.eq(d[i] == d[j])]
                above[j][i], same[j][i] = gt, eq
                above[i][j], same[i][j] = ~(gt | eq), eq
        counts = []
        for i in range(p):
            others = [j for j in range(p) if j != i]
            n_gt = Signal(range(p + 1), name=f"n_gt{i}")
            n_ge = Signal(range(p + 1), name=f"n_ge{i}")
            m.d.comb += [
                n_gt.eq(sum(mask[j] & above[i][j] for j in others) if others else 0),
                n_ge.eq(n_gt + 1 + (sum(mask[j] & same[i][j] for j in others) if others else 0)),
            ]
            counts.append((n_gt, n_ge))
        for t in range(self._ranks):
            rank = self.rank[t]
            hits = [Signal(name=f"hit{t}_{i}") for i in range(p)]
            m.d.comb += [hits[i].eq(mask[i] & (counts[i][0] < rank) & (rank <= counts[i][1]))
                         for i in range(p)]
            # Every hit lane holds the same value and count, so OR-ing the hit lanes selects
            # it without a priority chain.
            m.d.comb += [
                self.value[t].eq(_or_all(Mux(hits[i], Value.cast(d[i]), 0) for i in range(p))),
                self.greater[t].eq(_or_all(Mux(hits[i], counts[i][0], 0) for i in range(p))),
                self.found[t].eq(Cat(*hits).any()),
            ]
        return m


def _or_all(values) -> Value:
    """Bitwise OR of ``values`` as a balanced tree."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] | values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def lane_mask(count, lanes: int):
    """``lanes``-bit mask with lanes ``0..count-1`` set (``count`` may exceed ``lanes``)."""
    return Cat(*[count > i for i in range(lanes)])


def last_row(count, lanes: int) -> tuple[Value, Value]:
    """Row index and lane mask of the last of ``count`` (>= 1) elements stored densely in
    rows of ``lanes`` (a power of two). The mask comes from the low bits of ``count`` alone:
    no comparison as wide as ``count``."""
    bits = exact_bits(lanes)
    count = Value.cast(count)
    row = (count - 1)[bits:]
    low = (count[:bits] - 1)[:bits]           # lane of the last element
    return row, Cat(Const(1, 1), *[low >= i for i in range(1, lanes)])


class DigitHistogram(wiring.Component):
    """Counts the masked lanes by digit, ``lanes`` per cycle, as suffix counts.

    Bins are grouped by eight (:func:`bin_groups`; one group below 8 bins): bin ``b`` is
    position ``b mod 8`` of group ``b // 8``. Each cycle with ``i_valid`` adds the masked
    lanes of ``i_digit`` to ``group_ge[g]`` (lanes whose digit's group is ``g`` or above) and
    to ``count_ge[b]`` (lanes whose digit is in ``b``'s group and ``>= b``). So the suffix
    sums that :class:`BinSelect` needs are counters here, not adders there, for the cost of
    plain counts: each lane decodes its digit into ``>=`` comparisons rather than a one-hot.
    ``i_first`` marks the first beat of a new histogram: the counts restart with it, so the
    previous counts stay readable until that beat arrives. Two pipeline stages (decode and
    popcounts of groups of four lanes, registered; their sum added into the counters): a beat
    is in the counts two cycles after it is presented. Present registered inputs: the decode
    fills the first stage. Without any beat since reset, the counts are zero.

    Parameters
    ----------
    lanes : int
        Lanes per beat, 1..64.
    bits : int
        Digit width, 1..8: ``2**bits`` bins.
    max_count : int
        Largest count (elements per histogram).
    """

    def __init__(self, lanes: int, bits: int, max_count: int):
        _check_lanes("DigitHistogram", lanes)
        check_int("bits", bits, 1, 8, owner="DigitHistogram")
        check_int("max_count", max_count, 1, 1 << 20, owner="DigitHistogram")
        self._lanes, self._bits, self._max_count = lanes, bits, max_count
        bins = 1 << bits
        super().__init__({
            "i_digit": In(data.ArrayLayout(unsigned(bits), lanes)),
            "i_mask": In(lanes),
            "i_valid": In(1),
            "i_first": In(1),
            "count_ge": Out(data.ArrayLayout(range(max_count + 1), bins)),
            "group_ge": Out(data.ArrayLayout(range(max_count + 1), bin_groups(bins))),
        })

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p, bins = self._lanes, 1 << self._bits
        groups = bin_groups(bins)
        per_group = bins // groups
        g_bits = exact_bits(per_group)
        hit = [[Signal(name=f"hit{i}_{b}") for b in range(bins)] for i in range(p)]
        g_hit = [[Signal(name=f"g_hit{i}_{g}") for g in range(groups)] for i in range(p)]
        for i in range(p):
            digit, mask = self.i_digit[i], self.i_mask[i]
            low, high = digit[:g_bits], digit[g_bits:]
            for b in range(bins):
                g, pos = divmod(b, per_group)
                in_group = (high == g) if groups > 1 else Const(1, 1)
                m.d.comb += hit[i][b].eq(mask & in_group & ((low >= pos) if pos else 1))
            m.d.comb += [g_hit[i][g].eq(mask & (high >= g) if g else mask)
                         for g in range(groups)]
        # Stage 1 registers, per counter, the popcounts of groups of four lanes (one LUT
        # level after the decode); stage 2 adds them up into the counter.
        def partial_counts(bits, name):
            regs = []
            for j, part in enumerate(popcount_parts(bits)):
                reg = Signal(3, name=f"{name}_p{j}")
                m.d.sync += reg.eq(part)
                regs.append(reg)
            return _sum_tree(regs)

        valid, first = Signal(), Signal()
        m.d.sync += [valid.eq(self.i_valid), first.eq(self.i_valid & self.i_first)]
        add = [partial_counts([hit[i][b] for i in range(p)], f"add{b}") for b in range(bins)]
        add_group = [partial_counts([g_hit[i][g] for i in range(p)], f"add_group{g}")
                     for g in range(groups)]
        with m.If(first):
            m.d.sync += [self.count_ge[b].eq(add[b]) for b in range(bins)]
            m.d.sync += [self.group_ge[g].eq(add_group[g]) for g in range(groups)]
        with m.Elif(valid):
            m.d.sync += [self.count_ge[b].eq(self.count_ge[b] + add[b]) for b in range(bins)]
            m.d.sync += [self.group_ge[g].eq(self.group_ge[g] + add_group[g])
                         for g in range(groups)]
        return m


def bin_groups(bins: int) -> int:
    """Groups of 8 bins (one group below 8 bins) that :class:`BinSelect` decides first."""
    return max(bins // 8, 1)


class BinSelect(wiring.Component):
    """The bin that holds the ``target``-th largest element of a :class:`DigitHistogram`.

    Bins hold larger values at larger indices. With ``above(b)`` the elements in bins above
    ``b``, ``bin`` is the one with ``above(b) < target <= above(b) + count[b]``; ``rank``
    (``target - above(bin)``: the target's rank among the bin's elements) and ``in_bin``
    (``count[bin]``) come with it. Inputs are the histogram's suffix counts (``group_ge``,
    ``count_ge``). ``start`` (one cycle) reads ``group_ge`` in that cycle and ``count_ge`` in
    the next; ``done`` pulses four cycles after ``start``, with the outputs, which hold until
    the next ``done``. Four register stages: the group (one hot, from ``group_ge >=
    target``, beside the target minus the elements above each group); the target's rank in
    the group (``target - above``) and its bins' suffix counts (multiplexed); the bin (one
    hot, from ``count_ge >= rank``: comparisons of registers); the bin's index and counts
    (multiplexed). ``rank`` and ``in_bin`` are each
    one subtraction of two registers.
    ``target`` must be 1..(all counts) and held from ``start`` to ``done``.
    """

    def __init__(self, bins: int, max_count: int):
        check_int("bins", bins, 2, 256, owner="BinSelect", power_of_two=True)
        check_int("max_count", max_count, 1, 1 << 20, owner="BinSelect")
        self._bins, self._max_count = bins, max_count
        count = range(max_count + 1)
        super().__init__({
            "count_ge": In(data.ArrayLayout(count, bins)),
            "group_ge": In(data.ArrayLayout(count, bin_groups(bins))),
            "target": In(count),
            "start": In(1),
            "done": Out(1),
            "bin": Out(range(bins)),
            "rank": Out(count),
            "in_bin": Out(count),
        })

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        bins, count = self._bins, range(self._max_count + 1)
        groups = bin_groups(bins)
        per_group = bins // groups
        target = self.target
        stage = Signal(4)
        m.d.sync += stage.eq(Cat(self.start, stage[:3]))
        m.d.comb += self.done.eq(stage[3])
        zero = Const(0, count)

        # 1: the group (one hot): elements in groups g and above reach the target, in groups
        # g+1 and above they do not. Beside it, the target minus the elements above each group
        # (modulo the count width: only the hit group's difference is used, and it is exact).
        g_sfx = [*[self.group_ge[g] for g in range(groups)], zero]
        g_hit = _first_reaching(m, g_sfx[:groups], target, "g")
        g_rem = [Signal(count, name=f"g_rem{g}") for g in range(groups)]
        m.d.sync += [g_rem[g].eq(target - g_sfx[g + 1]) for g in range(groups)]
        # 2: the target's rank in the group, its index, its bins' suffix counts (read now).
        t_rank = Signal(count)
        g_index = Signal(range(max(groups, 2)))   # (one bit at least: no empty wires)
        g_bins = [Signal(count, name=f"g_bin{i}") for i in range(per_group)]
        m.d.sync += [t_rank.eq(_or_all(Mux(g_hit[g], g_rem[g], 0) for g in range(groups))),
                     g_index.eq(_or_all(Mux(g_hit[g], g, 0) for g in range(groups)))]
        m.d.sync += [g_bins[i].eq(_or_all(Mux(g_hit[g], self.count_ge[g * per_group + i], 0)
                                          for g in range(groups)))
                     for i in range(per_group)]
        # 3: the target's rank in the group, and the bin (one hot): the suffix counts of the
        # group reach the rank from it down, not above it.
        t_group = Signal(count)
        b_hit = _first_reaching(m, g_bins, t_rank, "b")
        b_sfx = [Signal(count, name=f"b_sfx{i}") for i in range(per_group)]
        g_index_3 = Signal.like(g_index)
        m.d.sync += [t_group.eq(t_rank), g_index_3.eq(g_index)]
        m.d.sync += [b_sfx[i].eq(g_bins[i]) for i in range(per_group)]
        # 4: the bin, the elements from it up and above it in the group (multiplexed).
        t_bin, from_bin, above_in = Signal(count), Signal(count), Signal(count)
        m.d.comb += [self.rank.eq(t_bin - above_in), self.in_bin.eq(from_bin - above_in)]
        with m.If(stage[2]):
            low = _or_all(Mux(b_hit[i], i, 0) for i in range(per_group))
            m.d.sync += [self.bin.eq(Cat(Const(0, exact_bits(per_group)), g_index_3) | low),
                         t_bin.eq(t_group),
                         from_bin.eq(_or_all(Mux(b_hit[i], b_sfx[i], 0)
                                             for i in range(per_group))),
                         above_in.eq(_or_all(Mux(b_hit[i], b_sfx[i + 1], 0)
                                             for i in range(per_group - 1)))]
        return m


def exact_bits(n: int) -> int:
    """``log2(n)`` of a power of two."""
    return n.bit_length() - 1


def popcount(bits: list[Value]) -> Value:
    """Set bits among one-bit values: each group of up to four counted by logic of its four
    inputs (one LUT4 level per sum bit on ECP5, no carry chain), then a balanced adder tree
    of the partial counts."""
    return _sum_tree(popcount_parts(bits))


def popcount_parts(bits: list[Value]) -> list[Value]:
    """The 3-bit counts of :func:`popcount`'s groups of up to four bits."""
    bits = [Value.cast(b) for b in bits]
    parts = []
    for j in range(0, len(bits), 4):
        a, b, c, d = (bits[j:j + 4] + [Const(0, 1)] * 3)[:4]
        all4 = a & b & c & d
        two = ((a & b) | (a & c) | (a & d) | (b & c) | (b & d) | (c & d)) & ~all4
        parts.append(Cat(a ^ b ^ c ^ d, two, all4))
    return parts


def _sum_tree(values: list[Value]) -> Value:
    """Sum of values as a balanced adder tree."""
    values = [Value.cast(b) for b in values]
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]
