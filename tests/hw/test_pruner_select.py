"""RowSelect (hw/pruner_select.py) on Amaranth's simulator against golden select_kv /
select_topp: random rows, ties, k = 0, k >= n, p = 0, p = 2^b, rows whose mass is below p,
random back-pressure, a second (rewound) emission equal to the first."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from psa.golden.decode import select_kv, select_topp
from psa.hw.pruner_select import RowSelect


def _rows(rng, n, bits, kind):
    top = (1 << bits) - 1
    if kind == "flat":
        return np.full(n, int(rng.integers(0, top + 1)), np.int64)
    if kind == "few":
        return rng.integers(0, 3, n).astype(np.int64)
    if kind == "softmax":
        x = np.exp(rng.normal(0, 2, n))
        return np.minimum(np.floor(x / x.sum() * (1 << bits) + 0.5), top).astype(np.int64)
    return rng.integers(0, top + 1, n).astype(np.int64)


def check_row_select(max_tokens, lanes, bits, digit, cases, seed, stall=0.3):
    dut = RowSelect(max_tokens, lanes, bits, digit)
    rng = np.random.default_rng(seed)

    async def bench(ctx):
        for row, target, topp, thr in cases:
            n = len(row)
            ctx.set(dut.n, n)
            ctx.set(dut.target, target)
            ctx.set(dut.topp, topp)
            ctx.set(dut.lsb_threshold, thr)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            beats = -(-n // lanes)
            pad = np.zeros(beats * lanes, np.int64)
            pad[:n] = row
            for bt in range(beats):
                ctx.set(dut.beats.p.data, pad[bt * lanes:(bt + 1) * lanes].tolist())
                ctx.set(dut.beats.p.last, bt == beats - 1)
                ctx.set(dut.beats.valid, 1)
                assert ctx.get(dut.beats.ready)
                assert not ctx.get(dut.error)
                await ctx.tick()
            ctx.set(dut.beats.valid, 0)
            cycles = 0
            while not ctx.get(dut.found):
                await ctx.tick()
                cycles += 1
            expect = select_topp(row, target) if topp else select_kv(row, target)
            assert bool(ctx.get(dut.flat)) == (int(row.max()) < thr)
            if target == 0:
                assert len(expect) == 0
                continue
            for _ in range(2):
                ctx.set(dut.rewind, 1)
                await ctx.tick()
                ctx.set(dut.rewind, 0)
                got = []
                for _ in range(10 * n + 100):
                    ready = bool(rng.random() >= stall)
                    ctx.set(dut.out.ready, ready)
                    beat = None
                    if ready and ctx.get(dut.out.valid):
                        beat = (ctx.get(dut.out.p.pos), ctx.get(dut.out.p.last))
                    await ctx.tick()
                    if beat is not None:
                        got.append(beat[0])
                        if beat[1]:
                            break
                ctx.set(dut.out.ready, 0)
                assert got == expect.tolist(), (row.tolist(), target, topp)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("max_tokens,lanes,bits,digit,seed", [
    (40, 4, 8, 4, 1), (37, 8, 6, 4, 2), (16, 1, 5, 2, 3), (64, 8, 12, 4, 4), (20, 2, 7, 3, 5)])
def test_row_select_matches_golden(max_tokens, lanes, bits, digit, seed):
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(24):
        n = int(rng.integers(1, max_tokens + 1)) if i % 6 else max_tokens
        row = _rows(rng, n, bits, ("uniform", "flat", "few", "softmax")[i % 4])
        topp = bool(i % 2)
        if topp:
            total = int(row.sum())
            target = int((0, 1 << bits, total, total + 1, rng.integers(1, (1 << bits) + 1),
                          rng.integers(1, (1 << bits) + 1))[i // 2 % 6])
        else:
            target = int((0, n, n + 3, 1, rng.integers(1, n + 1),
                          rng.integers(1, n + 1))[i // 2 % 6])
        thr = int(rng.integers(0, (1 << bits) + 1))
        cases.append((row, min(target, (1 << 17) - 1), topp, thr))
    check_row_select(max_tokens, lanes, bits, digit, cases, seed)
