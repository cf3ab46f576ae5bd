"""Ramulator 2.1's controller bookkeeping (``--scheduler frfcfs-ramulator``) on small hand-made
traces: a request leaves its queue at its ACT (active buffer), write drain stops below
``0.2 * depth`` in single precision, refreshes wait in one FIFO per channel and stop its
queues, the frontend hands over one request per cycle, and addresses above the capacity are
wrapped only on request. Ramulator itself is not needed (the side-by-side matrix is
``python -m psa.sim.validation --ramulator PATH``, docs/dram_validation.md); every run here is
also replayed through the independent timing checker."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from psa.cli import cli
from psa.golden.trace import AccessTrace
from psa.sim import load_preset, simulate
from psa.sim.checker import check_log
from psa.sim.controller import L_CMD, L_RANK, L_REQ, L_T, watermarks
from psa.sim.spec import ACT, CMDS, PRE, RD, REF, WR
from psa.sim.validation import (
    PATTERNS,
    WRITE_FRACTION,
    main,
    matrix_spec,
    matrix_trace,
    ramulator_python_path,
    write_ramulator_trace,
)

DDR4 = load_preset("ddr4-2400")
HBM2 = matrix_spec("hbm2-ramulator")
SCHEDULERS = ("frfcfs", "frfcfs-ramulator")


def addr(spec, bankgroup=0, bank=0, row=0, col=0, rank=0):
    """Byte address of a burst under RoBaRaCoCh (LSB first: column, rank, bank group, bank,
    row; one channel)."""
    o = spec.org
    burst = (((row * o.banks_per_group + bank) * o.bankgroups + bankgroup) * o.ranks + rank)
    return (burst * o.bursts_per_row + col) * o.burst_bytes


def run(trace, spec=DDR4, **kw):
    kw.setdefault("mapping", "RoBaRaCoCh")
    kw.setdefault("refresh", False)
    s = simulate(trace, spec, log_commands=True, **kw)
    v = check_log(s.command_log, spec, end_cycle=s.cycles, refresh=kw["refresh"])
    assert v == [], [str(x) for x in v]
    return s


def commands(s, *which):
    log = s.command_log
    return log[np.isin(log[:, L_CMD], which)]


# -- a request leaves its queue at its ACT ---------------------------------------------------

@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_request_leaves_the_queue_at_its_act(scheduler):
    """One-entry read queue, four reads to four bank groups: Ramulator admits the next read
    as soon as the previous one's ACT has issued (4 ACTs, tRRD_S apart, before the first RD);
    the classic bookkeeping only after its RD."""
    t = DDR4.timing
    trace = AccessTrace([addr(DDR4, bankgroup=g) for g in range(4)], 64)
    s = run(trace, scheduler=scheduler, read_queue=1)
    seq = "".join({ACT: "A", RD: "R"}[c] for c in commands(s, ACT, RD)[:, L_CMD])
    acts = commands(s, ACT)[:, L_T]
    if scheduler == "frfcfs-ramulator":
        assert seq == "AAAARRRR"  # 4 requests in the controller with a 1-entry queue
        assert list(acts) == [0, t.nRRDS, 2 * t.nRRDS, 3 * t.nRRDS]
    else:
        assert seq == "ARARARAR"
        assert acts[1] == t.nRCD + 1  # admitted the cycle after the first RD


def test_active_buffer_holds_one_request_per_bank():
    """Two reads to one row of a bank and one to another row: the second is a row hit served
    from the queue, and the conflicting read's PRE waits until no activated request needs the
    row; at most banks-per-channel requests are ever activated."""
    t = DDR4.timing
    trace = AccessTrace([addr(DDR4, row=1), addr(DDR4, row=1, col=1), addr(DDR4, row=2)], 64)
    s = run(trace, scheduler="frfcfs-ramulator")
    log = s.command_log
    kinds = [CMDS[c] for c in log[:, L_CMD]]
    assert kinds == ["ACT", "RD", "RD", "PRE", "ACT", "RD"]
    rd = log[log[:, L_CMD] == RD, L_T]
    assert rd[0] == t.nRCD and rd[1] == t.nRCD + t.nCCDL
    assert (s.row_misses, s.row_hits, s.row_conflicts) == (1, 1, 1)


# -- write drain ------------------------------------------------------------------------------

def test_watermarks_are_ramulators_single_precision_compare():
    # drain starts above 25.6 (26 writes) and stops below 6.4 (at 6), not int(6.4) = 5
    assert watermarks(0.8, 0.2, 32) == (25, 7)
    assert watermarks(0.5, 0.25, 8) == (4, 2)  # exact products stay exact
    assert watermarks(0.8, 0.2, 5) == (4, 1)  # 0.2f * 5 == 1.0f: stop when empty


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_write_drain_stops_with_six_of_32_writes_left(scheduler):
    """40 reads, 30 writes, 100 reads (one row each, no ACT among the writes): the drain starts
    when 26 writes wait and stops below 6.4, leaving 6 writes for the end (24 + 6 WRs)."""
    n_r1, n_w, n_r2 = 40, 30, 100
    cols = np.arange(n_r1 + n_w + n_r2)
    a = [addr(DDR4, col=c % 128, bankgroup=0 if c < 128 else 1) for c in cols]
    is_w = (cols >= n_r1) & (cols < n_r1 + n_w)
    s = run(AccessTrace(a, 64, is_write=is_w), scheduler=scheduler)
    col = commands(s, RD, WR)[:, L_CMD]
    kinds = "".join("W" if c == WR else "R" for c in col)
    runs = [len(r) for r in kinds.replace("R", " ").split()]
    assert runs == [24, 6], kinds


# -- refresh ----------------------------------------------------------------------------------

def _random_reads(spec, n, seed=5):
    rng = np.random.default_rng(seed)
    lines = rng.choice(spec.org.capacity_bytes // spec.org.burst_bytes, n, replace=False)
    return AccessTrace(lines.astype(np.uint64) * spec.org.burst_bytes, spec.org.burst_bytes)


def test_refreshes_wait_in_one_fifo_and_stop_the_queues():
    """HBM2, two pseudo-channels refreshed at the same deadlines: Ramulator queues the two
    refreshes in pseudo-channel order and, until the second REF has issued, serves only
    requests already activated (no ACT, no PRE and no column command of a queued request)."""
    t = HBM2.timing
    s = run(_random_reads(HBM2, 6000), HBM2, scheduler="frfcfs-ramulator", refresh=True)
    log = s.command_log
    refs = log[log[:, L_CMD] == REF]
    act_time = {int(r[L_REQ]): int(r[L_T]) for r in log[log[:, L_CMD] == ACT]}
    rounds = int(s.cycles // t.nREFI)
    assert rounds >= 3
    for k in range(1, rounds + 1):
        due = k * t.nREFI
        rk = refs[(refs[:, L_T] >= due) & (refs[:, L_T] < due + t.nREFI)]
        assert list(rk[:, L_RANK]) == [0, 1]  # the FIFO order
        window = log[(log[:, L_T] >= due) & (log[:, L_T] < rk[1, L_T])]
        queued = [r for r in window if r[L_CMD] in (ACT, PRE)
                  or (r[L_CMD] in (RD, WR) and act_time.get(int(r[L_REQ]), due) >= due)]
        assert queued == [], (k, queued[:3])
        served = window[np.isin(window[:, L_CMD], (RD, WR))]
        assert all(act_time[int(r[L_REQ])] < due for r in served)


# -- frontend ---------------------------------------------------------------------------------

def test_latency_counts_from_the_hand_over_cycle():
    """Ramulator's frontend hands a request over one cycle before the controller can first
    schedule it, and counts latency from there: one cycle more than the classic accounting."""
    t = DDR4.timing
    trace = AccessTrace([addr(DDR4, row=3)], 64)
    classic = run(trace)
    ram = run(trace, scheduler="frfcfs-ramulator")
    assert classic.read_latency_cycles["max"] == t.nRCD + t.nCL + t.nBL
    assert ram.read_latency_cycles["max"] == t.nRCD + t.nCL + t.nBL + 1
    assert ram.cycles == classic.cycles


def test_one_request_per_cycle_enters_the_controller():
    """Eight row hits to one open row: the classic controller admits them at once and reads
    every tCCD_L; Ramulator's frontend hands over one per cycle, which tCCD_L hides."""
    t = DDR4.timing
    trace = AccessTrace([addr(DDR4, col=c) for c in range(8)], 64)
    for scheduler in SCHEDULERS:
        s = run(trace, scheduler=scheduler)
        rd = commands(s, RD)[:, L_T]
        assert list(np.diff(rd)) == [t.nCCDL] * 7


@pytest.mark.parametrize("preset", ["ddr4-2400", "hbm2-ramulator"])
def test_random_mixed_traffic_never_violates_timing(preset):
    spec = matrix_spec(preset)
    for pattern in PATTERNS:
        trace = matrix_trace(pattern, spec, 3000)
        s = run(trace, spec, scheduler="frfcfs-ramulator", refresh=True)
        assert s.commands["RD"] + s.commands["WR"] == s.bursts


# -- address wrapping -------------------------------------------------------------------------

def test_wrap_addresses_ignores_the_bits_above_the_capacity():
    cap = DDR4.org.capacity_bytes
    low = AccessTrace([64, 8192, 128], 64)
    high = AccessTrace([cap + 64, 5 * cap + 8192, 128], 64)
    with pytest.raises(ValueError, match="--wrap-addresses"):
        simulate(high, DDR4)
    a = run(low, scheduler="frfcfs-ramulator")
    b = run(high, scheduler="frfcfs-ramulator", wrap_addresses=True)
    assert b.cycles == a.cycles and list(b.read_latencies) == list(a.read_latencies)
    assert np.array_equal(b.command_log, a.command_log)


def test_cli_wrap_addresses(tmp_path):
    cap = DDR4.org.capacity_bytes
    path = tmp_path / "high.trace"
    AccessTrace(np.arange(100, dtype=np.uint64) * 64 + np.uint64(cap), 64).write(path)
    runner = CliRunner()
    r = runner.invoke(cli, ["dram", str(path)])
    assert r.exit_code != 0
    assert "beyond the capacity" in r.output and "--wrap-addresses" in r.output
    r = runner.invoke(cli, ["dram", str(path), "--wrap-addresses", "--scheduler",
                            "frfcfs-ramulator"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "row hit rate" in r.output


# -- the matrix's traces and the Ramulator runner ---------------------------------------------

@pytest.mark.parametrize("pattern", PATTERNS)
def test_matrix_traces_fit_one_channel_and_never_repeat_a_random_address(pattern, tmp_path):
    spec = HBM2
    tr = matrix_trace(pattern, spec, 5000)
    assert int(tr.addr.max()) < spec.org.capacity_bytes
    assert np.all(tr.size == spec.org.burst_bytes)
    if "random" in pattern:
        assert len(np.unique(tr.addr)) == len(tr.addr)
    w = tr.is_write.mean()
    assert (abs(w - WRITE_FRACTION) < 0.03) if pattern.startswith("mixed") else w == 0
    path = tmp_path / "t.trace"
    write_ramulator_trace(tr, path)
    lines = path.read_text().splitlines()
    assert len(lines) == 5000
    op, a = lines[1].split()
    assert op == ("ST" if tr.is_write[1] else "LD") and int(a, 16) == int(tr.addr[1])


def test_ramulator_path_is_checked(tmp_path):
    with pytest.raises(ValueError, match="not a Ramulator 2.1 checkout"):
        ramulator_python_path(tmp_path)
    (tmp_path / "python" / "ramulator").mkdir(parents=True)
    (tmp_path / "python" / "ramulator" / "__init__.py").write_text("")
    with pytest.raises(ValueError, match="no built _ramulator module"):
        ramulator_python_path(tmp_path)
    with pytest.raises(SystemExit):
        main(["--ramulator", str(tmp_path / "nowhere")])
