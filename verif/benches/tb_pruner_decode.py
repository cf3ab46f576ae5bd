"""cocotb bench of ``pruning_unit``'s decode commands against the golden
:class:`~psa.golden.decode.DecodePruningState`.

Each decode sequence (:func:`psa.verif.pruner_cases.make_decode_sequences`) runs step by step
on the DUT and on golden through :func:`psa.verif.pruner_cases.run_decode_sequence`: APPEND,
FETCH, one SELECT per query row (top-kv and top-p alternating, the edges k = 0, k >= alive,
p = 0, p = 2^prob_bits among the targets; flat rows with LSB-plane requests), PRUNE, and a
list filled to the capacity; every request stream is compared line for line.

Environment: as :mod:`psa.verif.benches.tb_pruner`, plus ``PSA_STEPS`` (steps per sequence).
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from psa.hw.layouts import select_arg
from psa.hw.pruner import Op
from psa.verif.benches.tb_pruner import PrunerTB
from psa.verif.pruner_cases import (
    DecodeSpec,
    kv_layout,
    make_decode_sequences,
    run_decode_sequence,
)


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@cocotb.test()
async def decode_sequences(dut):
    """``PSA_SEQUENCES`` decode sequences of ``PSA_STEPS`` steps, golden-checked."""
    seed = int(_env("PSA_SEED", "1"))
    tb = PrunerTB(dut, seed, float(_env("PSA_IDLE", "0.2")), float(_env("PSA_STALL", "0.3")))
    specs = make_decode_sequences(tb.params, int(_env("PSA_SEQUENCES", "10")), seed,
                                  int(_env("PSA_STEPS", "60")))
    layout = kv_layout(tb.params, max(s.n_layers for s in specs))
    await tb.reset()
    steps = selects = 0
    for spec in specs:
        tb.set_layout(layout, spec.lsb_threshold)
        result = await run_decode_sequence(tb, spec, tb.params, layout)
        steps += result.appends
        selects += result.selects
        if not spec.fill:
            assert not int(dut.error.value), f"seed {spec.seed}: error flag raised"
    dut._log.info("%d decode sequences, %d steps, %d selects, all equal to golden (seed %d)",
                  len(specs), steps, selects, seed)


@cocotb.test()
async def decode_reset_mid_step(dut):
    """A reset in the middle of a SELECT row returns to ``start(0)`` (no token, next id 0);
    decode sequences then run bit-exact; a SELECT head out of range raises ``error``."""
    seed = int(_env("PSA_SEED", "1"))
    tb = PrunerTB(dut, seed, 0.1, 0.2)
    p = tb.params
    layout = kv_layout(p, 4)
    tb.set_layout(layout, 1 << (p.prob_bits - 2))
    await tb.reset()
    n = p.max_tokens // 2
    await tb.command(Op.START.value, n)
    for _ in range(3):
        await tb.command(Op.APPEND.value, 1)
    tb.cmd.send({"op": Op.SELECT.value, "arg": select_arg(3, 0, False, True)})
    for _ in range(-(-(n + 3) // p.lanes) // 2):          # half a row, no wait
        tb.prob.send({"data": [1] * p.lanes, "last": 0})
    await ClockCycles(dut.clk, 4)
    await tb.reset(3)
    assert int(dut.alive_count.value) == 0
    assert await tb.command(Op.READ_TOKENS.value) == []
    await tb.command(Op.APPEND.value, 7)                   # after reset the first id is 0
    got = await tb.command(Op.READ_TOKENS.value)
    assert [(b["id"], b["score"]) for b in got] == [(0, 7)]
    for spec in make_decode_sequences(p, 2, seed + 5, 12):
        tb.set_layout(layout, spec.lsb_threshold)
        await run_decode_sequence(tb, spec, p, layout)
    spec = DecodeSpec(4, 2, seed=seed)
    await run_decode_sequence(tb, spec, p, layout)
    assert not int(dut.error.value)
    await tb.select(select_arg(1, p.n_heads, False), np.zeros(int(dut.alive_count.value),
                                                               np.int64))
    assert await tb.error(), "SELECT of a head >= n_heads must raise error"
