"""cocotb bench of ``topk_engine`` (:mod:`psa.hw.topk_top`) against golden :func:`topk`.

The stimulus and golden check are :mod:`psa.verif.topk_cases`' (shared with the Amaranth
simulator tests); :class:`TopKTB` is its :class:`~psa.verif.topk_cases.TopKPort` on
Verilator: reset-aware stream source and sink (the sink checks the output's valid/ready
rules every cycle, :mod:`psa.verif.streams`), overflow pulses and cycle stamps.

Parameters come from the environment (set through :mod:`psa.verif.designs`): ``PSA_LANES``,
``PSA_MAX_N``, ``PSA_SIGNED`` (cross-checked against the port widths; ``W`` is read from
``in_data``), ``PSA_SEED``, ``PSA_PACKETS``, ``PSA_IDLE`` (probability of an input gap),
``PSA_STALL`` (probability of ``out_ready`` low). The cycle measurements are the separate
module :mod:`psa.verif.benches.tb_topk_cycles`.
"""

from __future__ import annotations

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from psa.verif.streams import PacketCollector, StreamSink, StreamSource
from psa.verif.topk_cases import TopKCheck, drain_limit, run_random_packets

IN_FIELDS = ("data", "count", "last", "k")
OUT_FIELDS = ("data", "index", "count", "last")


class TopKTB:
    """:class:`~psa.verif.topk_cases.TopKPort` of one Verilated DUT: clock, reset, stream
    source/sink, overflow count and cycle stamps (``first_in``: cycle of each packet's first
    accepted beat; ``last_out``: cycle of each packet's last output beat)."""

    def __init__(self, dut, seed: int, idle: float = 0.0, stall: float = 0.0):
        self.dut = dut
        self.seed = seed
        self.lanes = int(os.environ.get("PSA_LANES", "4"))
        self.max_n = int(os.environ.get("PSA_MAX_N", "64"))
        self.signed = os.environ.get("PSA_SIGNED", "0") == "1"
        p, n = self.lanes, self.max_n
        assert len(dut.in_data) % p == 0, "in_data is not a whole number of lanes"
        self.width = len(dut.in_data) // p
        assert len(dut.in_count) == p.bit_length(), "in_count width != $clog2(P+1)"
        assert len(dut.in_k) == n.bit_length(), "in_k width != $clog2(N+1)"
        assert len(dut.out_index) == p * (n - 1).bit_length(), "out_index != P*$clog2(N)"
        assert len(dut.out_data) == p * self.width
        self.cycle = 0
        self.overflows = 0
        self.on_packet = None
        self.first_in: list[int] = []
        self.last_out: list[int] = []
        self._new_packet = True
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        self.source = StreamSource(dut, "in_", IN_FIELDS, p, idle=idle,
                                   rng=random.Random(seed + 1), reset=dut.rst)
        self.source.on_transfer = self._on_input
        self.collector = PacketCollector(self._on_packet)
        self.sink = StreamSink(dut, "out_", OUT_FIELDS, p, vectors=("data", "index"),
                               signed=("data",) if self.signed else (), stall=stall,
                               rng=random.Random(seed + 2), callback=self.collector,
                               reset=dut.rst)
        self.sink.on_reset.append(self._on_reset)
        cocotb.start_soon(self._count())

    async def _count(self) -> None:
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1
            if int(self.dut.overflow.value):
                self.overflows += 1

    def _on_reset(self) -> None:
        self._new_packet = True

    def _on_input(self, beat) -> None:
        if self._new_packet:
            self.first_in.append(self.cycle)
        self._new_packet = bool(beat["last"])

    def _on_packet(self, beats) -> None:
        self.last_out.append(self.cycle + 1)   # the transfer is at the coming rising edge
        if self.on_packet is not None:
            self.on_packet(beats)

    # -- TopKPort
    def send(self, beat) -> None:
        self.source.send(beat)

    async def tick(self) -> None:
        await RisingEdge(self.dut.clk)

    async def reset(self, cycles: int = 2) -> None:
        """Hold ``rst`` for ``cycles`` cycles (source and sink flush themselves)."""
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, str(default)))


@cocotb.test()
async def random_packets(dut):
    """Edge cases, then ``PSA_PACKETS`` random packets of every dataset (ragged beats,
    overflows) under input gaps and output back-pressure; all equal to golden."""
    seed = _env_int("PSA_SEED", 1)
    tb = TopKTB(dut, seed, _env_float("PSA_IDLE", 0.2), _env_float("PSA_STALL", 0.3))
    await tb.reset()
    check = await run_random_packets(tb, seed, _env_int("PSA_PACKETS", 200))
    dut._log.info("%s: %d packets ok (%d overflowed) in %d cycles",
                  check.context, check.queued, check.overflowing, tb.cycle)


@cocotb.test()
async def reset_mid_packet(dut):
    """Three rounds: packets in flight and a long packet cut half-way by a reset, then five
    more packets. Every packet that completed before the reset equals golden; after it the
    output is exactly the five new packets' golden results (nothing of the cut ones)."""
    seed = _env_int("PSA_SEED", 1) + 100
    tb = TopKTB(dut, seed, 0.1, 0.3)
    check = TopKCheck(tb, seed)
    await tb.reset()
    for round_ in range(3):
        for i in range(3):
            check.random_packet(i, overflow_rate=0.0)
        queued = tb.source.sent + len(tb.source.queue) + int(not tb.source.idle_now())
        check.send_packet(check.make_values(tb.max_n, "uniform"), tb.max_n // 2,
                          f"round {round_} cut", ragged=False)
        limit = tb.cycle + drain_limit(tb, 4)
        while tb.source.sent < queued + tb.max_n // (2 * tb.lanes) and tb.cycle < limit:
            await RisingEdge(dut.clk)
        assert not tb.source.idle_now(), f"{check.context}: the cut packet was sent whole"
        await FallingEdge(dut.clk)
        dut.rst.value = 1
        await ClockCycles(dut.clk, 2)
        cut = check.scoreboard.clear()       # packets that had not completed
        assert f"round {round_} cut n={tb.max_n} k={tb.max_n // 2}" in cut, cut
        before = check.scoreboard.received
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        for i in range(5):
            check.random_packet(i, overflow_rate=0.0)
        # A long quiet window: a stale output of a cut packet would arrive as unexpected.
        await check.drain(drain_limit(tb, 5), quiet=8 * tb.max_n // tb.lanes + 200)
        check.scoreboard.check()
        after = check.scoreboard.received - before
        assert after == 5, f"{check.context}: {after} packets out after reset {round_}, not 5"
        dut._log.info("%s: reset round %d ok (%d cut)", check.context, round_, len(cut))
    assert check.scoreboard.matched == check.scoreboard.received
