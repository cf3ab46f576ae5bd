"""Reusable cocotb stream driver, receiver and scoreboard for valid/ready ports.

A stream is found on the DUT by port prefix: ``<prefix>valid``, ``<prefix>ready`` and one
port per payload field (``<prefix>data``, ``<prefix>count``...). A field given as a list is a
multi-lane vector: lane ``j`` occupies bits ``[j*w +: w]`` with ``w = len(port) // lanes``.

Timing: inputs change on the falling clock edge and handshakes are read in the ReadOnly phase
after it, so a transfer is counted exactly when ``valid & ready`` hold at the next rising
edge, also for ``ready`` that depends combinationally on ``valid``. Rules checked on the DUT
side: once ``valid`` is high it stays high, with the payload still, until the transfer.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly

__all__ = ["pack_lanes", "unpack_lanes", "StreamSource", "StreamSink", "PacketCollector",
           "Scoreboard"]

Beat = dict[str, Any]


def pack_lanes(values: Sequence[int], lane_bits: int) -> int:
    """Pack ``values`` into one integer, lane ``j`` at bits ``[j*lane_bits +: lane_bits]``."""
    mask = (1 << lane_bits) - 1
    word = 0
    for j, v in enumerate(values):
        word |= (int(v) & mask) << (j * lane_bits)
    return word


def unpack_lanes(word: int, lanes: int, lane_bits: int, signed: bool = False) -> list[int]:
    """Split ``word`` into ``lanes`` integers of ``lane_bits`` bits (two's complement if signed)."""
    mask = (1 << lane_bits) - 1
    out = []
    for j in range(lanes):
        v = (word >> (j * lane_bits)) & mask
        if signed and lane_bits and v >> (lane_bits - 1):
            v -= 1 << lane_bits
        out.append(v)
    return out


class _Port:
    def __init__(self, dut, prefix: str, fields: Iterable[str], lanes: int):
        self.clk = dut.clk
        self.valid = getattr(dut, prefix + "valid")
        self.ready = getattr(dut, prefix + "ready")
        self.fields = {name: getattr(dut, prefix + name) for name in fields}
        self.lanes = lanes

    def lane_bits(self, name: str) -> int:
        return len(self.fields[name]) // self.lanes


class StreamSource(_Port):
    """Drives beats into ``<prefix>*`` ports.

    ``idle`` is the probability of leaving a cycle empty before offering the next beat
    (random input gaps); it never drops ``valid`` of a beat already offered.
    """

    def __init__(self, dut, prefix: str, fields: Iterable[str], lanes: int = 1,
                 idle: float = 0.0, rng: random.Random | None = None):
        super().__init__(dut, prefix, fields, lanes)
        self.idle = idle
        self.rng = rng or random.Random(0)
        self.queue: deque[Beat] = deque()
        self.sent = 0
        self.on_transfer: Callable[[Beat], None] | None = None
        self._current: Beat | None = None
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, beat: Mapping[str, Any]) -> None:
        """Queue one beat: field name -> int, or list of ints for a lane vector."""
        self.queue.append(dict(beat))

    def clear(self) -> None:
        """Drop queued beats and the one on offer (use across a DUT reset)."""
        self.queue.clear()
        self._current = None

    def idle_now(self) -> bool:
        return not self.queue and self._current is None

    def _drive(self, beat: Beat) -> None:
        for name, value in beat.items():
            port = self.fields[name]
            if isinstance(value, (list, tuple)):
                port.value = pack_lanes(value, self.lane_bits(name))
            else:
                port.value = int(value) & ((1 << len(port)) - 1)

    async def _run(self) -> None:
        fired = False
        while True:
            await FallingEdge(self.clk)
            if fired and self._current is not None:
                if self.on_transfer is not None:
                    self.on_transfer(self._current)
                self._current = None
                self.sent += 1
            if self._current is None and self.queue and self.rng.random() >= self.idle:
                self._current = self.queue.popleft()
                self._drive(self._current)
            self.valid.value = int(self._current is not None)
            await ReadOnly()
            fired = self._current is not None and bool(self.ready.value)


class StreamSink(_Port):
    """Takes beats from ``<prefix>*`` ports, holding ``ready`` low with probability ``stall``.

    Beats are decoded to dicts (lane fields listed in ``vectors`` as lists, signed if named in
    ``signed``) and passed to ``callback`` (or appended to ``beats``).
    """

    def __init__(self, dut, prefix: str, fields: Iterable[str], lanes: int = 1,
                 vectors: Iterable[str] = (), signed: Iterable[str] = (),
                 stall: float = 0.0, rng: random.Random | None = None,
                 callback: Callable[[Beat], None] | None = None):
        super().__init__(dut, prefix, fields, lanes)
        self.vectors, self.signed = set(vectors), set(signed)
        self.stall = stall
        self.rng = rng or random.Random(0)
        self.callback = callback
        self.beats: list[Beat] = []
        self.received = 0
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    def _decode(self) -> Beat:
        beat: Beat = {}
        for name, port in self.fields.items():
            word = int(port.value)
            if name in self.vectors:
                beat[name] = unpack_lanes(word, self.lanes, self.lane_bits(name),
                                          name in self.signed)
            else:
                beat[name] = word
        return beat

    async def _run(self) -> None:
        while True:
            await FallingEdge(self.clk)
            ready = self.rng.random() >= self.stall
            self.ready.value = int(ready)
            await ReadOnly()
            if ready and self.valid.value.is_resolvable and int(self.valid.value):
                beat = self._decode()
                self.received += 1
                if self.callback is not None:
                    self.callback(beat)
                else:
                    self.beats.append(beat)


class PacketCollector:
    """Assembles beats into packets (lists of beats ending with ``last``) for ``on_packet``."""

    def __init__(self, on_packet: Callable[[list[Beat]], None], last: str = "last"):
        self.on_packet, self.last = on_packet, last
        self.partial: list[Beat] = []

    def __call__(self, beat: Beat) -> None:
        self.partial.append(beat)
        if beat[self.last]:
            packet, self.partial = self.partial, []
            self.on_packet(packet)

    def clear(self) -> None:
        self.partial = []


class Scoreboard:
    """In-order comparison of received items against expected ones, with a context string.

    ``expect(item, tag)`` queues what the DUT must produce; ``receive(item)`` compares with
    the oldest expectation and records a failure message (including ``context``, e.g. the
    seed, and the tag) on mismatch. ``check()`` raises AssertionError listing failures.
    """

    def __init__(self, context: str = "", max_failures: int = 5):
        self.context = context
        self.expected: deque[tuple[Any, str]] = deque()
        self.failures: list[str] = []
        self.matched = 0
        self.max_failures = max_failures

    def expect(self, item: Any, tag: str = "") -> None:
        self.expected.append((item, tag))

    def receive(self, item: Any) -> None:
        if not self.expected:
            self._fail(f"unexpected output {item!r}")
            return
        want, tag = self.expected.popleft()
        if want == item:
            self.matched += 1
        else:
            self._fail(f"{tag}: expected {want!r}, got {item!r}")

    def clear(self) -> None:
        self.expected.clear()

    def _fail(self, message: str) -> None:
        if len(self.failures) < self.max_failures:
            self.failures.append(message)

    def check(self) -> None:
        if self.failures:
            raise AssertionError(f"{self.context}: {len(self.failures)} mismatch(es); first: "
                                 + " | ".join(self.failures))
        if self.expected:
            raise AssertionError(f"{self.context}: {len(self.expected)} expected item(s) "
                                 f"never came; next: {self.expected[0][1]}")
