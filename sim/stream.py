"""Streaming simulation: a trace of any length fed in pieces, controller state carried across.

:func:`psa.sim.simulate` builds one per-burst table for the whole trace (14 int64 columns, so
~112 bytes a burst): fine up to a few million bursts, not for the 1e7..1e8 of a long decode
run. :class:`StreamSimulator` keeps only a bounded window. Requests are buffered until a chunk
of ``chunk_bursts`` bursts is ready; the controller loop (:func:`psa.sim.controller.run`) then
runs until all but the last ``margin`` bursts of the window are admitted, where

    margin = channels * (read_queue + write_queue) + 1

is more than one loop iteration can admit. So admission never runs into the end of the window,
and the loop stops at the top of an iteration exactly as if the trace went on. The bursts not
yet served (queued or not admitted) carry over, in arrival order, to the front of the next
window, with the queues' indices renumbered; served bursts are folded into running totals and
histograms (latency per cycle, completions per time bin). The last call
(:meth:`StreamSimulator.finish`) drains the queues.

The result equals :func:`~psa.sim.simulate` of the concatenated trace: same cycles, commands,
row hits/misses/conflicts, latency summary and energy (``tests/sim/test_stream.py`` holds it
to that), timed traces included. Command logs are not kept.

**Channels in parallel** (:func:`simulate_trace` with ``jobs`` or ``dask``). The frontend
of :func:`~psa.sim.simulate` admits bursts in one trace-order stream, so a full queue on one
channel holds back the others. In the *per-channel* mode each channel admits its own bursts in
trace order, independently: the channels then share nothing, and are simulated one by one or
in parallel (local processes, or tasks on a Dask cluster) with bit-identical results whatever
the number of workers. With one channel the two modes are the same simulation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from psa.golden.trace import AccessTrace

from . import controller as ctl
from .energy import energy_breakdown_nJ
from .frontend import Workload, split_bursts
from .memory_system import (
    ControllerConfig,
    compile_rules,
    controller_config,
    request_rows,
    stats_from_totals,
)
from .spec import CMDS, DramSpec, load_preset
from .state import (
    C_ACTL,
    C_RQ,
    C_WQ,
    N_Q,
    Q_CH,
    Q_DONE,
    Q_ENQ,
    Q_FB,
    Q_FG,
    Q_FR,
    Q_KIND,
    Q_TIME,
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
from .stats import Stats, histogram_summary
from .tracefile import iter_trace_fast

__all__ = ["StreamStats", "StreamSimulator", "simulate_stream", "simulate_trace"]

#: Default bursts per window: ~15 MB of request table, small enough for the allocator to reuse
#: (larger windows pay fresh page faults on every copy) and large enough that the per-window
#: Python work is negligible.
WINDOW_BURSTS = 1 << 17

#: Completion-time histogram: bins start at this many cycles and double (pairs merged) so
#: that at most ``_DONE_BINS_MAX`` bins cover the run.
_DONE_BIN0, _DONE_BINS_MAX = 256, 4096


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


@dataclass
class _Totals:
    """Served bursts folded into counts and histograms (mergeable across channels)."""

    bursts: int = 0
    reads: int = 0
    kinds: np.ndarray = field(default_factory=lambda: np.zeros(3, np.int64))
    max_done: int = 0
    lat_sum: int = 0
    lat_hist: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    done_bin: int = _DONE_BIN0
    done_hist: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def add(self, done: np.ndarray) -> None:
        """Fold in served rows of the request table."""
        if not len(done):
            return
        self.bursts += len(done)
        rd = done[:, Q_WR] == 0
        self.reads += int(rd.sum())
        self.kinds += np.bincount(done[:, Q_KIND], minlength=3)[:3]
        t = done[:, Q_DONE]
        self.max_done = max(self.max_done, int(t.max()))
        lat = t[rd] - done[rd, Q_ENQ]
        if len(lat):
            self.lat_sum += int(lat.sum())
            self.lat_hist = _add_counts(self.lat_hist, np.bincount(lat))
        while self.max_done // self.done_bin >= _DONE_BINS_MAX:
            self._coarsen()
        self.done_hist = _add_counts(self.done_hist, np.bincount(t // self.done_bin))

    def _coarsen(self) -> None:
        h = self.done_hist
        if len(h) % 2:
            h = np.append(h, 0)
        self.done_hist = h[0::2] + h[1::2]
        self.done_bin *= 2

    def merge(self, other: _Totals) -> None:
        self.bursts += other.bursts
        self.reads += other.reads
        self.kinds = self.kinds + other.kinds
        self.max_done = max(self.max_done, other.max_done)
        self.lat_sum += other.lat_sum
        self.lat_hist = _add_counts(self.lat_hist, other.lat_hist)
        other = replace(other)
        while other.done_bin < self.done_bin:
            other._coarsen()
        while self.done_bin < other.done_bin:
            self._coarsen()
        self.done_hist = _add_counts(self.done_hist, other.done_hist)


def _add_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(b) > len(a):
        a, b = b, a
    out = a.astype(np.int64, copy=True)
    out[:len(b)] += b
    return out


class StreamSimulator:
    """Feed :class:`AccessTrace` pieces with :meth:`feed`, then call :meth:`finish` (totals)
    or :meth:`result` (a full :class:`~psa.sim.Stats`).

    ``chunk_bursts`` (>= 1024, default ``WINDOW_BURSTS``) bounds the bursts simulated per
    window (memory ~112 bytes per burst of window); ``overrides`` are
    :class:`~psa.sim.ControllerConfig` fields. A trace is timed (``time_ns``) in every piece or
    in none.
    """

    def __init__(self, spec: DramSpec | str = "ddr4-2400", config: ControllerConfig | None = None,
                 *, chunk_bursts: int = WINDOW_BURSTS, **overrides) -> None:
        self._setup(spec, config, chunk_bursts, None, overrides)

    def _setup(self, spec, config, chunk_bursts, channel: int | None, overrides) -> None:
        if isinstance(spec, str):
            spec = load_preset(spec)
        if not isinstance(chunk_bursts, int) or chunk_bursts < 1024:
            raise ValueError(f"chunk_bursts must be an integer >= 1024, got {chunk_bursts!r}")
        self.spec = spec
        self.config = config = replace(config or ControllerConfig(), **overrides)
        self.chunk_bursts = chunk_bursts
        o, t = spec.org, spec.timing
        self._channel = channel
        # one channel of the system (per-channel mode) or all of them
        self._layout = layout = (Layout(1, o.ranks, o.bankgroups, o.banks) if channel is not None
                                 else Layout.of(spec))
        self._margin = layout.channels * (config.read_queue + config.write_queue) + 1
        ptr, self._rules, n_faw = compile_rules(spec)
        cfg = controller_config(spec, config, layout, ptr, n_faw)
        cfg[ctl.K_NCH] = layout.channels
        self._cfg = cfg
        self._st = ControllerState.new(layout, config.read_queue, config.write_queue,
                                       config.max_outstanding + 1, t.nREFI, config.refresh)
        self._log = np.zeros((1, ctl.N_L), np.int64)
        self._window = np.zeros((0, N_Q), np.int64)  # unserved bursts, arrival order
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._requests = self._payload = 0
        self._timed: bool | None = None
        self._last_time = 0
        self._totals = _Totals()
        self._chunks = 0
        self._finished: StreamStats | None = None

    # frontend ---------------------------------------------------------------------------
    def _rows(self, trace: AccessTrace, channel_mask: np.ndarray | None = None) -> np.ndarray:
        """Request-table rows of ``trace`` (of the channels in ``channel_mask``, default all),
        times carried across pieces."""
        b = split_bursts(trace, self.spec.org.burst_bytes, self.spec.timing.tCK_ps)
        if channel_mask is None:
            rows, sel = request_rows(b, self.spec, self.config), None
        else:
            rows, sel = request_rows(b, self.spec, self.config, channel_mask=channel_mask)
        if b.time_cycles is not None and len(b.time_cycles):
            t = np.maximum(b.time_cycles, self._last_time)
            self._last_time = int(t[-1])
            rows[:, Q_TIME] = t if sel is None else t[sel]
        return rows

    def _check_timed(self, trace: AccessTrace) -> None:
        timed = trace.time_ns is not None
        if self._timed is None:
            self._timed = timed
            self._cfg[ctl.K_TIMED] = timed
        elif timed != self._timed:
            raise ValueError("StreamSimulator: a trace has issue times in every piece or in "
                             "none (got a timed and an untimed piece)")

    def feed(self, trace: AccessTrace) -> None:
        """Append ``trace``'s requests (after everything fed before)."""
        if self._finished is not None:
            raise RuntimeError("StreamSimulator.feed after finish()")
        n = len(trace)
        if n == 0:
            return
        self._check_timed(trace)
        self._requests += n
        self._payload += trace.payload_bytes
        for piece in _pieces(trace, self.spec.org.burst_bytes, self.chunk_bursts):
            self._feed_rows(self._rows(piece))

    def _feed_rows(self, rows: np.ndarray) -> None:
        self._buffer.append(rows)
        self._buffered += len(rows)
        if self._buffered >= self.chunk_bursts:
            self._run(final=False)

    # controller -------------------------------------------------------------------------
    def _run(self, final: bool) -> None:
        st, cfg = self._st, self._cfg
        if not self._buffer:
            req = self._window
        elif not len(self._window) and len(self._buffer) == 1:
            req = self._buffer[0]  # a fresh table from _rows: no copy needed
        else:
            req = np.concatenate([self._window, *self._buffer])
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
        # bursts before the first unserved one are all served: folded in as a view; only the
        # rest (the queues and what is not admitted yet, a few served among them) is copied
        p = n if served.all() else int(np.argmin(served))
        self._totals.add(req[:p])
        tail, tail_served = req[p:], served[p:]
        if tail_served.any():
            self._totals.add(tail[tail_served])
        if final:
            self._window = req[:0]
            return
        # renumber the unserved bursts 0.. in arrival order and point the queues at them
        keep = ~tail_served
        new_index = np.cumsum(keep) - 1  # of burst p + i
        next_b = int(st.scal[S_NEXT])
        for ch in range(self._layout.channels):
            for qk, count in ((QS_READ, C_RQ), (QS_WRITE, C_WQ), (QS_ACTIVE, C_ACTL)):
                k = int(st.chan[ch, count])
                st.qs[ch, qk, :k] = new_index[st.qs[ch, qk, :k] - p]
        st.scal[S_NEXT] = int(keep[:max(next_b - p, 0)].sum())
        st.scal[S_SERVED] = 0
        self._window = tail[keep]

    def _drain(self) -> None:
        if self._finished is None:
            self._run(final=True)

    def finish(self) -> StreamStats:
        """Drain the queues and return the totals (idempotent)."""
        if self._finished is not None:
            return self._finished
        self._drain()
        spec, st, tot = self.spec, self._st, self._totals
        cycles = tot.max_done
        rank = st.rank.copy()
        ctl.close_active_time(cycles, rank)
        counts = {c: int(rank[:, R_CMD + i].sum()) for i, c in enumerate(CMDS)}
        bank_set_refresh = {"refsbs": counts["REFSB"]} if "REFSB" in counts else {}
        energy = energy_breakdown_nJ(
            spec, acts=counts["ACT"], reads=counts["RD"], writes=counts["WR"],
            refs=counts["REF"], active_cycles=int(rank[:, R_ACTIVE_CYCLES].sum()),
            total_rank_cycles=cycles * self._layout.n_ranks, **bank_set_refresh)
        self._finished = StreamStats(
            preset=spec.name, requests=self._requests, bursts=tot.bursts, reads=tot.reads,
            writes=tot.bursts - tot.reads, payload_bytes=self._payload,
            dram_bytes=tot.bursts * spec.org.burst_bytes, cycles=cycles,
            ns=cycles * spec.tCK_ns, energy_nJ=energy["total"], energy_breakdown_nJ=energy,
            row_hits=int(tot.kinds[ctl.HIT]), row_misses=int(tot.kinds[ctl.MISS]),
            row_conflicts=int(tot.kinds[ctl.CONFLICT]), commands=counts,
            read_latency_mean_cycles=tot.lat_sum / tot.reads if tot.reads else 0.0,
            chunks=self._chunks, tCK_ns=spec.tCK_ns)
        return self._finished

    def result(self, source: str = "", payload_bytes: float | None = None) -> Stats:
        """Drain the queues and return the full :class:`~psa.sim.Stats` (latency summary,
        bank utilisation, energy; histograms instead of per-burst arrays)."""
        self.finish()
        part = _Partial(self._channel, self._totals, self._st.rank.copy(),
                        self._st.bank.copy(), self._requests, self._payload, self._chunks)
        return _combine(self.spec, self.config, [part], source, payload_bytes)


@dataclass
class _Partial:
    """What a channel (or all channels together) leaves after a run."""

    channel: int | None
    totals: _Totals
    rank: np.ndarray
    bank: np.ndarray
    requests: int
    payload: int
    chunks: int


def _combine(spec: DramSpec, config: ControllerConfig, parts: list[_Partial], source: str,
             payload_bytes: float | None) -> Stats:
    o = spec.org
    layout = Layout.of(spec)
    tot = _Totals()
    rank = np.zeros((layout.n_ranks, parts[0].rank.shape[1]), np.int64)
    bank = np.zeros((layout.n_banks, parts[0].bank.shape[1]), np.int64)
    for p in parts:
        tot.merge(p.totals)
        if p.channel is None:
            rank[:], bank[:] = p.rank, p.bank
        else:
            r0, b0 = p.channel * o.ranks, p.channel * o.ranks * o.banks
            rank[r0:r0 + o.ranks] = p.rank
            bank[b0:b0 + o.ranks * o.banks] = p.bank
    summary = histogram_summary(tot.lat_hist, tot.lat_sum)
    payload = float(parts[0].payload if payload_bytes is None else payload_bytes)
    return stats_from_totals(
        spec, config, requests=parts[0].requests, bursts=tot.bursts, reads=tot.reads,
        kinds=tot.kinds, payload_bytes=payload, cycles=tot.max_done, rank=rank, bank=bank,
        read_latency=summary, source=source, latency_histogram=tot.lat_hist,
        done_histogram=tot.done_hist, done_bin_cycles=tot.done_bin)


def _pieces(trace: AccessTrace, burst_bytes: int, max_bursts: int) -> Iterator[AccessTrace]:
    """Cut ``trace`` at request boundaries into pieces of at most ``max_bursts`` bursts (a
    single larger request is a piece of its own)."""
    n = len(trace)
    ends = np.cumsum(trace.bursts(burst_bytes))
    if not n or ends[-1] <= max_bursts:
        if n:
            yield trace
        return
    start = 0
    while start < n:
        base = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, base + max_bursts, side="right")), start + 1)
        yield _slice(trace, start, stop)
        start = stop


def _slice(trace: AccessTrace, a: int, b: int) -> AccessTrace:
    return AccessTrace(trace.addr[a:b], trace.size[a:b], trace.is_write[a:b],
                       None if trace.time_ns is None else trace.time_ns[a:b],
                       trace.layer[a:b], trace.plane[a:b])


def simulate_stream(traces: Iterable[AccessTrace], spec: DramSpec | str = "ddr4-2400",
                    config: ControllerConfig | None = None, *, chunk_bursts: int = WINDOW_BURSTS,
                    **overrides) -> StreamStats:
    """Simulate ``traces`` back to back without holding them all (see the module doc)."""
    sim = StreamSimulator(spec, config, chunk_bursts=chunk_bursts, **overrides)
    for t in traces:
        sim.feed(t)
    return sim.finish()


# whole traces: files or arrays, all channels together or channel by channel ------------------

TraceSource = str | os.PathLike | AccessTrace | Workload


def _chunks(source: TraceSource, chunk_requests: int) -> Iterator[AccessTrace]:
    if isinstance(source, Workload):
        source = source.trace
    if isinstance(source, AccessTrace):
        for a in range(0, len(source), chunk_requests):
            yield source if len(source) <= chunk_requests else _slice(
                source, a, min(a + chunk_requests, len(source)))
        return
    yield from iter_trace_fast(source, chunk_requests)


class _ChannelSim(StreamSimulator):
    """One channel of the system, fed its own bursts in trace order (per-channel mode)."""

    def __init__(self, spec: DramSpec, config: ControllerConfig, channel: int,
                 chunk_bursts: int) -> None:
        self._setup(spec, config, chunk_bursts, channel, {})
        o = spec.org
        self._shift = np.zeros(N_Q, np.int64)
        self._shift[Q_CH] = channel
        self._shift[Q_FR] = channel * o.ranks
        self._shift[Q_FG] = channel * o.ranks * o.bankgroups
        self._shift[Q_FB] = channel * o.ranks * o.banks

    def feed_local(self, rows: np.ndarray) -> None:
        """Feed this channel's rows (a fresh array: renumbered in place)."""
        rows -= self._shift
        self._feed_rows(rows)


def _simulate_channels(source: TraceSource, spec: DramSpec, config: ControllerConfig,
                       channels: list[int], chunk_requests: int, chunk_bursts: int,
                       report: Callable[[int], None] | None = None) -> list[_Partial]:
    """Per-channel mode for ``channels``: read the whole trace, keep their bursts. Runs in a
    worker process or a Dask task; ``report(k)`` is called after each ``k`` requests read."""
    front = StreamSimulator(spec, config)  # its frontend only: bursts, mapping, times
    sims = {c: _ChannelSim(spec, config, c, chunk_bursts) for c in channels}
    mine = np.zeros(spec.org.channels, bool)
    mine[channels] = True
    requests = payload = 0
    for chunk in _chunks(source, chunk_requests):
        front._check_timed(chunk)
        for s in sims.values():
            s._check_timed(chunk)
        requests += len(chunk)
        payload += chunk.payload_bytes
        for piece in _pieces(chunk, spec.org.burst_bytes, 1 << 20):
            rows = front._rows(piece, None if mine.all() else mine)
            ch = rows[:, Q_CH]
            if len(sims) == 1:
                next(iter(sims.values())).feed_local(rows)
                continue
            idx = np.argsort(ch, kind="stable")  # by channel, trace order kept within each
            bounds = np.searchsorted(ch[idx], np.arange(spec.org.channels + 1))
            for c, s in sims.items():
                if bounds[c + 1] > bounds[c]:
                    s.feed_local(rows[idx[bounds[c]:bounds[c + 1]]])
        if report is not None:
            report(len(chunk))
    out = []
    for c, s in sims.items():
        s.finish()
        out.append(_Partial(c, s._totals, s._st.rank.copy(), s._st.bank.copy(), requests,
                            payload, s._chunks))
    return out


def simulate_trace(source: TraceSource, spec: DramSpec | str = "ddr4-2400",
                   config: ControllerConfig | None = None, *, jobs: int | None = None,
                   dask: str | None = None, dask_timeout_s: float = 20.0,
                   chunk_requests: int = 1 << 18, chunk_bursts: int = WINDOW_BURSTS,
                   progress: Callable[[int], None] | None = None, **overrides) -> Stats:
    """Simulate a whole trace (a file of any length, an :class:`AccessTrace` or a
    :class:`Workload`) in bounded memory, reading ``chunk_requests`` requests at a time.

    Without ``jobs`` and ``dask`` all channels run together in one trace-order stream, equal to
    :func:`~psa.sim.simulate`. ``jobs=N`` runs the channels in per-channel mode (see the module
    doc) on ``N`` local processes (1: in this process), ``dask="tcp://host:port"`` as tasks on
    that Dask scheduler (connection timeout ``dask_timeout_s``; workers must see the trace
    file); every N, and Dask, give the same
    result. ``progress(n)`` is called with the number of requests read so far (local runs;
    not on Dask).
    """
    if isinstance(spec, str):
        spec = load_preset(spec)
    config = replace(config or ControllerConfig(), **overrides)
    if not isinstance(chunk_requests, int) or chunk_requests < 1:
        raise ValueError(f"chunk_requests must be an integer >= 1, got {chunk_requests!r}")
    payload = source.payload_bytes if isinstance(source, Workload) else None
    name = (source.source if isinstance(source, Workload)
            else "" if isinstance(source, AccessTrace) else str(source))
    if jobs is None and dask is None:
        sim = StreamSimulator(spec, config, chunk_bursts=chunk_bursts)
        done = 0
        for chunk in _chunks(source, chunk_requests):
            sim.feed(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done)
        return sim.result(name, payload)
    if jobs is not None and dask is not None:
        raise ValueError("give either jobs (local processes) or dask (a cluster), not both")
    if config.max_outstanding:
        raise ValueError("max_outstanding bounds requests across channels; the per-channel "
                         "mode (jobs, dask) needs max_outstanding=0")
    n_ch = spec.org.channels
    per_channel_window = max(1024, min(chunk_bursts, (1 << 20) // n_ch))
    if dask is not None:
        parts = _run_dask(dask, source, spec, config, chunk_requests, per_channel_window,
                          progress, dask_timeout_s)
    else:
        if not isinstance(jobs, int) or jobs < 1:
            raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
        groups = [list(range(n_ch))[k::jobs] for k in range(min(jobs, n_ch))]
        parts = _run_local(groups, source, spec, config, chunk_requests, per_channel_window,
                           progress)
    parts.sort(key=lambda p: p.channel)
    return _combine(spec, config, parts, name, payload)


def _run_local(groups, source, spec, config, chunk_requests, window, progress):
    if len(groups) == 1:
        read = [0]

        def report(k: int) -> None:
            read[0] += k
            if progress is not None:
                progress(read[0])

        return _simulate_channels(source, spec, config, groups[0], chunk_requests, window,
                                  report)
    import multiprocessing as mp
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    # fork: workers start at once with the compiled kernel already loaded
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    counter = ctx.Value("q", 0)
    if isinstance(source, Workload):
        source = source.trace
    if isinstance(source, (str, os.PathLike)):
        source = str(Path(source))
    with ProcessPoolExecutor(len(groups), mp_context=ctx, initializer=_set_counter,
                             initargs=(counter,)) as pool:
        futs = [pool.submit(_worker, source, spec, config, g, chunk_requests, window)
                for g in groups]
        while True:
            done, pending = wait(futs, timeout=0.5, return_when=FIRST_EXCEPTION)
            if progress is not None:  # each worker reads the whole trace
                progress(int(counter.value) // len(groups))
            failed = [f for f in done if f.exception() is not None]
            if failed:
                for f in pending:
                    f.cancel()
                raise failed[0].exception()
            if not pending:
                break
        return [p for f in futs for p in f.result()]


_COUNTER = None


def _set_counter(counter) -> None:
    global _COUNTER
    _COUNTER = counter


def _count(k: int) -> None:
    with _COUNTER.get_lock():
        _COUNTER.value += k


def _worker(source, spec, config, channels, chunk_requests, window):
    return _simulate_channels(source, spec, config, channels, chunk_requests, window, _count)


def _run_dask(address, source, spec, config, chunk_requests, window, progress, timeout_s):
    try:
        from dask.distributed import Client, as_completed
    except ImportError:  # pragma: no cover - dask is a dependency
        raise RuntimeError("--dask needs dask[distributed]: pip install 'dask[distributed]'") \
            from None
    try:
        client = Client(address, timeout=f"{timeout_s}s")
    except OSError as e:
        raise RuntimeError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    try:
        if isinstance(source, Workload):
            source = source.trace
        if isinstance(source, (str, os.PathLike)):
            source = str(Path(source).resolve())
        n_ch = spec.org.channels
        slots = max(sum(client.nthreads().values()), 1)
        groups = [list(range(n_ch))[k::slots] for k in range(min(slots, n_ch))]
        futs = [client.submit(_simulate_channels, source, spec, config, g, chunk_requests,
                              window, pure=False) for g in groups]
        parts = []
        for f in as_completed(futs):
            parts.extend(f.result())
        return parts
    finally:
        client.close()

