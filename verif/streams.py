"""Reusable cocotb stream driver, receiver (with protocol checker) and scoreboard for
valid/ready ports.

A stream is found on the DUT by port prefix: ``<prefix>valid``, ``<prefix>ready`` and one
port per payload field (``<prefix>data``, ``<prefix>count``...). A field given as a list is a
multi-lane vector: lane ``j`` occupies bits ``[j*w +: w]`` with ``w = len(port) // lanes``.

Timing: inputs change on the falling clock edge and handshakes are read in the ReadOnly phase
after it, so a transfer is counted exactly when ``valid & ready`` hold at the next rising
edge, also for ``ready`` that depends combinationally on ``valid``.

Protocol rules checked on every DUT output (:class:`StreamSink`): once ``valid`` is high it
stays high until the transfer, and every payload field stays unchanged while ``valid`` is
high and ``ready`` low. A violation calls ``on_violation`` with a :class:`ProtocolViolation`
naming the cycle, the signal and its old and new values; by default it is raised, which fails
the running cocotb test. Our own sources obey the same rules by construction.

Reset: given the DUT's active-high ``reset`` signal, a :class:`StreamSource` that sees it
asserted drops ``valid`` and abandons the beat on offer and every queued beat (counted in
``flushed``); a :class:`StreamSink` accepts nothing while it is asserted, forgets the pending
protocol state and calls its ``on_reset`` hooks (a :class:`PacketCollector` there drops its
partial packet). This is what cocotbext-axi's sources and sinks do on reset.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly

__all__ = ["pack_lanes", "unpack_lanes", "StreamSource", "StreamSink", "PacketCollector",
           "Scoreboard", "ProtocolViolation"]

Beat = dict[str, Any]


class ProtocolViolation(AssertionError):
    """A DUT output broke the valid/ready rules; the message names cycle, signal and values."""


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


def _raw(signal) -> int | str:
    """A signal's value as an int, or its string (``x``/``z`` bits) when not resolvable."""
    value = signal.value
    return int(value) if value.is_resolvable else str(value)


class _Port:
    def __init__(self, dut, prefix: str, fields: Iterable[str], lanes: int, reset=None):
        self.clk = dut.clk
        self.prefix = prefix
        self.valid = getattr(dut, prefix + "valid")
        self.ready = getattr(dut, prefix + "ready")
        self.fields = {name: getattr(dut, prefix + name) for name in fields}
        self.lanes = lanes
        self.reset = reset

    def lane_bits(self, name: str) -> int:
        return len(self.fields[name]) // self.lanes

    def in_reset(self) -> bool:
        """True while the ``reset`` signal (if given) is high (x/z count as asserted)."""
        if self.reset is None:
            return False
        value = self.reset.value
        return not value.is_resolvable or bool(int(value))


class StreamSource(_Port):
    """Drives beats into ``<prefix>*`` ports.

    ``idle`` is the probability of leaving a cycle empty before offering the next beat
    (random input gaps); it never drops ``valid`` of a beat already offered, except on reset
    (``reset`` given and high: the beat on offer and the queue are abandoned, see the module
    docstring).
    """

    def __init__(self, dut, prefix: str, fields: Iterable[str], lanes: int = 1,
                 idle: float = 0.0, rng: random.Random | None = None, reset=None):
        super().__init__(dut, prefix, fields, lanes, reset)
        self.idle = idle
        self.rng = rng or random.Random(0)
        self.queue: deque[Beat] = deque()
        self.sent = 0
        self.flushed = 0             # beats abandoned by resets (or clear())
        self.on_transfer: Callable[[Beat], None] | None = None
        self._current: Beat | None = None
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, beat: Mapping[str, Any]) -> None:
        """Queue one beat: field name -> int, or list of ints for a lane vector."""
        self.queue.append(dict(beat))

    def clear(self) -> None:
        """Drop queued beats and the one on offer (done by itself on ``reset``)."""
        self.flushed += len(self.queue) + int(self._current is not None)
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
            if self.in_reset():
                self.clear()
                self.valid.value = 0
                fired = False
                continue
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
            fired = self._current is not None and bool(self.ready.value) \
                and not self.in_reset()


class StreamSink(_Port):
    """Takes beats from ``<prefix>*`` ports, holding ``ready`` low with probability ``stall``,
    and checks the DUT's side of the protocol (module docstring) on every cycle.

    Beats are decoded to dicts (lane fields listed in ``vectors`` as lists, signed if named in
    ``signed``) and passed to ``callback`` (or appended to ``beats``). ``on_violation``
    receives each :class:`ProtocolViolation` (default: raise it); ``on_reset`` lists the
    hooks called when ``reset`` is seen asserted.
    """

    def __init__(self, dut, prefix: str, fields: Iterable[str], lanes: int = 1,
                 vectors: Iterable[str] = (), signed: Iterable[str] = (),
                 stall: float = 0.0, rng: random.Random | None = None,
                 callback: Callable[[Beat], None] | None = None, reset=None,
                 on_violation: Callable[[ProtocolViolation], None] | None = None):
        super().__init__(dut, prefix, fields, lanes, reset)
        self.vectors, self.signed = set(vectors), set(signed)
        self.stall = stall
        self.rng = rng or random.Random(0)
        self.callback = callback
        self.on_violation = on_violation
        self.on_reset: list[Callable[[], None]] = []
        if isinstance(callback, PacketCollector):
            self.on_reset.append(callback.clear)
        self.beats: list[Beat] = []
        self.received = 0
        self.cycle = 0               # falling edges seen (the cycle named in violations)
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

    def _violation(self, signal: str, old, new, why: str) -> None:
        error = ProtocolViolation(f"cycle {self.cycle}: {self.prefix}{signal} {why} "
                                  f"(was {old!r}, now {new!r})")
        if self.on_violation is None:
            raise error
        self.on_violation(error)

    def _check(self, pending: dict[str, int | str] | None, valid: bool) -> None:
        """``pending``: the payload of last cycle's stalled beat (valid & !ready)."""
        if pending is None:
            return
        if not valid:
            self._violation("valid", 1, _raw(self.valid), "dropped before the transfer")
            return
        for name, port in self.fields.items():
            now = _raw(port)
            if now != pending[name]:
                self._violation(name, pending[name], now, "changed while valid and not ready")

    async def _run(self) -> None:
        pending: dict[str, int | str] | None = None
        while True:
            await FallingEdge(self.clk)
            self.cycle += 1
            if self.in_reset():
                self.ready.value = 0
                pending = None
                for hook in self.on_reset:
                    hook()
                continue
            ready = self.rng.random() >= self.stall
            self.ready.value = int(ready)
            await ReadOnly()
            if self.in_reset():
                pending = None
                continue
            valid = self.valid.value.is_resolvable and bool(int(self.valid.value))
            self._check(pending, valid)
            pending = {name: _raw(port) for name, port in self.fields.items()} \
                if valid and not ready else None
            if ready and valid:
                beat = self._decode()
                self.received += 1
                if self.callback is not None:
                    self.callback(beat)
                else:
                    self.beats.append(beat)


class PacketCollector:
    """Assembles beats into packets (lists of beats ending with ``last``) for ``on_packet``.

    Given as a :class:`StreamSink`'s callback, the sink clears its partial packet on reset.
    """

    def __init__(self, on_packet: Callable[[list[Beat]], None], last: str = "last"):
        self.on_packet, self.last = on_packet, last
        self.partial: list[Beat] = []
        self.dropped = 0             # partial packets dropped by clear()

    def __call__(self, beat: Beat) -> None:
        self.partial.append(beat)
        if beat[self.last]:
            packet, self.partial = self.partial, []
            self.on_packet(packet)

    def clear(self) -> None:
        self.dropped += bool(self.partial)
        self.partial = []


class Scoreboard:
    """In-order comparison of received items against expected ones, with a context string.

    ``expect(item, tag)`` queues what the DUT must produce; ``receive(item)`` compares with
    the oldest expectation and counts a mismatch (keeping the first ``max_failures``
    messages, with ``context``, e.g. the seed, and the tag, for display). ``check()`` raises
    AssertionError giving the number of all mismatches and the kept messages.
    """

    def __init__(self, context: str = "", max_failures: int = 5):
        self.context = context
        self.expected: deque[tuple[Any, str]] = deque()
        self.failures: list[str] = []
        self.mismatches = 0
        self.matched = 0
        self.received = 0
        self.max_failures = max_failures

    def expect(self, item: Any, tag: str = "") -> None:
        self.expected.append((item, tag))

    def receive(self, item: Any) -> None:
        self.received += 1
        if not self.expected:
            self._fail(f"unexpected output {item!r}")
            return
        want, tag = self.expected.popleft()
        if want == item:
            self.matched += 1
        else:
            self._fail(f"{tag}: expected {want!r}, got {item!r}")

    def clear(self) -> list[str]:
        """Abandon the outstanding expectations (e.g. packets cut by a reset); returns their
        tags. Mismatches already counted stay."""
        tags = [tag for _, tag in self.expected]
        self.expected.clear()
        return tags

    def _fail(self, message: str) -> None:
        self.mismatches += 1
        if len(self.failures) < self.max_failures:
            self.failures.append(message)

    def check(self) -> None:
        if self.mismatches:
            raise AssertionError(f"{self.context}: {self.mismatches} mismatch(es) "
                                 f"({len(self.failures)} shown); first: "
                                 + " | ".join(self.failures))
        if self.expected:
            raise AssertionError(f"{self.context}: {len(self.expected)} expected item(s) "
                                 f"never came; next: {self.expected[0][1]}")
