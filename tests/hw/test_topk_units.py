"""Sub-blocks of the top-k engine on Amaranth's simulator against small Python models, the
engine itself on a few packets, parameter validation, and ``psa verilog topk``."""

from __future__ import annotations

import random
from collections import deque

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.sim import Simulator
from click.testing import CliRunner

from psa.cli import cli
from psa.hw.topk import TopKEngine
from psa.hw.topk_blocks import Compactor, Packer, Partition, RankSelect, SideWriter, TieFilter
from psa.hw.topk_top import TopKTop
from psa.verif.topk_cases import run_random_packets


def run(dut, bench, clocked: bool = True) -> None:
    sim = Simulator(dut)
    if clocked:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def rand_row(rng: random.Random, lanes: int, lo: int, hi: int) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(lanes)]


@pytest.mark.parametrize("lanes,seed", [(1, 1), (3, 17), (4, 2), (16, 3), (32, 4)])
def test_compactor_packs_masked_lanes_in_order(lanes, seed):
    rng = random.Random(seed)
    dut = Compactor(lanes, unsigned(8))

    async def bench(ctx):
        for trial in range(60):
            data = rand_row(rng, lanes, 0, 255)
            mask = 0 if trial == 0 else (1 << lanes) - 1 if trial == 1 else \
                rng.getrandbits(lanes)
            ctx.set(dut.i_data, data)
            ctx.set(dut.i_mask, mask)
            await ctx.delay(1e-9)
            kept = [d for j, d in enumerate(data) if mask >> j & 1]
            assert ctx.get(dut.o_count) == len(kept), f"seed {seed} trial {trial}"
            got = [ctx.get(dut.o_data[j]) for j in range(lanes)]
            # Kept lanes in order, then zeros (the contract for lanes past o_count).
            assert got == kept + [0] * (lanes - len(kept)), \
                f"seed {seed} trial {trial}: mask {mask:b}"

    run(dut, bench, clocked=False)


@pytest.mark.parametrize("lanes,seed", [(1, 5), (2, 18), (4, 6), (8, 7)])
def test_packer_emits_dense_rows_and_flushes_residue(lanes, seed):
    """Random masks over many beats: the rows out, concatenated, are the masked lanes in
    order; every row but the flushed one is full, and each row shows exactly three cycles
    after the beat (or flush) that completed it."""
    rng = random.Random(seed)
    dut = Packer(lanes, unsigned(8))

    async def bench(ctx):
        for packet in range(8):
            want, got, counts, seen_at, due_at = [], [], [], [], []
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            beats = rng.randint(0, 12)
            for cycle in range(beats + 5):
                if cycle < beats:
                    data = rand_row(rng, lanes, 0, 255)
                    mask = rng.getrandbits(lanes)
                    kept = [d for j, d in enumerate(data) if mask >> j & 1]
                    full_rows = (len(want) + len(kept)) // lanes - len(want) // lanes
                    due_at += [cycle + 3] * full_rows
                    want += kept
                    ctx.set(dut.i_data, data)
                    ctx.set(dut.i_mask, mask)
                elif cycle == beats and len(want) % lanes:
                    due_at.append(cycle + 3)
                ctx.set(dut.i_valid, cycle < beats)
                ctx.set(dut.i_flush, cycle == beats)
                valid, count, row = ctx.get(dut.o_valid), ctx.get(dut.o_count), \
                    ctx.get(dut.o_data)
                if valid:
                    counts.append(count)
                    seen_at.append(cycle)
                    got += [row[j] for j in range(count)]
                    assert all(row[j] == 0 for j in range(count, lanes)), \
                        f"seed {seed} packet {packet}: lanes past o_count not zero"
                await ctx.tick()
            ctx.set(dut.i_flush, 0)
            assert got == want, f"seed {seed} packet {packet}"
            assert all(c == lanes for c in counts[:-1]), f"seed {seed}: counts {counts}"
            assert seen_at == due_at, f"seed {seed} packet {packet}: rows at {seen_at}"

    run(dut, bench)


def sample_model(rows: int, slots: int) -> list[int]:
    """Rows whose lane 0 the sampler holds: stride doubles, every other dropped, when full."""
    kept, stride = [], 1
    for r in range(rows):
        if r % stride == 0:
            if len(kept) == slots:
                kept, stride = kept[::2], stride * 2
            kept.append(r)
    return kept


def test_side_writer_sample_is_evenly_spaced():
    """Lane 0 of rows 0, s, 2s, ...: with 8 slots and 40 rows, rows 0, 8, .., 32."""
    lanes, rows = 4, 64
    dut = SideWriter(lanes, unsigned(16), rows, samples=8)

    async def bench(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.i_mask, 0b1111)
        ctx.set(dut.i_valid, 1)
        addrs = []
        for r in range(40):
            ctx.set(dut.i_data, [r * 10 + j for j in range(lanes)])
            _, _, en, addr = await ctx.tick().sample(dut.w_en, dut.w_addr)
            if en:
                addrs.append(addr)
        ctx.set(dut.i_valid, 0)
        for _ in range(3):
            _, _, en, addr = await ctx.tick().sample(dut.w_en, dut.w_addr)
            if en:
                addrs.append(addr)
        assert addrs == list(range(40))
        assert ctx.get(dut.rows) == 40 and ctx.get(dut.count) == 160
        n = ctx.get(dut.n_sample)
        assert sample_model(40, 8) == [0, 8, 16, 24, 32]
        assert [ctx.get(dut.sample[j]) for j in range(n)] == [r * 10 for r in sample_model(40, 8)]

    run(dut, bench)


@pytest.mark.parametrize("pivots,is_signed,seed", [(1, False, 8), (3, True, 9), (3, False, 10)])
def test_partition_buckets_follow_value_order(pivots, is_signed, seed):
    lanes = 8
    rng = random.Random(seed)
    lo, hi = (-8, 7) if is_signed else (0, 15)
    dut = Partition(lanes, signed(4) if is_signed else unsigned(4), pivots)

    async def bench(ctx):
        for trial in range(80):
            data = rand_row(rng, lanes, lo, hi)
            mask = rng.getrandbits(lanes)
            pv = sorted(rand_row(rng, pivots, lo, hi), reverse=True)
            ctx.set(dut.i_data, data)
            ctx.set(dut.i_mask, mask)
            ctx.set(dut.pivots, pv)
            await ctx.delay(1e-9)
            buckets = [[] for _ in range(pivots + 1)]
            ties = [0] * pivots
            for j, v in enumerate(data):
                if not mask >> j & 1:
                    continue
                for t, p in enumerate(pv):
                    if v > p:
                        buckets[t].append(j)
                        break
                    if v == p:
                        ties[t] += 1
                        break
                else:
                    buckets[pivots].append(j)
            for b in range(pivots + 1):
                want = sum(1 << j for j in buckets[b])
                assert ctx.get(dut.bucket[b]) == want, f"seed {seed} trial {trial} bucket {b}"
            assert [ctx.get(dut.eq_count[t]) for t in range(pivots)] == ties

    run(dut, bench, clocked=False)


def test_tie_filter_keeps_greater_and_first_ties():
    """The engine's use: lanes above the threshold kept, ties while the budget of ties still
    to keep (``need`` less the ties of earlier rows, clamped to the lanes) lasts."""
    lanes, rng = 8, random.Random(11)
    dut = TieFilter(lanes)

    async def bench(ctx):
        for trial in range(100):
            data = rand_row(rng, lanes, 0, 7)
            mask = rng.getrandbits(lanes)
            t, need, before = rng.randint(0, 7), rng.randint(0, 6), rng.randint(0, 4)
            if trial % 7 == 3:      # the ends of the counters' ranges (max_n = 64)
                need, before = rng.choice([(64, 60), (64, 64), (0, 64), (63, 59)])
            keep_all = trial % 10 == 0
            above = sum(1 << j for j, v in enumerate(data)
                        if mask >> j & 1 and (keep_all or v > t))
            tie = sum(1 << j for j, v in enumerate(data) if mask >> j & 1 and v == t)
            ctx.set(dut.i_above, above)
            ctx.set(dut.i_tie, tie)
            for j in range(lanes):      # ties below each lane in its block of four
                ctx.set(dut.i_local[j], bin(tie & ((1 << j) - 1) & ~((1 << (j - j % 4)) - 1))
                        .count("1"))
            for b in range(lanes // 4):
                ctx.set(dut.i_block[b], bin(tie >> (4 * b) & 15).count("1"))
            ctx.set(dut.budget, min(max(need - before, 0), lanes))
            await ctx.delay(1e-9)
            want, seen = 0, before
            for j, v in enumerate(data):
                if not mask >> j & 1:
                    continue
                if keep_all or v > t or (v == t and seen < need):
                    want |= 1 << j
                seen += v == t
            assert ctx.get(dut.keep) == want, f"trial {trial}"
            assert ctx.get(dut.ties) == seen - before

    run(dut, bench, clocked=False)


@pytest.mark.parametrize("lanes,ranks,seed", [(1, 1, 11), (4, 1, 12), (16, 1, 13), (8, 3, 16)])
def test_rank_select_finds_rank_th_largest(lanes, ranks, seed):
    rng = random.Random(seed)
    dut = RankSelect(lanes, signed(5), ranks)

    async def bench(ctx):
        for trial in range(80):
            data = rand_row(rng, lanes, -16, 15) if trial % 2 else rand_row(rng, lanes, 0, 2)
            mask = rng.getrandbits(lanes)
            valid = sorted((d for j, d in enumerate(data) if mask >> j & 1), reverse=True)
            wanted = [rng.randint(0, lanes) for _ in range(ranks)]
            ctx.set(dut.i_data, data)
            ctx.set(dut.i_mask, mask)
            for t, rank in enumerate(wanted):
                ctx.set(dut.rank[t], rank)
            await ctx.delay(1e-9)
            for t, rank in enumerate(wanted):
                found = 1 <= rank <= len(valid)
                where = f"seed {seed} trial {trial} rank[{t}] = {rank}"
                assert ctx.get(dut.found[t]) == found, where
                if found:
                    value = valid[rank - 1]
                    assert ctx.get(dut.value[t]) == value, where
                    assert ctx.get(dut.greater[t]) == sum(v > value for v in valid), where

    run(dut, bench, clocked=False)


class AmaranthTopKPort:
    """:class:`psa.verif.topk_cases.TopKPort` of a :class:`TopKEngine` on Amaranth's
    simulator: a background source (input gaps with probability ``idle``) and sink
    (``ready`` low with probability ``stall``) that also checks the output's valid/ready
    rules (valid held and payload unchanged until the transfer) every cycle."""

    def __init__(self, sim: Simulator, dut: TopKEngine, lanes: int, width: int, max_n: int,
                 is_signed: bool, seed: int, idle: float = 0.2, stall: float = 0.3):
        self.dut, self.lanes, self.width, self.max_n, self.signed = \
            dut, lanes, width, max_n, is_signed
        self.cycle = self.overflows = 0
        self.on_packet = None
        self.queue: deque[dict] = deque()
        self.violations: list[str] = []
        self.ctx = None
        self._idle, self._stall = idle, stall
        self._in_rng, self._out_rng = random.Random(seed + 1), random.Random(seed + 2)
        sim.add_testbench(self._source, background=True)
        sim.add_testbench(self._sink, background=True)

    def send(self, beat: dict) -> None:
        self.queue.append(beat)

    async def tick(self) -> None:
        await self.ctx.tick()

    async def _source(self, ctx) -> None:
        i = self.dut.i_stream
        while True:
            if self.queue and self._in_rng.random() >= self._idle:
                ctx.set(i.valid, 1)
                ctx.set(i.payload, self.queue.popleft())
                await ctx.tick().until(i.ready)
                ctx.set(i.valid, 0)
            else:
                await ctx.tick()

    async def _sink(self, ctx) -> None:
        o = self.dut.o_stream
        layout = o.payload.shape()
        beats, pending = [], None
        while True:
            ready = self._out_rng.random() >= self._stall
            ctx.set(o.ready, ready)
            _, _, valid, raw, overflow = await ctx.tick().sample(
                o.valid, o.payload.as_value(), self.dut.overflow)
            self.cycle += 1
            self.overflows += overflow
            if pending is not None and (not valid or raw != pending):
                self.violations.append(f"cycle {self.cycle}: o_stream "
                                       f"{'valid dropped' if not valid else 'payload changed'}"
                                       f" before the transfer (was {pending:#x}, now {raw:#x})")
            pending = raw if valid and not ready else None
            if valid and ready:
                beat = data.Const(layout, raw)
                beats.append({"data": [beat.data[j] for j in range(self.lanes)],
                              "index": [beat.index[j] for j in range(self.lanes)],
                              "count": beat.count, "last": beat.last})
                if beat.last:
                    packet, beats = beats, []
                    self.on_packet(packet)


@pytest.mark.parametrize("lanes,width,max_n,is_signed,seed", [
    (4, 6, 32, True, 14),       # one digit: Ingest's histogram decides
    (1, 6, 12, False, 15),
    (2, 9, 24, False, 16),      # two digits: Ingest, then Select's scan
    (4, 16, 64, True, 17),      # three digits: the finisher's pass too
    (8, 13, 48, False, 18),
])
def test_engine_matches_golden_on_simulator(lanes, width, max_n, is_signed, seed):
    """The whole engine on Amaranth's simulator with the RTL bench's stimulus and check
    (:func:`psa.verif.topk_cases.run_random_packets`): edge cases, ragged beats, ties,
    k > n, empty and overflowing packets, input gaps and back-pressure, at one, two and
    three radix digits."""
    dut = TopKEngine(lanes, width, max_n, is_signed)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    port = AmaranthTopKPort(sim, dut, lanes, width, max_n, is_signed, seed)

    async def bench(ctx):
        port.ctx = ctx
        await ctx.tick()
        check = await run_random_packets(port, seed, 24, overflow_rate=0.1)
        assert check.queued == 11 + 4 * 7 + 24     # edges, adversarial sets, random

    sim.add_testbench(bench)
    sim.run()
    assert not port.violations, f"seed {seed}: {port.violations[:3]}"


@pytest.mark.parametrize("kwargs,match", [
    (dict(lanes=3), "lanes must be a power of two in 1..64"),
    (dict(lanes=128), "lanes must be a power of two in 1..64"),
    (dict(width=0), "width must be an integer in 1..32"),
    (dict(width=33), "width must be an integer in 1..32"),
    (dict(lanes=16, max_n=8), r"max_n must be an integer in lanes..65536 \(16..65536\)"),
    (dict(max_n=65537), "max_n must be an integer in lanes..65536"),
    (dict(signed=1), "signed must be a bool"),
])
def test_bad_parameters_raise_at_elaboration(kwargs, match):
    params = dict(lanes=4, width=8, max_n=64, signed=False) | kwargs
    with pytest.raises(ValueError, match=match):
        TopKEngine(**params)
    with pytest.raises(ValueError, match=match):
        TopKTop(**params)


def test_psa_verilog_topk_writes_the_datasheet_ports(tmp_path):
    out = tmp_path / "topk.v"
    res = CliRunner().invoke(cli, ["verilog", "topk", "--lanes", "4", "--width", "8",
                                   "--max-n", "48", "--signed", "-o", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    header = text[text.index("module topk_engine("):text.index(");")]
    ports = {name.strip() for name in header.split("(", 1)[1].split(",")}
    assert ports == {"clk", "rst", "in_valid", "in_ready", "in_data", "in_count", "in_last",
                     "in_k", "out_valid", "out_ready", "out_data", "out_index", "out_count",
                     "out_last", "overflow"}
    for decl in ("input [31:0] in_data;", "input [2:0] in_count;", "input [5:0] in_k;",
                 "output [23:0] out_index;", "output [2:0] out_count;"):
        assert decl in text


def test_psa_verilog_rejects_bad_parameters(tmp_path):
    res = CliRunner().invoke(cli, ["verilog", "topk", "--lanes", "6", "-o",
                                   str(tmp_path / "x.v")])
    assert res.exit_code == 2
    assert "lanes must be a power of two in 1..64, got 6" in res.output


@pytest.mark.parametrize("width, max_n, marked_depths", [
    (16, 256, [128, 64]),      # packet 128 x 128 bits, scratch 64 x 128: both LUT RAM
    (32, 256, [64]),           # packet 128 x 256 bits > 24 Kbit: left out
    (16, 1024, []),            # 512 and 256 rows: deeper than 128
])
def test_small_shallow_buffers_ask_for_lut_ram(tmp_path, width, max_n, marked_depths):
    """Buffer memories of at most LUTRAM_MAX_ROWS rows and LUTRAM_MAX_BITS bits (P = 8)
    carry ram_style = "distributed"; the others carry nothing."""
    out = tmp_path / "topk.v"
    res = CliRunner().invoke(cli, ["verilog", "topk", "--lanes", "8", "--width", str(width),
                                   "--max-n", str(max_n), "-o", str(out)])
    assert res.exit_code == 0, res.output
    lines = out.read_text().splitlines()
    marked = [lines[i + 1].strip() for i, line in enumerate(lines)
              if line.strip() == '(* ram_style = "distributed" *)']
    assert all(decl.startswith(f"reg [{8 * width - 1}:0] ") for decl in marked), marked
    assert sorted(int(d.rsplit("[", 1)[1].split(":")[0]) + 1 for d in marked) == \
        sorted(marked_depths)


class _Probe(TopKEngine):
    """The engine with its stages reachable after elaboration (for cycle stamps)."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        self.stages = m.submodules
        return m


def _shared_top(values: list[int], k: int, width: int) -> int:
    """``m`` of the cycle model: elements sharing the k-th largest's top radix digit."""
    from psa.hw.topk_blocks import digit_plan

    lo = digit_plan(width)[0][0]
    kth = sorted(values, reverse=True)[k - 1]
    return sum(v >> lo == kth >> lo for v in values)


def _packet_beats(values: list[int], k: int, lanes: int) -> list[dict]:
    chunks = [values[j:j + lanes] for j in range(0, len(values), lanes)]
    return [{"data": c + [0] * (lanes - len(c)), "count": len(c),
             "last": int(b == len(chunks) - 1), "k": k} for b, c in enumerate(chunks)]


def _stamp_packets(dut: TopKEngine, lanes: int, packets: list, back_to_back: bool) -> list:
    """(first beat accepted, last beat out) cycles of each packet, input at full rate and
    ``out_ready`` high; one packet in the engine at a time unless ``back_to_back``."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    stamps = []

    async def bench(ctx):
        i, o = dut.i_stream, dut.o_stream
        ctx.set(o.ready, 1)
        queue = [(p, b) for p, (v, k) in enumerate(packets) for b in _packet_beats(v, k, lanes)]
        cycle, outs, first_in = 0, 0, {}
        while outs < len(packets):
            sending = bool(queue) and (back_to_back or queue[0][0] == outs)
            ctx.set(i.valid, sending)
            if sending:
                ctx.set(i.payload, queue[0][1])
            _, _, ready, valid, last = await ctx.tick().sample(i.ready, o.valid,
                                                               o.payload.last)
            if sending and ready:
                first_in.setdefault(queue[0][0], cycle)
                queue.pop(0)
            if valid and last:
                stamps.append((first_in[outs], cycle))
                outs += 1
            cycle += 1

    sim.add_testbench(bench)
    sim.run()
    return stamps


@pytest.mark.parametrize("lanes,width,max_n", [(4, 16, 64), (4, 9, 64), (2, 6, 16), (8, 24, 64)])
def test_cycle_model_is_exact(lanes, width, max_n):
    """Latency (one packet in the engine, last element kept) equals
    :func:`psa.hw.topk.topk_cycles` on data sets from uniform to all-in-one-bin; back to
    back, packets of one kind leave ``interval`` cycles apart; neither exceeds
    :func:`psa.hw.topk.topk_bound`."""
    from psa.hw.topk import topk_bound, topk_cycles

    rng = random.Random(width)
    top = (1 << width) - 1
    kinds = []
    for dataset in ("uniform", "shared_top", "equal_but_last", "two_values"):
        for n in (max_n, max_n - lanes - 1):
            packets = []
            for _ in range(4):
                if dataset == "uniform":
                    values = [rng.randint(0, top - 1) for _ in range(n)]
                elif dataset == "shared_top":
                    values = [(top - 15) + rng.randint(0, 14) for _ in range(n)]
                elif dataset == "equal_but_last":
                    values = [top // 3] * n
                else:
                    values = [rng.choice((5, top - 1)) for _ in range(n)]
                values[-1] = top        # kept: the last beat leaves with the last row
                packets.append((values, rng.randint(1, n - 1)))
            kinds.append(packets)
    alone = _stamp_packets(_Probe(lanes, width, max_n, False), lanes,
                           [p for packets in kinds for p in packets], back_to_back=False)
    for (values, k), (t_in, t_out) in zip([p for ps in kinds for p in ps], alone, strict=True):
        n = len(values)
        model = topk_cycles(lanes, width, n, _shared_top(values, k, width), k)
        assert t_out - t_in == model["latency"], f"n={n}, k={k}: latency {t_out - t_in}, {model}"
        assert t_out - t_in <= topk_bound(lanes, width, n)["latency"]
    for packets in kinds:
        stamps = _stamp_packets(_Probe(lanes, width, max_n, False), lanes, packets, True)
        n = len(packets[0][0])
        want = max(topk_cycles(lanes, width, n, _shared_top(v, k, width))["interval"]
                   for v, k in packets)
        assert want <= topk_bound(lanes, width, n)["interval"]
        # Packets start `interval` apart once the pipeline is full; the last beats leave as
        # far apart on average (each one +-1 cycle: the full-row case).
        starts = [b[0] - a[0] for a, b in zip(stamps, stamps[1:], strict=False)]
        assert max(starts[1:]) <= want, (starts, want)
        assert stamps[-1][1] - stamps[0][1] <= (len(stamps) - 1) * want + 1, (stamps, want)
