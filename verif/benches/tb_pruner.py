"""cocotb bench of ``pruning_unit`` (:mod:`psa.hw.pruner_top`) against the golden
:class:`~psa.golden.pruning.PruningState`.

Every sequence is run command for command on the DUT and on the golden model by
:func:`psa.verif.pruner_cases.run_sequence`, which after every layer compares the fetch
requests (as trace lines), the alive list with scores, the kept heads with scores and every
prune's output.

Environment (set by tests/hw/test_pruner_rtl.py and bench/pruner_cycles.py):
``PSA_PRUNER_PARAMS`` (JSON of :class:`PrunerParams`, cross-checked against the port widths),
``PSA_SEED``, ``PSA_SEQUENCES`` (count), ``PSA_IDLE`` (input gap probability), ``PSA_STALL``
(output back-pressure probability), ``PSA_TRACE_OUT`` (write the first sequence's captured
trace there). Sources and sinks are reset-aware and the sinks check the valid/ready rules of
the three outputs every cycle (:mod:`psa.verif.streams`). The cycle measurements and the
trace capture are the separate modules :mod:`psa.verif.benches.tb_pruner_cycles` and
:mod:`psa.verif.benches.tb_pruner_capture`.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from psa.golden.trace import AccessTrace
from psa.hw.pruner import Op
from psa.verif.pruner_cases import (
    PrunerParams,
    kv_config,
    kv_layout,
    make_sequences,
    run_sequence,
)
from psa.verif.streams import PacketCollector, StreamSink, StreamSource

OUTPUTS = {"tok": ("id", "score", "last", "empty"), "head": ("id", "score", "last", "empty"),
           "fetch": ("addr", "size", "plane", "head", "token", "last", "empty")}
OUTPUT_OF = {Op.PRUNE.value: "tok", Op.READ_TOKENS.value: "tok", Op.PRUNE_HEADS.value: "head",
             Op.READ_HEADS.value: "head", Op.FETCH.value: "fetch", Op.SELECT.value: "fetch"}


class _StampedCollector(PacketCollector):
    """A :class:`PacketCollector` that also calls ``on_first`` at each packet's first beat."""

    def __init__(self, on_packet, on_first):
        super().__init__(on_packet)
        self.on_first = on_first

    def __call__(self, beat) -> None:
        if not self.partial:
            self.on_first()
        super().__call__(beat)


class PrunerTB:
    """Clock, reset, the three input sources and three output sinks of one DUT; implements
    :class:`psa.verif.pruner_cases.PrunerPort`. Records cycle stamps for the benchmark."""

    def __init__(self, dut, seed: int, idle: float = 0.0, stall: float = 0.0):
        self.dut = dut
        self.params = PrunerParams(**json.loads(os.environ["PSA_PRUNER_PARAMS"]))
        p = self.params
        assert len(dut.prob_data) == p.lanes * p.prob_bits, "prob_data != P * prob_bits"
        assert len(dut.tok_score) == p.score_bits and len(dut.head_score) == p.head_score_bits
        assert len(dut.mag_value) == p.mag_bits and len(dut.fetch_addr) == p.addr_bits
        assert len(dut.tok_id) == max(1, (p.max_tokens - 1).bit_length())
        self.seed = seed
        self.cycle = 0
        self.packets: dict[str, list[list[dict]]] = {name: [] for name in OUTPUTS}
        self.last_out: dict[str, int] = {}
        self.first_out: dict[str, int] = {}
        self.prob_cycles: list[int] = []
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        rng = random.Random(seed)
        self.cmd = StreamSource(dut, "cmd_", ("op", "arg"), rng=random.Random(rng.random()),
                                reset=dut.rst)
        self.cmd_accepted = 0    # cycle (rising edge count) of the last command transfer
        self.cmd.on_transfer = lambda beat: setattr(self, "cmd_accepted", self.cycle)
        self.prob = StreamSource(dut, "prob_", ("data", "last"), p.lanes, idle=idle,
                                 rng=random.Random(rng.random()), reset=dut.rst)
        self.prob.on_transfer = lambda beat: self.prob_cycles.append(self.cycle)
        self.mag = StreamSource(dut, "mag_", ("head", "value"), idle=idle,
                                rng=random.Random(rng.random()), reset=dut.rst)
        self.collectors = {}
        for name, fields in OUTPUTS.items():
            collector = _StampedCollector(
                lambda beats, name=name: self._on_packet(name, beats),
                lambda name=name: self.first_out.__setitem__(name, self.cycle + 1))
            self.collectors[name] = collector
            StreamSink(dut, f"{name}_", fields, stall=stall, rng=random.Random(rng.random()),
                       callback=collector, reset=dut.rst)
        cocotb.start_soon(self._count())

    async def _count(self) -> None:
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1

    def _on_packet(self, name: str, beats: list[dict]) -> None:
        self.last_out[name] = self.cycle + 1     # the transfer is at the coming rising edge
        self.packets[name].append([b for b in beats if not b["empty"]])

    def set_layout(self, layout, lsb_threshold: int = 0) -> None:
        for field, value in kv_config(layout).items():
            getattr(self.dut, f"cfg_{field}").value = value
        self.dut.cfg_lsb_threshold.value = lsb_threshold

    async def reset(self, cycles: int = 2) -> None:
        """Hold ``rst`` for ``cycles`` cycles; the sources abandon what they hold and the
        sinks drop partial lists by themselves (reset-aware, :mod:`psa.verif.streams`)."""
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def _until(self, condition, limit: int = 2_000_000, what: str = "") -> None:
        for _ in range(limit):
            if condition():
                return
            await RisingEdge(self.dut.clk)
        raise AssertionError(f"seed {self.seed}: timeout waiting for {what}")

    # -- PrunerPort
    async def command(self, op: int, arg: int = 0) -> list[dict]:
        target = self.cmd.sent + 1
        self.cmd.send({"op": op, "arg": arg})
        await self._until(lambda: self.cmd.sent >= target, what=f"command {op} accepted")
        if op not in OUTPUT_OF:
            return []
        name = OUTPUT_OF[op]
        await self._until(lambda: bool(self.packets[name]), what=f"{name} list of op {op}")
        return self.packets[name].pop(0)

    async def select(self, arg: int, row: np.ndarray) -> list[dict]:
        """``SELECT arg`` then ``row``; the fetch requests it streams out."""
        target = self.cmd.sent + 1
        self.cmd.send({"op": Op.SELECT.value, "arg": arg})
        await self._until(lambda: self.cmd.sent >= target, what="SELECT accepted")
        if len(row):
            await self.send_rows(np.asarray(row)[None, :])
        await self._until(lambda: bool(self.packets["fetch"]), what="SELECT requests")
        return self.packets["fetch"].pop(0)

    async def error(self) -> bool:
        await RisingEdge(self.dut.clk)
        await RisingEdge(self.dut.clk)
        return bool(int(self.dut.error.value))

    async def send_rows(self, rows: np.ndarray) -> None:
        p = self.params.lanes
        alive = rows.shape[1]
        beats = -(-alive // p)
        padded = np.zeros((rows.shape[0], beats * p), dtype=np.int64)
        padded[:, :alive] = rows
        for row in padded:
            for b in range(beats):
                self.prob.send({"data": row[b * p:(b + 1) * p].tolist(),
                                "last": int(b == beats - 1)})
        await self._until(self.prob.idle_now, what="probabilities accepted")

    async def send_magnitude(self, head: int, value: int) -> None:
        target = self.mag.sent + 1
        self.mag.send({"head": head, "value": value})
        await self._until(lambda: self.mag.sent >= target, what="magnitude accepted")


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@cocotb.test()
async def golden_sequences(dut):
    """``PSA_SEQUENCES`` generated sequences, each compared with golden after every layer."""
    seed = int(os.environ.get("PSA_SEED", "1"))
    tb = PrunerTB(dut, seed, _env_float("PSA_IDLE", 0.2), _env_float("PSA_STALL", 0.3))
    specs = make_sequences(tb.params, int(os.environ.get("PSA_SEQUENCES", "10")), seed)
    layout = kv_layout(tb.params, max(s.n_layers for s in specs))
    tb.set_layout(layout)
    await tb.reset()
    checks = 0
    for i, spec in enumerate(specs):
        result = await run_sequence(tb, spec, tb.params, layout)
        checks += result.checks
        assert not int(dut.error.value), f"seed {spec.seed}: error flag raised"
        if i == 0 and os.environ.get("PSA_TRACE_OUT"):
            AccessTrace.concat(result.traces).write(os.environ["PSA_TRACE_OUT"])
    dut._log.info("%d sequences, %d layer checks, all equal to golden (seed %d)",
                  len(specs), checks, seed)


@cocotb.test()
async def reset_mid_layer(dut):
    """A reset in the middle of a row leaves the state of ``start(0)``; a full sequence then
    runs bit-exact; bad inputs raise the sticky error flag, cleared by START."""
    seed = int(os.environ.get("PSA_SEED", "1"))
    tb = PrunerTB(dut, seed, 0.1, 0.2)
    p = tb.params
    specs = make_sequences(p, 2, seed + 99)
    layout = kv_layout(p, max(s.n_layers for s in specs))
    tb.set_layout(layout)
    await tb.reset()
    await run_sequence(tb, specs[0], p, layout)
    await tb.command(Op.START.value, p.max_tokens)
    for _ in range(3 * -(-p.max_tokens // p.lanes) // 2):   # one and a half rows, no wait
        tb.prob.send({"data": [1] * p.lanes, "last": 0})
    tb.mag.send({"head": 0, "value": 5})
    await ClockCycles(dut.clk, 5)
    await tb.reset(3)
    assert int(dut.alive_count.value) == 0 and int(dut.head_count.value) == p.n_heads
    assert await tb.command(Op.READ_TOKENS.value) == []
    heads = await tb.command(Op.READ_HEADS.value)
    assert [(b["id"], b["score"]) for b in heads] == [(h, 0) for h in range(p.n_heads)]
    await run_sequence(tb, specs[1], p, layout)
    assert not int(dut.error.value)
    await tb.command(Op.START.value, p.max_tokens + 1)
    assert int(dut.error.value) and int(dut.alive_count.value) == p.max_tokens
    await tb.command(Op.START.value, 1)
    assert not int(dut.error.value)
    await tb.command(Op.PRUNE_HEADS.value, 0)
    await tb.send_magnitude(0, 1)
    await RisingEdge(dut.clk)
    assert int(dut.error.value), "magnitude for a pruned head must raise error"
