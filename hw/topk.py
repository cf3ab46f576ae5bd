"""High-parallel radix-select top-k engine.

Four sub-stages work on four packets at once, handing packets on in order (contract, stage
ports, cycle model and worst-case bound: docs/topk.md):

1. :class:`~psa.hw.topk_ingest.TopKIngest` takes the packet at one beat per cycle, stores it
   densely in one of four packet buffers and counts the top radix digit (6 bits of the sort
   key) of its elements in a histogram; from it, the top digit of the k-th largest.
2. :class:`~psa.hw.topk_select.TopKSelect`: its scanner reads the stored packet once,
   counting the second digit of the elements that share that top digit and packing them into
   a scratch buffer; its finisher resolves each further digit in one pass over the scratch
   buffer. Out come the threshold ``T`` and ``need``, the elements equal to ``T`` to keep.
3. :class:`~psa.hw.topk_emit.TopKEmit` filters the stored packet in index order, packs the
   survivors with their indices into ``P``-wide beats and streams them out through a small
   FIFO, stalling on back-pressure.

Every pass reads a number of rows fixed by ``n`` and ``P`` (and, for the finisher, by how
many elements share the top digit), so the cycles have a bound that holds for any data
(:func:`topk_bound`). The engine holds the packet buffers (Ingest writes, the scan and Emit
read) and connects the stages' memory ports and streams.
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .layouts import topk_in_signature, topk_out_signature, value_shape
from .params import check_bool, check_int
from .topk_blocks import (
    LUTRAM_MAX_BITS,
    LUTRAM_MAX_ROWS,
    PACKET_SLOTS,
    buffer_memory,
    digit_plan,
)
from .topk_emit import TopKEmit
from .topk_ingest import TopKIngest
from .topk_select import TopKSelect

__all__ = ["TopKEngine", "validate_topk_params", "topk_cycles", "topk_bound",
           "LUTRAM_MAX_ROWS", "LUTRAM_MAX_BITS"]


def validate_topk_params(lanes: int, width: int, max_n: int, signed: bool) -> None:
    """Raise ValueError naming the parameter and its allowed range if any is out of range."""
    check_int("lanes", lanes, 1, 64, owner="topk", power_of_two=True)
    check_int("width", width, 1, 32, owner="topk")
    check_int("max_n", max_n, lanes, 65536, owner="topk", bounds="lanes..65536")
    check_bool("signed", signed, owner="topk")


def topk_cycles(lanes: int, width: int, n: int, m: int, k: int | None = None) -> dict[str, int]:
    """The datasheet's cycle model (docs/topk.md) of a packet with ``1 <= k < n``.

    ``n`` elements in full beats at one per cycle, ``out_ready`` high; ``m`` (1..n) elements
    share the top digit of the k-th largest. ``latency``: first beat in to last beat out with
    one packet in the engine, when the packet's last element is kept (else the last beat
    leaves earlier), one cycle less when ``k`` is given and a multiple of ``P`` (the last
    beat is a full row: no flush); ``interval``: cycles per packet back to back (the slowest
    stage). ``ingest``, ``emit``: those stages' cycles per packet.
    """
    f, r = -(-n // lanes), -(-m // lanes)
    n_digits = len(digit_plan(width))
    finish = (n_digits - 2) * (r + 9) + 1 if n_digits >= 3 else 1
    full_row = int(k is not None and k % lanes == 0)
    if n_digits == 1:
        latency = (f + 8) + 3 + (f + 10) - full_row
        stages = [f + 8, f + 8]
    else:
        latency = (f + 8) + (f + 10) + finish + (f + 10) - full_row
        stages = [f + 8, f + 9, finish if n_digits >= 3 else 0, f + 8]
    return {"ingest": f + 8, "emit": f + 8, "latency": latency, "interval": max(stages)}


def topk_bound(lanes: int, width: int, n: int) -> dict[str, int]:
    """Worst case over all data of :func:`topk_cycles` (``m = n``): ``latency`` and
    ``interval`` in cycles; with ``F = ceil(n/P)`` and ``D = ceil(W/6)`` digits,
    ``latency <= 3F + 29 + (D-2)(F+9)`` and ``interval <= max(F+9, (D-2)(F+9)+1)`` for
    ``D >= 3`` (``3F + 29`` and ``F + 9`` for ``D = 2``, ``2F + 21`` and ``F + 8`` for ``D = 1``).
    """
    return {key: v for key, v in topk_cycles(lanes, width, n, n).items()
            if key in ("latency", "interval")}


class TopKEngine(wiring.Component):
    """Exact top-k of each packet, ``P`` elements per cycle in and out.

    Parameters
    ----------
    lanes : int
        ``P``, elements per beat: a power of two in 1..64.
    width : int
        ``W``, bits per value, 1..32.
    max_n : int
        ``N``, the most elements a packet may hold, ``lanes..65536``.
    signed : bool
        Values are two's-complement signed (else unsigned).

    Members
    -------
    i_stream : ``In(stream.Signature(topk_in_layout(P, W, N, signed)))``
        Payload ``data`` (P values; lane ``j`` is element ``j`` of the beat), ``count``
        (valid lanes ``0..count-1``, 0..P; 0 only on a last beat), ``last``, and ``k``
        (0..N, read on the first beat of a packet). A packet is the beats up to ``last``.
    o_stream : ``Out(stream.Signature(topk_out_layout(P, W, N, signed)))``
        Payload ``data``, ``index`` (the element's 0-based position in its input packet,
        ``$clog2(N)`` bits), ``count``, ``last``. A packet holds exactly ``min(k, n)``
        elements, those :func:`psa.golden.topk.topk` keeps (ties to the lowest index), in
        ascending index order, P per beat except the last; a single beat with ``count = 0``
        when ``min(k, n) = 0``.
    overflow : ``Out(1)``
        One-cycle pulse when a packet holds more than ``N`` elements; elements past the
        ``N``-th are dropped and the packet is processed as its first ``N`` elements.

    Streams follow ``amaranth.lib.stream``: a transfer happens when ``valid`` and ``ready``
    are high; ``valid`` never waits for ``ready`` and the payload holds until accepted. A new
    packet is accepted while up to three earlier ones are still being selected and emitted.
    Cycles: :func:`topk_cycles`; worst case over all data: :func:`topk_bound`.
    """

    def __init__(self, lanes: int = 16, width: int = 16, max_n: int = 1024,
                 signed: bool = False):
        validate_topk_params(lanes, width, max_n, signed)
        self._lanes, self._width, self._max_n, self._signed = lanes, width, max_n, signed
        super().__init__({
            "i_stream": In(topk_in_signature(lanes, width, max_n, signed)),
            "o_stream": Out(topk_out_signature(lanes, width, max_n, signed)),
            "overflow": Out(1),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def width(self) -> int:
        return self._width

    @property
    def max_n(self) -> int:
        return self._max_n

    @property
    def signed(self) -> bool:
        return self._signed

    @property
    def digits(self) -> list[tuple[int, int]]:
        """Radix digits of the sort key, ``(lowest bit, bits)`` from the top
        (:func:`~psa.hw.topk_blocks.digit_plan`, ``DIGIT_BITS`` = 6)."""
        return digit_plan(self._width)

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        p, w, n_max, sg = self._lanes, self._width, self._max_n, self._signed
        rows = -(-n_max // p)
        row = data.ArrayLayout(value_shape(w, sg), p)

        m.submodules.ingest = ingest = TopKIngest(p, w, n_max, sg)
        m.submodules.select = select = TopKSelect(p, w, n_max, sg)
        m.submodules.emit = emit = TopKEmit(p, w, n_max, sg)

        # The packet buffers: Ingest writes, Select's scan and Emit read (two read ports).
        m.submodules.packet = packet = buffer_memory(row, rows, PACKET_SLOTS)
        wiring.connect(m, ingest.packet_w, packet.write_port())
        wiring.connect(m, select.packet_r, packet.read_port())
        wiring.connect(m, emit.packet_r, packet.read_port())

        wiring.connect(m, wiring.flipped(self.i_stream), ingest.i_stream)
        wiring.connect(m, ingest.jobs, select.jobs)
        wiring.connect(m, select.results, emit.results)
        wiring.connect(m, emit.o_stream, wiring.flipped(self.o_stream))
        m.d.comb += [self.overflow.eq(ingest.overflow),
                     ingest.packet_free.eq(emit.packet_done)]
        return m
