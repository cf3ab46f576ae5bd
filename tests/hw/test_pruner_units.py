"""Sub-blocks of the pruning unit on Amaranth's simulator, against small Python models, and
parameter validation of the unit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from psa.golden.fixed_point import saturating_add
from psa.golden.pruning import PruningState, kv_fetch_trace
from psa.golden.trace import KVLayout, Plane
from psa.hw.fetch import FetchAddressGenerator
from psa.hw.pruner import AliveList, HeadScores, Op, PruningUnit, ScoreMemory
from psa.hw.pruner_top import PrunerTop
from psa.verif.pruner_cases import (
    PrunerParams,
    kv_config,
    kv_layout,
    make_decode_sequences,
    make_sequences,
    requests_to_trace,
    run_decode_sequence,
    run_sequence,
)


def run(dut, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("lanes,n,bits,sbits,seed", [(4, 22, 8, 10, 1), (1, 5, 4, 6, 2),
                                                     (8, 64, 12, 16, 3)])
def test_score_memory_accumulates_one_beat_per_cycle(lanes, n, bits, sbits, seed):
    """Random rows (1-beat rows included: back-to-back read-modify-write of one row) with
    random gaps; scores read back equal the saturating golden sum; no beat is ever stalled."""
    rng = np.random.default_rng(seed)
    dut = ScoreMemory(n, lanes, bits, sbits)
    alive = int(rng.integers(1, n + 1))
    rows = rng.integers(0, 1 << bits, size=(12, alive)).astype(np.uint64)
    if seed == 1:
        alive, rows = 3, rng.integers(0, 1 << bits, size=(40, 3)).astype(np.uint64)
    expect = saturating_add(np.zeros(alive, np.uint64), rows.sum(axis=0), sbits)

    async def bench(ctx):
        ctx.set(dut.alive, alive)
        ctx.set(dut.clr_en, 1)
        for r in range(dut.rows):
            ctx.set(dut.clr_row, r)
            await ctx.tick()
        ctx.set(dut.clr_en, 0)
        ctx.set(dut.enable, 1)
        beats = -(-alive // lanes)
        for row in rows:
            for b in range(beats):
                lanes_v = [int(row[b * lanes + i]) if b * lanes + i < alive else
                           int(rng.integers(0, 1 << bits)) for i in range(lanes)]
                ctx.set(dut.probs.p.data, lanes_v)
                ctx.set(dut.probs.p.last, b == beats - 1)
                ctx.set(dut.probs.valid, 1)
                assert ctx.get(dut.probs.ready), f"seed {seed}: probs stalled"
                await ctx.tick()
                if rng.random() < 0.2:
                    ctx.set(dut.probs.valid, 0)
                    await ctx.tick()
        ctx.set(dut.probs.valid, 0)
        await ctx.tick()
        assert not ctx.get(dut.busy)
        ctx.set(dut.enable, 0)
        got = []
        for r in range(dut.rows):
            ctx.set(dut.rd_row, r)
            ctx.set(dut.rd_en, 1)
            await ctx.tick()
            got += [int(x) for x in ctx.get(dut.rd_data)]
        assert got[:alive] == expect.tolist(), f"seed {seed}"

    run(dut, bench)


def test_score_memory_position_writes_and_row_clear():
    dut = ScoreMemory(16, 4, 8, 12)

    async def bench(ctx):
        ctx.set(dut.wr_en, 1)
        for pos in range(16):
            ctx.set(dut.wr_pos, pos)
            ctx.set(dut.wr_data, 100 + pos)
            await ctx.tick()
        ctx.set(dut.wr_en, 0)
        ctx.set(dut.clr_en, 1)
        ctx.set(dut.clr_row, 2)
        await ctx.tick()
        ctx.set(dut.clr_en, 0)
        ctx.set(dut.rd_en, 1)
        for r in range(4):
            ctx.set(dut.rd_row, r)
            await ctx.tick()
            expect = [0] * 4 if r == 2 else [100 + 4 * r + i for i in range(4)]
            assert [int(x) for x in ctx.get(dut.rd_data)] == expect
        ctx.set(dut.rd_en, 0)
        ctx.set(dut.rd_row, 0)
        await ctx.tick()
        assert [int(x) for x in ctx.get(dut.rd_data)] == [112, 113, 114, 115], "held"

    run(dut, bench)


def test_alive_list_identity_then_memory():
    dut = AliveList(8)

    async def read(ctx, pos):
        ctx.set(dut.rd_pos, pos)
        ctx.set(dut.rd_en, 1)
        await ctx.tick()
        ctx.set(dut.rd_en, 0)
        return ctx.get(dut.rd_id)

    async def bench(ctx):
        assert [await read(ctx, p) for p in range(8)] == list(range(8))
        ctx.set(dut.wr_en, 1)
        for pos, tok in enumerate([5, 2, 7]):
            ctx.set(dut.wr_pos, pos)
            ctx.set(dut.wr_id, tok)
            await ctx.tick()
        ctx.set(dut.wr_en, 0)
        assert [await read(ctx, p) for p in range(3)] == [0, 1, 2], "identity until cleared"
        ctx.set(dut.clear_ident, 1)
        await ctx.tick()
        ctx.set(dut.clear_ident, 0)
        assert [await read(ctx, p) for p in range(3)] == [5, 2, 7]
        ctx.set(dut.reset_ident, 1)
        await ctx.tick()
        ctx.set(dut.reset_ident, 0)
        assert [await read(ctx, p) for p in range(3)] == [0, 1, 2]

    run(dut, bench)


def test_head_scores_saturate_and_drop_pruned_heads():
    dut = HeadScores(3, mag_bits=8, head_score_bits=9)

    async def mag(ctx, head, value):
        ctx.set(dut.mags.p.head, head)
        ctx.set(dut.mags.p.value, value)
        ctx.set(dut.mags.valid, 1)
        err = ctx.get(dut.error)
        await ctx.tick()
        ctx.set(dut.mags.valid, 0)
        return err

    async def bench(ctx):
        ctx.set(dut.enable, 1)
        assert ctx.get(dut.kept) == 0b111 and ctx.get(dut.count) == 3
        for _ in range(3):
            assert not await mag(ctx, 1, 255)
        assert not await mag(ctx, 2, 7)
        ctx.set(dut.sel, 1)
        assert ctx.get(dut.sel_score) == 511, "saturates at 2**9 - 1"
        ctx.set(dut.set_kept, 1)
        ctx.set(dut.new_kept, 0b100)
        ctx.set(dut.new_count, 1)
        await ctx.tick()
        ctx.set(dut.set_kept, 0)
        assert await mag(ctx, 1, 5), "pruned head flags an error"
        assert await mag(ctx, 3, 5), "head out of range flags an error"
        ctx.set(dut.sel, 2)
        assert ctx.get(dut.sel_score) == 7
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        assert ctx.get(dut.sel_score) == 0 and ctx.get(dut.kept) == 0b111

    run(dut, bench)


def test_fetch_address_generator_matches_layout_with_backpressure():
    params = PrunerParams(64, 4, 8)
    layout = kv_layout(params, n_layers=5, d_head=40, k_bits=8, v_bits=6)
    cfg = kv_config(layout)
    dut = FetchAddressGenerator(addr_bits=40, head_bits=2, token_bits=6, layer_bits=4)
    rng = np.random.default_rng(5)
    rows = [(int(rng.integers(0, 4)), int(rng.integers(0, 2)), int(rng.integers(0, 64)))
            for _ in range(60)]
    layer = 3

    async def source(ctx):
        for f, v in cfg.items():
            ctx.set(dut.cfg[f], v)
        ctx.set(dut.layer, layer)
        for i, (head, plane, token) in enumerate(rows):
            ctx.set(dut.rows.p.head, head)
            ctx.set(dut.rows.p.plane, plane)
            ctx.set(dut.rows.p.token, token)
            ctx.set(dut.rows.p.last, i == len(rows) - 1)
            ctx.set(dut.rows.valid, 1)
            await ctx.tick().until(dut.rows.ready)
            ctx.set(dut.rows.valid, 0)

    got = []

    async def sink(ctx):
        while len(got) < len(rows):
            ready = bool(rng.random() < 0.6)
            ctx.set(dut.requests.ready, ready)
            if ready and ctx.get(dut.requests.valid):
                p = dut.requests.p
                got.append((ctx.get(p.addr), ctx.get(p.size), ctx.get(p.plane)))
            await ctx.tick()
        ctx.set(dut.requests.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    planes = [Plane.K_MSB, Plane.V_MSB]
    expect = [(int(layout.address(planes[p], layer, h, t)), layout.row_bytes(planes[p]),
               int(planes[p])) for h, p, t in rows]
    assert got == expect
    trace = requests_to_trace(got, layer)
    assert list(trace.lines())[1:3] == [f"R 0x{expect[i][0]:x} {expect[i][1]}" for i in (0, 1)]


@pytest.mark.parametrize("kwargs,match", [
    (dict(lanes=3), "lanes must be a power of two"),
    (dict(lanes=16, max_tokens=8), "max_tokens must be an integer in 16..65536"),
    (dict(n_heads=0), "n_heads must be an integer in 1..256"),
    (dict(prob_bits=17), "prob_bits must be an integer in 1..16"),
    (dict(prob_bits=12, score_bits=8), "score_bits must be an integer in 12..32"),
    (dict(head_score_bits=33), "head_score_bits must be an integer in 1..32"),
    (dict(addr_bits=8), "addr_bits must be an integer in 16..64"),
    (dict(layer_bits=0), "layer_bits must be an integer in 1..16"),
])
def test_unit_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PruningUnit(**kwargs)


def test_flat_top_exports_named_ports():
    from psa.hw.designs import get_design

    design = get_design("pruner")
    assert design.toplevel == "pruning_unit"
    top = PrunerTop(max_tokens=32, n_heads=2, lanes=4, prob_bits=8, score_bits=12)
    names = set(top.signature.members)
    for port in ("cmd_valid", "cmd_op", "cmd_arg", "prob_data", "prob_last", "mag_head",
                 "mag_value", "tok_id", "tok_score", "tok_last", "tok_empty", "head_id",
                 "fetch_addr", "fetch_size", "fetch_plane", "fetch_last", "cfg_k_base",
                 "busy", "error", "alive_count", "head_count"):
        assert port in names, port
    assert len(top.prob_data) == 4 * 8


class AmaranthPort:
    """:class:`psa.verif.pruner_cases.PrunerPort` on Amaranth's simulator, with random input
    gaps and output back-pressure."""

    OUTPUT = {1: "tokens", 4: "tokens", 2: "heads", 5: "heads", 3: "fetch", 7: "fetch"}

    def __init__(self, ctx, dut: PruningUnit, rng: np.random.Generator, gap: float = 0.2,
                 ready: float = 0.7):
        self.ctx, self.dut, self.rng, self.gap, self.ready = ctx, dut, rng, gap, ready

    async def command(self, op: int, arg: int = 0, row: np.ndarray | None = None
                      ) -> list[dict]:
        ctx, cmd = self.ctx, self.dut.cmd
        ctx.set(cmd.p.op, op)
        ctx.set(cmd.p.arg, arg)
        ctx.set(cmd.valid, 1)
        await ctx.tick().until(cmd.ready)
        ctx.set(cmd.valid, 0)
        if op not in self.OUTPUT:
            return []
        if row is not None and len(row):
            await self.send_rows(np.asarray(row)[None, :])
        port = getattr(self.dut, self.OUTPUT[op])
        out = []
        for _ in range(100_000):
            ready = bool(self.rng.random() < self.ready)
            ctx.set(port.ready, ready)
            beat = None
            if ready and ctx.get(port.valid):
                beat = {name: ctx.get(port.p[name]) for name, _ in port.p.shape()}
            await ctx.tick()
            if beat is not None:
                if not beat["empty"]:
                    out.append(beat)
                if beat["last"]:
                    ctx.set(port.ready, 0)
                    return out
        raise AssertionError(f"no last beat on {self.OUTPUT[op]} after command {op}")

    async def send_rows(self, rows: np.ndarray) -> None:
        ctx, probs, p = self.ctx, self.dut.probs, self.dut.lanes
        alive = rows.shape[1]
        beats = -(-alive // p)
        for row in rows:
            for b in range(beats):
                while self.rng.random() < self.gap:
                    await ctx.tick()
                ctx.set(probs.p.data, [int(row[b * p + i]) if b * p + i < alive else 0
                                       for i in range(p)])
                ctx.set(probs.p.last, b == beats - 1)
                ctx.set(probs.valid, 1)
                await ctx.tick().until(probs.ready)
                ctx.set(probs.valid, 0)

    async def select(self, arg: int, row: np.ndarray) -> list[dict]:
        return await self.command(Op.SELECT.value, arg, row)

    async def error(self) -> bool:
        await self.ctx.tick()
        return bool(self.ctx.get(self.dut.error))

    async def send_magnitude(self, head: int, value: int) -> None:
        ctx, mags = self.ctx, self.dut.mags
        ctx.set(mags.p.head, head)
        ctx.set(mags.p.value, value)
        ctx.set(mags.valid, 1)
        await ctx.tick().until(mags.ready)
        ctx.set(mags.valid, 0)


@pytest.mark.parametrize("seed", [11, 12])
def test_unit_matches_golden_on_amaranth_sim(seed):
    """A few short sequences of every kind at the Python level (the full suite runs on
    Verilator in test_pruner_rtl.py)."""
    params = PrunerParams(24, 3, 4, 8, 11, 12, 14)
    dut = PruningUnit(**params.kwargs())
    specs = [dataclasses.replace(s, n_layers=min(s.n_layers, 4))
             for s in make_sequences(params, 5, seed)]
    layout = kv_layout(params, 4, d_head=16)
    rng = np.random.default_rng(seed)

    async def bench(ctx):
        for f, v in kv_config(layout).items():
            ctx.set(dut.cfg[f], v)
        port = AmaranthPort(ctx, dut, rng)
        for spec in specs:
            await run_sequence(port, spec, params, layout)

    run(dut, bench)


def test_unit_fetch_skips_absent_planes():
    """A plane with 0 row bytes emits no requests (golden skips 0-bit planes); with both
    planes absent FETCH returns an empty list."""
    params = PrunerParams(16, 3, 4, 8, 12, 12, 16)
    dut = PruningUnit(**params.kwargs())
    rng = np.random.default_rng(3)
    layouts = [KVLayout(2, 3, 16, 8, 0, 0, 8, 0), KVLayout(2, 3, 16, 8, 8, 0, 0, 0),
               KVLayout(2, 3, 16, 8, 0, 0, 0, 0)]

    async def bench(ctx):
        port = AmaranthPort(ctx, dut, rng)
        state = PruningState(16, 3, 8, 12, 16)
        state.start(10)
        await port.command(Op.START.value, 10)
        rows = rng.integers(0, 256, size=(3, 10)).astype(np.uint64)
        await port.send_rows(rows)
        state.add_probs(rows)
        for head, mag in ((0, 5), (1, 9), (2, 7)):
            await port.send_magnitude(head, mag)
            state.add_head_magnitude(head, mag)
        await port.command(Op.PRUNE.value, 5)
        await port.command(Op.PRUNE_HEADS.value, 2)
        state.prune(5)
        state.prune_heads(2)
        for layout in layouts:
            for f, v in kv_config(layout).items():
                ctx.set(dut.cfg[f], v)
            got = requests_to_trace(await port.command(Op.FETCH.value, 1), 1)
            expect = kv_fetch_trace(layout, 1, state.alive, state.heads)
            assert list(got.lines()) == list(expect.lines())
            assert got.plane.tolist() == expect.plane.tolist()
        assert len(expect) == 0 and len(got) == 0

    run(dut, bench)


@pytest.mark.parametrize("seed", [21, 22])
def test_unit_decode_sequences_on_amaranth_sim(seed):
    """Short decode sequences of every kind (APPEND, FETCH, SELECT kv / top-p with flat rows,
    PRUNE, a list filled to the capacity) against the golden decode state."""
    params = PrunerParams(24, 3, 4, 8, 11, 12, 14)
    dut = PruningUnit(**params.kwargs())
    layout = kv_layout(params, 4, d_head=16)
    rng = np.random.default_rng(seed)
    specs = make_decode_sequences(params, 5, seed, steps=8)

    async def bench(ctx):
        for f, v in kv_config(layout).items():
            ctx.set(dut.cfg[f], v)
        port = AmaranthPort(ctx, dut, rng)
        for spec in specs:
            ctx.set(dut.lsb_threshold, spec.lsb_threshold)
            result = await run_decode_sequence(port, spec, params, layout)
            assert result.selects or spec.fill, spec

    run(dut, bench)
