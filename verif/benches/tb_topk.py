"""cocotb bench of ``topk_engine`` (:mod:`psa.hw.topk_top`) against golden :func:`topk`.

Parameters come from the environment (set by tests/hw/test_topk_rtl.py and
bench/topk_cycles.py): ``PSA_LANES``, ``PSA_MAX_N``, ``PSA_SIGNED`` (cross-checked against
the port widths; ``W`` is read from ``in_data``), ``PSA_SEED``, ``PSA_PACKETS``, ``PSA_IDLE``
(probability of an input gap), ``PSA_STALL`` (probability of ``out_ready`` low). The cycle
test reads ``PSA_BENCH_POINTS`` (``n:k`` pairs), ``PSA_BENCH_PACKETS`` and writes
``PSA_BENCH_OUT`` (JSON).
"""

from __future__ import annotations

import json
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from psa.golden.topk import topk
from psa.verif.streams import PacketCollector, Scoreboard, StreamSink, StreamSource

IN_FIELDS = ("data", "count", "last", "k")
OUT_FIELDS = ("data", "index", "count", "last")
DATASETS = ("uniform", "duplicates", "equal", "ascending", "descending")


class TopKTB:
    """Clock, reset, stream source/sink, golden-fed scoreboard and cycle stamps for one DUT."""

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
        self.rng = random.Random(seed)
        self.context = (f"seed={seed} P={p} W={self.width} N={n} signed={int(self.signed)}")
        self.cycle = 0
        self.overflows = 0
        self.first_in: list[int] = []      # cycle of each packet's first accepted beat
        self.last_out: list[int] = []      # cycle of each packet's last output beat
        self._new_packet = True
        self.scoreboard = Scoreboard(self.context)
        self.collector = PacketCollector(self._on_packet)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        self.source = StreamSource(dut, "in_", IN_FIELDS, p, idle=idle,
                                   rng=random.Random(seed + 1))
        self.source.on_transfer = self._on_input
        self.sink = StreamSink(dut, "out_", OUT_FIELDS, p, vectors=("data", "index"),
                               signed=("data",) if self.signed else (), stall=stall,
                               rng=random.Random(seed + 2), callback=self._on_beat)
        cocotb.start_soon(self._count())

    # -- monitors
    async def _count(self) -> None:
        while True:
            await RisingEdge(self.dut.clk)
            self.cycle += 1
            if int(self.dut.overflow.value):
                self.overflows += 1

    def _on_input(self, beat) -> None:
        if self._new_packet:
            self.first_in.append(self.cycle)
        self._new_packet = bool(beat["last"])

    def _on_beat(self, beat) -> None:
        self.collector(beat)

    def _on_packet(self, beats) -> None:
        self.last_out.append(self.cycle + 1)
        p = self.lanes
        counts = [b["count"] for b in beats]
        shape_ok = all(c == p for c in counts[:-1]) and 0 <= counts[-1] <= p and \
            (counts[-1] > 0 or len(beats) == 1)
        items = [(b["index"][j], b["data"][j]) for b in beats for j in range(b["count"])]
        self.scoreboard.receive(items if shape_ok else ("bad beat counts", counts))

    # -- stimulus
    async def reset(self, cycles: int = 2) -> None:
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    def value_range(self) -> tuple[int, int]:
        w = self.width
        return (-(1 << (w - 1)), (1 << (w - 1)) - 1) if self.signed else (0, (1 << w) - 1)

    def make_values(self, n: int, dataset: str) -> list[int]:
        lo, hi = self.value_range()
        rng = self.rng
        if dataset == "duplicates":
            return [rng.randint(max(lo, 0), min(hi, 3)) for _ in range(n)]
        if dataset == "equal":
            v = rng.randint(lo, hi)
            return [v] * n
        values = [rng.randint(lo, hi) for _ in range(n)]
        if dataset == "ascending":
            values.sort()
        elif dataset == "descending":
            values.sort(reverse=True)
        return values

    def send_packet(self, values: list[int], k: int, tag: str) -> None:
        """Queue a packet (beats of random fill when ``ragged``) and its golden result."""
        p, n_max = self.lanes, self.max_n
        k = min(k, (1 << n_max.bit_length()) - 1)
        kept = np.asarray(values[:n_max], dtype=np.int64)
        result = topk(kept, k)
        self.scoreboard.expect(list(zip(result.indices.tolist(), result.values.tolist(),
                                                strict=True)),
                               f"{tag} n={len(values)} k={k}")
        beats = [values[i:i + p] for i in range(0, len(values), p)] or [[]]
        for i, chunk in enumerate(beats):
            self.source.send({"data": chunk + [0] * (p - len(chunk)), "count": len(chunk),
                              "last": int(i == len(beats) - 1), "k": k})

    def random_packet(self, index: int, overflow_rate: float = 0.03) -> bool:
        """Queue one random packet; returns True if it overflows ``N``."""
        rng = self.rng
        dataset = rng.choice(DATASETS)
        overflow = rng.random() < overflow_rate
        n = rng.randint(self.max_n + 1, self.max_n + 2 * self.lanes) if overflow \
            else rng.randint(0, self.max_n)
        k = rng.randint(0, n + 2)
        self.send_packet(self.make_values(n, dataset), k, f"packet {index} {dataset}")
        return overflow

    async def drain(self, limit: int) -> None:
        """Wait until every expected packet came out, or fail after ``limit`` cycles."""
        start = self.cycle
        while self.scoreboard.expected and self.cycle - start < limit:
            await RisingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 4)


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, str(default)))


def _drain_limit(tb: TopKTB, packets: int) -> int:
    n = tb.max_n
    per_packet = 6 * n // tb.lanes + 64 * n.bit_length() + 200
    return packets * per_packet + 10_000


@cocotb.test()
async def random_packets(dut):
    """Random packets of every dataset, overflows, input gaps and output back-pressure."""
    seed = _env_int("PSA_SEED", 1)
    tb = TopKTB(dut, seed, _env_float("PSA_IDLE", 0.2), _env_float("PSA_STALL", 0.3))
    packets = _env_int("PSA_PACKETS", 200)
    await tb.reset()
    overflows = sum(tb.random_packet(i) for i in range(packets))
    await tb.drain(_drain_limit(tb, packets))
    tb.scoreboard.check()
    assert tb.scoreboard.matched == packets, f"{tb.context}: {tb.scoreboard.matched} matched"
    assert tb.overflows == overflows, \
        f"{tb.context}: {tb.overflows} overflow pulses for {overflows} long packets"
    dut._log.info("%s: %d packets ok (%d overflowed) in %d cycles",
                  tb.context, packets, overflows, tb.cycle)


@cocotb.test()
async def reset_mid_packet(dut):
    """A reset in the middle of a packet leaves the engine clean for the next packets."""
    seed = _env_int("PSA_SEED", 1) + 100
    tb = TopKTB(dut, seed, 0.1, 0.3)
    await tb.reset()
    for round_ in range(3):
        for i in range(3):
            tb.random_packet(i, overflow_rate=0.0)
        queued = tb.source.sent + len(tb.source.queue) + int(not tb.source.idle_now())
        values = tb.make_values(tb.max_n, "uniform")
        tb.send_packet(values, tb.max_n // 2, "cut")
        # Reset while the long packet is streaming in (and earlier ones are in flight).
        limit = tb.cycle + _drain_limit(tb, 4)
        while tb.source.sent < queued + tb.max_n // (2 * tb.lanes) and tb.cycle < limit:
            await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        dut.rst.value = 1
        tb.source.clear()
        await ClockCycles(dut.clk, 2)
        tb.scoreboard.clear()
        tb.collector.clear()
        tb.scoreboard.failures.clear()
        tb._new_packet = True
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        for i in range(5):
            tb.random_packet(i, overflow_rate=0.0)
        await tb.drain(_drain_limit(tb, 5))
        tb.scoreboard.check()
        assert tb.scoreboard.matched >= 5 * (round_ + 1), f"{tb.context}: outputs missing"
        dut._log.info("%s: reset round %d ok", tb.context, round_)


@cocotb.test()
async def cycles(dut):
    """Latency (isolated packets) and back-to-back throughput for PSA_BENCH_POINTS."""
    points = os.environ.get("PSA_BENCH_POINTS")
    if not points:
        return
    seed = _env_int("PSA_SEED", 1)
    tb = TopKTB(dut, seed)
    packets = _env_int("PSA_BENCH_PACKETS", 100)
    await tb.reset()
    results = []
    for point in points.split(","):
        n, k = (int(x) for x in point.split(":"))
        latencies = []
        for i in range(packets):        # one packet in flight at a time
            tb.send_packet(tb.make_values(n, "uniform"), k, f"latency {i}")
            await tb.drain(_drain_limit(tb, 1))
            latencies.append(tb.last_out[-1] - tb.first_in[-1])
        start = len(tb.last_out)
        for i in range(packets):        # back to back
            tb.send_packet(tb.make_values(n, "uniform"), k, f"throughput {i}")
        await tb.drain(_drain_limit(tb, packets))
        done = tb.last_out[start:]
        gaps = np.diff(done)
        results.append({"n": n, "k": k, "latency": latencies, "interval": gaps.tolist()})
        tb.scoreboard.check()
    with open(os.environ["PSA_BENCH_OUT"], "w") as f:
        json.dump({"lanes": tb.lanes, "width": tb.width, "max_n": tb.max_n,
                   "signed": tb.signed, "seed": seed, "points": results}, f)
