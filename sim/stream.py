"""Streaming simulation: a long trace fed in pieces, controller state carried across them.

:func:`psa.sim.simulate` builds one per-burst table for the whole trace (14 int64 columns, so
~112 bytes a burst): fine up to a few million bursts, not for the 1e7..1e8 of a long decode
run. :class:`StreamSimulator` keeps only a bounded window. Requests are buffered until a chunk
of ``chunk_bursts`` bursts is ready; the controller loop (:func:`psa.sim.controller.run`) then
runs until all but the last ``margin`` bursts of the window are admitted, where

    margin = channels * (read_queue + write_queue) + 1

is more than one loop iteration can admit. So admission never runs into the end of the window,
and the loop stops at the top of an iteration exactly as if the trace went on. The bursts not
yet served (queued or not admitted) carry over, in arrival order, to the front of the next
window, with the queues' indices renumbered; served bursts are folded into running totals. The
last call (:meth:`StreamSimulator.finish`) drains the queues.

For untimed traces the result equals :func:`~psa.sim.simulate` of the concatenated trace: same
cycles, commands, row hits/misses/conflicts and energy (``tests/sim/test_stream.py`` holds it
to that). Timed traces and command logs are not supported here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from psa.golden.trace import AccessTrace

from . import controller as ctl
from .energy import energy_breakdown_nJ
from .frontend import split_bursts
from .memory_system import ControllerConfig, compile_rules, controller_config, request_rows
from .spec import CMDS, DramSpec, load_preset
from .state import (
    C_ACTL,
    C_RQ,
    C_WQ,
    N_Q,
    Q_DONE,
    Q_ENQ,
    Q_KIND,
    Q_WR,
    QS_ACTIVE,
    QS_READ,
    QS_WRITE,
    R_ACTIVE_CYCLES,
    R_CMD,
    S_NEXT,
    S_NOW,
    S_SERVED,
    S_STATUS,
    ControllerState,
    Layout,
)

__all__ = ["StreamStats", "StreamSimulator", "simulate_stream"]


@dataclass
class StreamStats:
    """Totals of a streamed simulation (the scalar part of :class:`psa.sim.Stats`).

    Cycles are memory-clock cycles of the preset; ``dram_bytes`` counts whole bursts;
    ``read_latency_mean_cycles`` runs from a read's admission to its last data beat.
    """

    preset: str
    requests: int
    bursts: int
    reads: int
    writes: int
    payload_bytes: int
    dram_bytes: int
    cycles: int
    ns: float
    energy_nJ: float
    energy_breakdown_nJ: dict[str, float]
    row_hits: int
    row_misses: int
    row_conflicts: int
    commands: dict[str, int]
    read_latency_mean_cycles: float
    chunks: int
    tCK_ns: float = field(default=1.0, repr=False)

    @property
    def row_hit_rate(self) -> float:
        n = self.row_hits + self.row_misses + self.row_conflicts
        return self.row_hits / n if n else 0.0

    @property
    def bandwidth_GBps(self) -> float:
        return self.dram_bytes / self.ns if self.ns else 0.0

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in (
            "preset", "requests", "bursts", "reads", "writes", "payload_bytes", "dram_bytes",
            "cycles", "ns", "energy_nJ", "energy_breakdown_nJ", "row_hits", "row_misses",
            "row_conflicts", "commands", "read_latency_mean_cycles", "chunks")}
        d["row_hit_rate"] = self.row_hit_rate
        d["bandwidth_GBps"] = self.bandwidth_GBps
        return d


class StreamSimulator:
    """Feed untimed :class:`AccessTrace` pieces with :meth:`feed`, then call :meth:`finish`.

    ``chunk_bursts`` (>= 1024) bounds the bursts simulated per window (memory ~112 bytes per
    burst of window); ``overrides`` are :class:`~psa.sim.ControllerConfig` fields.
    """

    def __init__(self, spec: DramSpec | str = "ddr4-2400", config: ControllerConfig | None = None,
                 *, chunk_bursts: int = 1 << 20, **overrides) -> None:
        if isinstance(spec, str):
            spec = load_preset(spec)
        if not isinstance(chunk_bursts, int) or chunk_bursts < 1024:
            raise ValueError(f"chunk_bursts must be an integer >= 1024, got {chunk_bursts!r}")
        self.spec = spec
        self.config = config = replace(config or ControllerConfig(), **overrides)
        self.chunk_bursts = chunk_bursts
        o, t = spec.org, spec.timing
        self._layout = layout = Layout.of(spec)
        self._margin = o.channels * (config.read_queue + config.write_queue) + 1
        ptr, self._rules, n_faw = compile_rules(spec)
        cfg = controller_config(spec, config, layout, ptr, n_faw)
        self._cfg = cfg
        self._st = ControllerState.new(layout, config.read_queue, config.write_queue,
                                       config.max_outstanding + 1, t.nREFI, config.refresh)
        self._log = np.zeros((1, ctl.N_L), np.int64)
        self._window = np.zeros((0, N_Q), np.int64)  # unserved bursts, arrival order
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._requests = self._payload = 0
        self._bursts = self._reads = 0
        self._kinds = np.zeros(3, np.int64)
        self._max_done = 0
        self._lat_sum = 0
        self._chunks = 0
        self._finished: StreamStats | None = None

    def _rows(self, trace: AccessTrace) -> np.ndarray:
        b = split_bursts(trace, self.spec.org.burst_bytes, self.spec.timing.tCK_ps)
        return request_rows(b, self.spec, self.config)

    def feed(self, trace: AccessTrace) -> None:
        """Append ``trace``'s requests (after everything fed before)."""
        if self._finished is not None:
            raise RuntimeError("StreamSimulator.feed after finish()")
        if trace.time_ns is not None:
            raise ValueError("StreamSimulator: timed traces are not supported (use simulate())")
        n = len(trace)
        if n == 0:
            return
        self._requests += n
        self._payload += trace.payload_bytes
        counts = trace.bursts(self.spec.org.burst_bytes)
        # cut at request boundaries so no piece is much larger than a chunk
        ends = np.cumsum(counts)
        start = 0
        while start < n:
            base = int(ends[start - 1]) if start else 0
            room = max(self.chunk_bursts - self._buffered, 1)
            stop = int(np.searchsorted(ends, base + room, side="right"))
            stop = max(stop, start + 1)
            piece = trace if (start == 0 and stop == n) else _slice(trace, start, stop)
            rows = self._rows(piece)
            self._buffer.append(rows)
            self._buffered += len(rows)
            start = stop
            if self._buffered >= self.chunk_bursts:
                self._run(final=False)

    def _run(self, final: bool) -> None:
        st, cfg = self._st, self._cfg
        req = np.concatenate([self._window, *self._buffer]) if self._buffer else self._window
        self._buffer, self._buffered = [], 0
        n = len(req)
        stop = n if final else n - self._margin
        if n == 0 or (not final and stop <= st.scal[S_NEXT]):
            self._window = req
            return
        self._chunks += 1
        args = (cfg, self._rules, req, st.nxt, st.bank, st.rank, st.chan, st.qs, st.heap,
                st.scal, self._log)
        ctl.run(stop, *args)
        if st.scal[S_STATUS] != 0:
            raise RuntimeError(f"DRAM model stalled at cycle {st.scal[S_NOW]} (internal error; "
                               "please report with the trace)")
        served = req[:, Q_DONE] > 0
        done = req[served]
        self._bursts += len(done)
        rd = done[:, Q_WR] == 0
        self._reads += int(rd.sum())
        self._kinds += np.bincount(done[:, Q_KIND], minlength=3)[:3]
        if len(done):
            self._max_done = max(self._max_done, int(done[:, Q_DONE].max()))
        self._lat_sum += int((done[rd, Q_DONE] - done[rd, Q_ENQ]).sum())
        if final:
            self._window = req[:0]
            return
        # renumber the unserved bursts 0.. in arrival order and point the queues at them
        keep = ~served
        new_index = np.cumsum(keep) - 1
        next_b = int(st.scal[S_NEXT])
        for ch in range(self._layout.channels):
            for qk, count in ((QS_READ, C_RQ), (QS_WRITE, C_WQ), (QS_ACTIVE, C_ACTL)):
                k = int(st.chan[ch, count])
                st.qs[ch, qk, :k] = new_index[st.qs[ch, qk, :k]]
        st.scal[S_NEXT] = int(keep[:next_b].sum())
        st.scal[S_SERVED] = 0
        self._window = req[keep]

    def finish(self) -> StreamStats:
        """Drain the queues and return the totals (idempotent)."""
        if self._finished is not None:
            return self._finished
        self._run(final=True)
        spec, st = self.spec, self._st
        cycles = self._max_done
        ctl.close_active_time(cycles, st.rank)
        counts = {c: int(st.rank[:, R_CMD + i].sum()) for i, c in enumerate(CMDS)}
        energy = energy_breakdown_nJ(
            spec, acts=counts["ACT"], reads=counts["RD"], writes=counts["WR"],
            refs=counts["REF"], active_cycles=int(st.rank[:, R_ACTIVE_CYCLES].sum()),
            total_rank_cycles=cycles * self._layout.n_ranks)
        self._finished = StreamStats(
            preset=spec.name, requests=self._requests, bursts=self._bursts, reads=self._reads,
            writes=self._bursts - self._reads, payload_bytes=self._payload,
            dram_bytes=self._bursts * spec.org.burst_bytes, cycles=cycles,
            ns=cycles * spec.tCK_ns, energy_nJ=energy["total"], energy_breakdown_nJ=energy,
            row_hits=int(self._kinds[ctl.HIT]), row_misses=int(self._kinds[ctl.MISS]),
            row_conflicts=int(self._kinds[ctl.CONFLICT]), commands=counts,
            read_latency_mean_cycles=self._lat_sum / self._reads if self._reads else 0.0,
            chunks=self._chunks, tCK_ns=spec.tCK_ns)
        return self._finished


def _slice(trace: AccessTrace, a: int, b: int) -> AccessTrace:
    return AccessTrace(trace.addr[a:b], trace.size[a:b], trace.is_write[a:b], None,
                       trace.layer[a:b], trace.plane[a:b])


def simulate_stream(traces: Iterable[AccessTrace], spec: DramSpec | str = "ddr4-2400",
                    config: ControllerConfig | None = None, *, chunk_bursts: int = 1 << 20,
                    **overrides) -> StreamStats:
    """Simulate ``traces`` back to back without holding them all (see the module doc)."""
    sim = StreamSimulator(spec, config, chunk_bursts=chunk_bursts, **overrides)
    for t in traces:
        sim.feed(t)
    return sim.finish()
