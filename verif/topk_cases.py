"""Top-k engine stimulus and golden check shared by both simulators.

:class:`TopKPort` is what a simulated engine offers (the cocotb/Verilator bench
:class:`psa.verif.benches.tb_topk.TopKTB` and the Amaranth-simulator port of
tests/hw/test_topk_units.py); :class:`TopKCheck` draws packets (random datasets, edge cases,
ragged beats, overflows), queues them on the port with their :func:`psa.golden.topk.topk`
result and compares every output packet in order on a
:class:`~psa.verif.streams.Scoreboard`. :func:`run_random_packets` is the whole random test.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from psa.golden.topk import topk
from psa.verif.streams import Scoreboard

__all__ = ["TopKPort", "TopKCheck", "DATASETS", "ADVERSARIAL", "run_random_packets",
           "drain_limit"]

#: Data sets against the selection rule: sorted either way, all equal, two values, a
#: sawtooth, every element sharing the top bits (the radix digits of the engine cannot split
#: them: each pass keeps the whole packet), and one crafted against a quick-select pivot
#: rule (the first beat holds the extremes, the rest a narrow sorted ramp between them).
ADVERSARIAL = ("ascending", "descending", "equal", "two_values", "sawtooth", "shared_top",
               "anti_pivot")
DATASETS = ("uniform", "duplicates", *ADVERSARIAL)
Beat = dict[str, Any]


class TopKPort(Protocol):
    """A simulated ``topk_engine`` as :class:`TopKCheck` drives it.

    ``send`` queues one input beat (``data``: list of ``lanes`` ints, ``count``, ``last``,
    ``k``), which the port offers with its own input gaps; the port applies its own output
    back-pressure and calls ``on_packet`` with every output packet (list of beats: ``data``
    and ``index`` lists, ``count``, ``last``) in order. ``cycle`` counts clock cycles and
    ``overflows`` the ``overflow`` pulses seen; ``tick`` waits one cycle.
    """

    lanes: int
    width: int
    max_n: int
    signed: bool
    cycle: int
    overflows: int
    on_packet: Callable[[list[Beat]], None] | None

    def send(self, beat: Beat) -> None: ...

    async def tick(self) -> None: ...


def drain_limit(port: TopKPort, packets: int) -> int:
    """Cycles generously enough for ``packets`` packets of up to ``N`` elements to come out."""
    n = port.max_n
    return packets * (6 * n // port.lanes + 64 * n.bit_length() + 200) + 10_000


class TopKCheck:
    """Packets queued on ``port`` with their golden results, output compared in order.

    ``ragged`` is the probability that a packet's beats carry random counts ``1..P`` (else
    full beats of ``P`` and a shorter last one). Context (seed and parameters) is in every
    failure message.
    """

    def __init__(self, port: TopKPort, seed: int, ragged: float = 0.3):
        self.port = port
        self.seed = seed
        self.ragged = ragged
        self.rng = random.Random(seed)
        self.context = (f"seed={seed} P={port.lanes} W={port.width} N={port.max_n} "
                        f"signed={int(port.signed)}")
        self.scoreboard = Scoreboard(self.context)
        self.queued = 0
        self.overflowing = 0
        port.on_packet = self.on_packet

    # -- stimulus
    def value_range(self) -> tuple[int, int]:
        w = self.port.width
        return (-(1 << (w - 1)), (1 << (w - 1)) - 1) if self.port.signed else (0, (1 << w) - 1)

    def make_values(self, n: int, dataset: str) -> list[int]:
        lo, hi = self.value_range()
        rng = self.rng
        if dataset == "duplicates":
            return [rng.randint(max(lo, 0), min(hi, 3)) for _ in range(n)]
        if dataset == "equal":
            return [rng.randint(lo, hi)] * n
        if dataset == "two_values":
            pair = (rng.randint(lo, hi), rng.randint(lo, hi))
            return [pair[rng.random() < 0.5] for _ in range(n)]
        if dataset == "sawtooth":
            period = rng.randint(2, max(2, self.port.lanes * 3))
            base = rng.randint(lo, max(lo, hi - period + 1))
            return [min(hi, base + i % period) for i in range(n)]
        if dataset == "shared_top":     # only the lowest 4 bits differ
            base = rng.randint(lo, hi) & ~15
            return [max(lo, min(hi, base + rng.randint(0, 15))) for _ in range(n)]
        if dataset == "anti_pivot":
            p = self.port.lanes
            head = [(lo, hi)[i % 2] for i in range(min(p, n))]
            mid = rng.randint(lo, hi)
            return head + sorted(max(lo, min(hi, mid + rng.randint(-8, 8)))
                                 for _ in range(n - len(head)))
        values = [rng.randint(lo, hi) for _ in range(n)]
        if dataset == "ascending":
            values.sort()
        elif dataset == "descending":
            values.sort(reverse=True)
        return values

    def split(self, n: int, ragged: bool) -> list[int]:
        """Beat counts of an ``n``-element packet (``[0]`` for an empty one)."""
        p = self.port.lanes
        if not ragged:
            return [min(p, n - i) for i in range(0, n, p)] or [0]
        counts, left = [], n
        while left:
            counts.append(self.rng.randint(1, min(p, left)))
            left -= counts[-1]
        return counts or [0]

    def send_packet(self, values: list[int], k: int, tag: str,
                    ragged: bool | None = None) -> None:
        """Queue a packet and its golden result (``k`` clipped to the port's ``k`` range)."""
        port = self.port
        k = min(k, (1 << port.max_n.bit_length()) - 1)
        if ragged is None:
            ragged = self.rng.random() < self.ragged
        result = topk(np.asarray(values[:port.max_n], dtype=np.int64), k)
        self.scoreboard.expect(list(zip(result.indices.tolist(), result.values.tolist(),
                                        strict=True)), f"{tag} n={len(values)} k={k}")
        self.queued += 1
        self.overflowing += len(values) > port.max_n
        counts = self.split(len(values), ragged)
        pos = 0
        for i, c in enumerate(counts):
            chunk = values[pos:pos + c]
            pos += c
            port.send({"data": chunk + [0] * (port.lanes - c), "count": c,
                       "last": int(i == len(counts) - 1), "k": k})

    def random_packet(self, index: int, overflow_rate: float = 0.03) -> None:
        """Queue one packet of a random dataset, length (overflowing ``N`` at
        ``overflow_rate``) and ``k`` in ``0..n+2``."""
        rng, p, n_max = self.rng, self.port.lanes, self.port.max_n
        dataset = rng.choice(DATASETS)
        n = rng.randint(n_max + 1, n_max + 2 * p) if rng.random() < overflow_rate \
            else rng.randint(0, n_max)
        self.send_packet(self.make_values(n, dataset), rng.randint(0, n + 2),
                         f"packet {index} {dataset}")

    def edge_packets(self) -> None:
        """Queue the edge cases: empty (k 0 and 3), one element, ``N`` elements with k = 0, 1,
        N and the largest encodable k, all equal, one past ``N`` and a lane past ``N``."""
        n = self.port.max_n
        top = (1 << n.bit_length()) - 1
        cases = [([], 0), ([], 3), (self.make_values(1, "uniform"), 1),
                 (self.make_values(1, "uniform"), 0), (self.make_values(n, "uniform"), 0),
                 (self.make_values(n, "uniform"), 1), (self.make_values(n, "duplicates"), n),
                 (self.make_values(n, "uniform"), top), (self.make_values(n, "equal"), n // 2),
                 (self.make_values(n + 1, "uniform"), n // 2),
                 (self.make_values(n + self.port.lanes, "descending"), n)]
        for i, (values, k) in enumerate(cases):
            self.send_packet(values, k, f"packet edge-{i}")

    def adversarial_packets(self, n: int | None = None) -> None:
        """Queue every :data:`ADVERSARIAL` data set at ``n`` (default ``N``) elements, with
        ``k`` = 1, n/4, n/2 and n - 1."""
        n = self.port.max_n if n is None else n
        for dataset in ADVERSARIAL:
            for k in sorted({1, n // 4, n // 2, n - 1}):
                self.send_packet(self.make_values(n, dataset), k,
                                 f"packet adversarial {dataset}")

    # -- output
    def on_packet(self, beats: list[Beat]) -> None:
        p = self.port.lanes
        counts = [b["count"] for b in beats]
        shape_ok = all(c == p for c in counts[:-1]) and 0 <= counts[-1] <= p and \
            (counts[-1] > 0 or len(beats) == 1)
        items = [(b["index"][j], b["data"][j]) for b in beats for j in range(b["count"])]
        self.scoreboard.receive(items if shape_ok else ("bad beat counts", counts))

    async def drain(self, limit: int, quiet: int = 4) -> None:
        """Wait until every expected packet came out (at most ``limit`` cycles), then
        ``quiet`` more cycles in which anything extra would be caught as unexpected."""
        start = self.port.cycle
        while self.scoreboard.expected and self.port.cycle - start < limit:
            await self.port.tick()
        for _ in range(quiet):
            await self.port.tick()


async def run_random_packets(port: TopKPort, seed: int, packets: int,
                             overflow_rate: float = 0.03, edges: bool = True) -> TopKCheck:
    """The edge cases and the adversarial data sets (if ``edges``), then ``packets`` random
    packets; every output packet equals golden, none is missing or extra, one ``overflow``
    pulse per long packet."""
    check = TopKCheck(port, seed)
    if edges:
        check.edge_packets()
        check.adversarial_packets()
    for i in range(packets):
        check.random_packet(i, overflow_rate)
    await check.drain(drain_limit(port, check.queued))
    check.scoreboard.check()
    assert check.scoreboard.matched == check.queued == check.scoreboard.received, \
        f"{check.context}: {check.scoreboard.matched} of {check.queued} packets matched"
    assert port.overflows == check.overflowing, \
        f"{check.context}: {port.overflows} overflow pulses for {check.overflowing} long packets"
    return check
