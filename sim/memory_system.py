"""Public entry point: run a trace through a memory system and collect :class:`Stats`."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from psa.golden.trace import AccessTrace

from . import controller as ctl
from .addr_map import DEFAULT_MAPPING, MappedAddresses, map_addresses, resolve_mapping
from .energy import energy_breakdown_nJ
from .frontend import Workload, split_bursts
from .scheduler import SCHEDULERS
from .spec import CMDS, DramSpec, constraint_table, load_preset
from .state import (
    B_COLS,
    N_Q,
    Q_CH,
    Q_CVER,
    Q_DONE,
    Q_ENQ,
    Q_FB,
    Q_FG,
    Q_FR,
    Q_KIND,
    Q_ROW,
    Q_TIME,
    Q_WR,
    R_ACTIVE_CYCLES,
    R_CMD,
    S_LOG,
    S_NOW,
    S_SERVED,
    S_STATUS,
    ControllerState,
    Layout,
)
from .stats import Stats, latency_summary

__all__ = ["ControllerConfig", "simulate", "compile_rules", "stats_from_totals",
           "ensure_compiled", "kernel_cached"]

PAGE_POLICIES = ("open", "closed")


@dataclass(frozen=True)
class ControllerConfig:
    """Controller parameters.

    Parameters
    ----------
    scheduler: ``frfcfs`` (classic) or ``frfcfs-ramulator`` (Ramulator 2.1), see scheduler.py.
    page_policy: ``open`` (rows stay open) or ``closed`` (PRE after the last queued hit).
    mapping: address mapping name (addr_map.MAPPINGS).
    read_queue, write_queue: entries per channel, >= 1.
    write_high, write_low: write-drain watermarks as fractions of ``write_queue``
        (0 <= low < high <= 1).
    refresh: all-bank refresh every nREFI per rank.
    max_outstanding: bound on requests in flight (queued or awaiting data), 0 = only the
        queues bound them.
    wrap_addresses: ignore address bits above the capacity (as Ramulator does) instead of
        refusing such addresses.
    """

    scheduler: str = "frfcfs"
    page_policy: str = "open"
    mapping: str = DEFAULT_MAPPING
    read_queue: int = 32
    write_queue: int = 32
    write_high: float = 0.8
    write_low: float = 0.2
    refresh: bool = True
    max_outstanding: int = 0
    wrap_addresses: bool = False

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got "
                             f"{self.scheduler!r}")
        if self.page_policy not in PAGE_POLICIES:
            raise ValueError(f"page_policy must be 'open' or 'closed', got {self.page_policy!r}")
        object.__setattr__(self, "mapping", resolve_mapping(self.mapping))
        for name in ("read_queue", "write_queue"):
            v = getattr(self, name)
            if not isinstance(v, int) or not 1 <= v <= 4096:
                raise ValueError(f"{name} must be an integer in 1..4096, got {v!r}")
        if not 0.0 <= self.write_low < self.write_high <= 1.0:
            raise ValueError(f"watermarks need 0 <= write_low < write_high <= 1, got "
                             f"{self.write_low}, {self.write_high}")
        if not isinstance(self.max_outstanding, int) or self.max_outstanding < 0:
            raise ValueError(f"max_outstanding must be an integer >= 0, got "
                             f"{self.max_outstanding!r}")


def compile_rules(spec: DramSpec):
    """The rule table as ``(ptr, rules, nFAW)``: rows ``(level, following, latency,
    sibling)`` grouped by preceding command, rows of command ``c`` at ``ptr[c]:ptr[c+1]``."""
    level_idx = {"channel": 0, "rank": 1, "bankgroup": 2, "bank": 3}
    rows = []
    n_faw = 0
    for c in constraint_table(spec):
        if c.window > 1:
            if c.window != 4 or c.level != "rank" or c.preceding != ("ACT",):
                raise ValueError("only the rank-level four-activate window is supported")
            n_faw = c.latency
            continue
        for p in c.preceding:
            for f in c.following:
                rows.append((CMDS.index(p), level_idx[c.level], CMDS.index(f), c.latency,
                             int(c.sibling)))
    rows.sort(key=lambda r: r[0])
    arr = np.array(rows, dtype=np.int64).reshape(-1, 5)
    ptr = np.searchsorted(arr[:, 0], np.arange(len(CMDS) + 1)).astype(np.int64)
    return ptr, np.ascontiguousarray(arr[:, 1:]), n_faw



def request_rows(bursts, spec: DramSpec, config: ControllerConfig, *,
                 channel_mask: np.ndarray | None = None):
    """The controller's request table (``N_Q`` columns) for ``bursts`` (from
    :func:`split_bursts`): channel, flat rank / bank-group / bank, row, write flag; no times.

    With ``channel_mask`` (a bool per channel) only the bursts of those channels get a row:
    returns ``(table, burst indices)``."""
    o = spec.org
    addr = bursts.addr
    if config.wrap_addresses:  # capacity is a power of two
        addr = addr & np.uint64(o.capacity_bytes - 1)
    m = map_addresses(addr, spec, config.mapping)
    wr, sel = bursts.is_write, None
    if channel_mask is not None:
        sel = np.flatnonzero(channel_mask[m.channel])
        m = MappedAddresses(*(getattr(m, f.name)[sel] for f in fields(MappedAddresses)))
        wr = wr[sel]
    req = np.zeros((len(m.channel), N_Q), np.int64)
    req[:, Q_CH] = m.channel
    req[:, Q_FR] = m.channel * o.ranks + m.rank
    req[:, Q_FG] = req[:, Q_FR] * o.bankgroups + m.bankgroup
    req[:, Q_FB] = req[:, Q_FR] * o.banks + m.bankgroup * o.banks_per_group + m.bank
    req[:, Q_ROW] = m.row
    req[:, Q_WR] = wr
    req[:, Q_KIND] = -1
    req[:, Q_CVER] = -1
    return req if channel_mask is None else (req, sel)


def controller_config(spec: DramSpec, config: ControllerConfig, layout, ptr: np.ndarray,
                      n_faw: int, *, log_cap: int = 0, timed: bool = False) -> np.ndarray:
    """The controller loop's configuration vector (``controller.K_*`` entries)."""
    o, t = spec.org, spec.timing
    cfg = np.zeros(ctl.N_K, np.int64)
    cfg[ctl.K_NCH], cfg[ctl.K_NRK] = o.channels, o.ranks
    cfg[ctl.K_NBG], cfg[ctl.K_NBA] = o.bankgroups, o.banks
    cfg[ctl.K_RQCAP], cfg[ctl.K_WQCAP] = config.read_queue, config.write_queue
    cfg[ctl.K_WHI], cfg[ctl.K_WLO] = ctl.watermarks(config.write_high, config.write_low,
                                                     config.write_queue)
    cfg[ctl.K_MAXOUT] = config.max_outstanding
    cfg[ctl.K_SCHED] = SCHEDULERS.index(config.scheduler)
    cfg[ctl.K_CLOSED] = config.page_policy == "closed"
    cfg[ctl.K_DUAL] = spec.dual_command_bus
    cfg[ctl.K_NBL], cfg[ctl.K_NCL], cfg[ctl.K_NCWL] = t.nBL, t.nCL, t.nCWL
    cfg[ctl.K_NREFI], cfg[ctl.K_NFAW] = t.nREFI, n_faw
    cfg[ctl.K_LOGCAP] = log_cap
    cfg[ctl.K_OFF_RK], cfg[ctl.K_OFF_BG], cfg[ctl.K_OFF_BK] = (layout.off_rank, layout.off_bg,
                                                               layout.off_bank)
    cfg[ctl.K_TIMED] = timed
    cfg[ctl.K_WATCHDOG] = 16 * t.nREFI + 100 * (t.nRFC + t.nRC) + 100_000
    cfg[ctl.K_PTR:ctl.K_PTR + len(ptr)] = ptr
    ctl.refresh_config(cfg, spec)
    return cfg


def simulate(trace: AccessTrace | Workload, spec: DramSpec | str = "ddr4-2400",
             config: ControllerConfig | None = None, *, progress: bool = False,
             log_commands: bool = False, **overrides) -> Stats:
    """Simulate ``trace`` on ``spec`` (a :class:`DramSpec` or preset name / TOML path).

    ``overrides`` are :class:`ControllerConfig` fields (``scheduler="frfcfs-ramulator"``...).
    With ``log_commands`` the issued commands are kept in ``Stats.command_log`` (columns
    ``controller.L_*``) for the timing checker. Addresses beyond capacity raise ValueError.
    """
    if isinstance(spec, str):
        spec = load_preset(spec)
    config = replace(config or ControllerConfig(), **overrides)
    payload = None
    source = ""
    if isinstance(trace, Workload):
        payload, source, trace = trace.payload_bytes, trace.source, trace.trace
    o, t = spec.org, spec.timing
    layout = Layout.of(spec)
    bursts = split_bursts(trace, o.burst_bytes, t.tCK_ps)
    n = len(bursts.addr)
    req = request_rows(bursts, spec, config)
    timed = bursts.time_cycles is not None
    if timed:
        req[:, Q_TIME] = bursts.time_cycles

    ptr, rules, n_faw = compile_rules(spec)
    log_cap = (3 * n + 64 + 4 * layout.n_ranks) if log_commands else 0
    cfg = controller_config(spec, config, layout, ptr, n_faw, log_cap=log_cap, timed=timed)

    st = ControllerState.new(layout, config.read_queue, config.write_queue,
                             config.max_outstanding + 1, t.nREFI, config.refresh)
    log = np.zeros((max(log_cap, 1), ctl.N_L), np.int64)
    args = (cfg, rules, req, st.nxt, st.bank, st.rank, st.chan, st.qs, st.heap, st.scal, log)

    def finished() -> bool:
        return st.scal[S_SERVED] >= n or st.scal[S_STATUS] != 0

    if progress and n >= 200_000:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
        step = max(n // 50, 10_000)
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeRemainingColumn(), transient=True) as bar:
            task = bar.add_task(f"simulating {spec.name}", total=n)
            while not finished():
                ctl.run(min(int(st.scal[1]) + step, n), *args)
                bar.update(task, completed=int(st.scal[S_SERVED]))
    else:
        ctl.run(n, *args)
    if st.scal[S_STATUS] != 0:
        raise RuntimeError(f"DRAM model stalled at cycle {st.scal[S_NOW]} with "
                           f"{n - st.scal[S_SERVED]} bursts unserved (internal error; please "
                           "report with the trace)")
    done, enq, kind = req[:, Q_DONE], req[:, Q_ENQ], req[:, Q_KIND]
    b_wr = req[:, Q_WR]
    rd_lat = (done - enq)[b_wr == 0]
    return stats_from_totals(
        spec, config, requests=len(trace), bursts=n, reads=int((b_wr == 0).sum()),
        kinds=np.bincount(kind[kind >= 0], minlength=3),
        payload_bytes=float(trace.payload_bytes if payload is None else payload),
        cycles=int(done.max()) if n else 0, rank=st.rank, bank=st.bank,
        read_latency=latency_summary(rd_lat), source=source, done_cycles=done.copy(),
        read_latencies=rd_lat,
        command_log=log[:min(int(st.scal[S_LOG]), log_cap)].copy() if log_commands else None)


def stats_from_totals(spec: DramSpec, config: ControllerConfig, *, requests: int, bursts: int,
                      reads: int, kinds: np.ndarray, payload_bytes: float, cycles: int,
                      rank: np.ndarray, bank: np.ndarray, read_latency: dict[str, float],
                      source: str = "", **raw) -> Stats:
    """:class:`Stats` from a run's totals: ``kinds`` counts bursts per ``controller.HIT /
    MISS / CONFLICT``, ``rank`` and ``bank`` are the final state tables (active-standby time
    is closed at ``cycles`` here, on a copy), ``raw`` the per-burst arrays or histograms."""
    o, t = spec.org, spec.timing
    layout = Layout.of(spec)
    rank = rank.copy()
    ctl.close_active_time(cycles, rank)
    counts = {c: int(rank[:, R_CMD + i].sum()) for i, c in enumerate(CMDS)}
    dram_bytes = bursts * o.burst_bytes
    ns = cycles * spec.tCK_ns
    bank_set_refresh = {"refsbs": counts["REFSB"]} if "REFSB" in counts else {}
    energy = energy_breakdown_nJ(
        spec, acts=counts["ACT"], reads=counts["RD"], writes=counts["WR"], refs=counts["REF"],
        active_cycles=int(rank[:, R_ACTIVE_CYCLES].sum()),
        total_rank_cycles=cycles * layout.n_ranks, **bank_set_refresh)
    util = (bank[:, B_COLS] * t.nBL / cycles) if cycles else np.zeros(layout.n_banks)
    return Stats(
        preset=spec.name, standard=spec.standard, scheduler=config.scheduler,
        mapping=config.mapping, page_policy=config.page_policy, refresh=config.refresh,
        channels=o.channels, ranks=o.ranks, requests=requests, bursts=bursts, reads=reads,
        writes=bursts - reads, payload_bytes=float(payload_bytes), dram_bytes=dram_bytes,
        cycles=cycles, ns=ns, bandwidth_GBps=dram_bytes / ns if ns else 0.0,
        peak_GBps=spec.peak_GBps, row_hits=int(kinds[ctl.HIT]),
        row_misses=int(kinds[ctl.MISS]), row_conflicts=int(kinds[ctl.CONFLICT]),
        read_latency_cycles=read_latency, commands=counts, energy_nJ=energy["total"],
        energy_breakdown_nJ=energy, bank_utilization=[float(u) for u in util], source=source,
        tCK_ns=spec.tCK_ns, **raw)


def kernel_cached() -> bool:
    """Whether the compiled controller kernel for the current source is in the cache."""
    return ctl.kernel_path().exists()


def ensure_compiled(console=None, *, force_message: bool = False) -> float:
    """Load the controller kernel, compiling it first (one time, a few seconds of g++) when
    this source has not been built yet (a new install, or sim/controller.cpp edited); returns
    the seconds it took. The compile is announced on ``console`` (a rich Console; default
    stderr); ``force_message`` also says when it was ready already."""
    import time

    def say(msg: str) -> None:
        if console is None:
            import sys
            print(msg, file=sys.stderr, flush=True)
        else:
            console.print(msg, highlight=False)

    if ctl._LIB is not None or kernel_cached():
        t0 = time.perf_counter()
        ctl.kernel()
        if force_message:
            say(f"DRAM kernel ready (compiled already: {ctl.kernel_path()})")
        return time.perf_counter() - t0
    t0 = time.perf_counter()
    ctl.kernel(say)
    return time.perf_counter() - t0
