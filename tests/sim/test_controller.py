"""Controller behaviour: directed latencies, refresh, policies, throughput bounds, and the
independent checker over random and adversarial traces for every preset."""

from __future__ import annotations

import numpy as np
import pytest

from psa.golden.trace import AccessTrace
from psa.sim import ControllerConfig, list_presets, load_preset, simulate
from psa.sim.checker import check_log
from psa.sim.spec import ACT, CMDS, REF
from psa.sim.validation import random_read_bound, run_validation

DDR4 = load_preset("ddr4-2400")
SEED = 20240611


def timed(addrs, times_cycles, spec=DDR4, writes=None):
    """A timestamped trace of 64-byte reads (times given in memory cycles)."""
    t_ns = np.asarray(times_cycles, float) * spec.tCK_ns
    return AccessTrace(np.asarray(addrs, np.uint64), 64, is_write=writes, time_ns=t_ns)


def row_addr(row, col=0, spec=DDR4):
    """Byte address of (bank 0, row, column burst) under the RoBaRaCoCh mapping."""
    o = spec.org
    per_row = o.bursts_per_row * o.burst_bytes
    return row * per_row * o.banks * o.ranks * o.channels + col * o.burst_bytes


def run(trace, spec=DDR4, **kw):
    kw.setdefault("mapping", "RoBaRaCoCh")
    kw.setdefault("refresh", False)
    s = simulate(trace, spec, log_commands=True, **kw)
    v = check_log(s.command_log, spec, end_cycle=s.cycles, refresh=kw["refresh"])
    assert v == [], [str(x) for x in v]
    return s


# -- directed latencies --------------------------------------------------------------------

def test_idle_bank_read_costs_rcd_cl_burst():
    t = DDR4.timing
    s = run(timed([row_addr(3)], [10]))
    assert s.read_latency_cycles["max"] == t.nRCD + t.nCL + t.nBL
    assert (s.row_misses, s.row_hits, s.row_conflicts) == (1, 0, 0)


def test_row_hit_costs_cl_burst():
    t = DDR4.timing
    s = run(timed([row_addr(3), row_addr(3, col=5)], [10, 500]))
    lat = np.sort(s.read_latencies)
    assert lat[0] == t.nCL + t.nBL
    assert s.row_hits == 1


def test_row_conflict_adds_rp():
    t = DDR4.timing
    s = run(timed([row_addr(3), row_addr(4)], [10, 500]))
    assert s.read_latencies[1] == t.nRP + t.nRCD + t.nCL + t.nBL
    assert s.row_conflicts == 1


def test_closed_page_turns_the_conflict_into_a_miss():
    t = DDR4.timing
    s = run(timed([row_addr(3), row_addr(4)], [10, 500]), page_policy="closed")
    assert s.read_latencies[1] == t.nRCD + t.nCL + t.nBL
    assert s.row_conflicts == 0 and s.commands["PRE"] == 1  # the run ends at the last read


def test_refresh_blocks_the_rank_for_rfc_every_refi():
    t = DDR4.timing
    n_ref = 5
    # one read exactly when each refresh falls due: it waits tRFC
    due = [(k + 1) * t.nREFI for k in range(n_ref)]
    s = run(timed([row_addr(10 + k) for k in range(n_ref)], due), refresh=True)
    log = s.command_log
    refs = log[log[:, 1] == REF, 0]
    # the first refresh finds all banks closed; later ones close the open row first (PREA)
    assert list(refs) == [due[0]] + [d + t.nRP for d in due[1:]]
    assert list(log[log[:, 1] == CMDS.index("PREA"), 0]) == due[1:]
    acts = log[log[:, 1] == ACT, 0]
    assert list(acts - refs) == [t.nRFC] * n_ref
    base = t.nRFC + t.nRCD + t.nCL + t.nBL
    assert list(s.read_latencies) == [base] + [base + t.nRP] * (n_ref - 1)


def test_write_then_read_respects_turnaround_and_latencies():
    t = DDR4.timing
    s = run(timed([row_addr(3), row_addr(3, 1)], [10, 10], writes=[True, False]))
    log = s.command_log
    wr = log[log[:, 1] == CMDS.index("WR"), 0][0]
    rd = log[log[:, 1] == CMDS.index("RD"), 0][0]
    # reads go first (writes drain when no read waits), then the read-to-write turnaround
    assert rd < wr and wr - rd == t.nCL + t.nBL + 2 - t.nCWL
    s = run(timed([row_addr(3), row_addr(3, 1)], [10, 200], writes=[True, False]))
    log = s.command_log
    wr = log[log[:, 1] == CMDS.index("WR"), 0][0]
    rd = log[log[:, 1] == CMDS.index("RD"), 0][0]
    assert rd - wr == max(t.nCWL + t.nBL + t.nWTRL, 200 - wr)


# -- checker over random and adversarial traces, every preset --------------------------------

def _traces(spec, rng, n=3000):
    cap = spec.org.capacity_bytes // 64
    o = spec.org
    row_stride = o.row_bytes * o.banks * o.ranks * o.channels
    yield "random-rw", AccessTrace(rng.integers(0, cap, n).astype(np.uint64) * 64, 64,
                                   is_write=rng.random(n) < 0.4)
    yield "sequential", AccessTrace(np.arange(n, dtype=np.uint64) * 64, 64)
    # adversarial: same bank, alternating rows (all conflicts), mixed reads and writes
    rows = rng.integers(0, 64, n)
    yield "bank-thrash", AccessTrace((rows * row_stride).astype(np.uint64), 64,
                                     is_write=rng.random(n) < 0.5)
    # adversarial: one row in each of many banks, big requests, then a write burst
    yield "big-requests", AccessTrace(rng.integers(0, cap // 64, n // 8).astype(np.uint64)
                                      * 4096, 512, is_write=rng.random(n // 8) < 0.3)


@pytest.mark.parametrize("preset", sorted(list_presets()))
@pytest.mark.parametrize("scheduler", ["frfcfs", "frfcfs-ramulator"])
@pytest.mark.parametrize("page", ["open", "closed"])
def test_no_timing_violation(preset, scheduler, page):
    spec = load_preset(preset)
    if spec.org.channels > 2:
        spec = spec.with_overrides(channels=2)
    rng = np.random.default_rng(SEED)
    for name, trace in _traces(spec, rng):
        s = simulate(trace, spec, scheduler=scheduler, page_policy=page, log_commands=True,
                     mapping="MOP4CLXOR", read_queue=16, write_queue=16)
        v = check_log(s.command_log, spec, end_cycle=s.cycles)
        assert v == [], f"seed {SEED} {name}: " + "; ".join(map(str, v[:5]))
        assert s.commands["RD"] + s.commands["WR"] == s.bursts


def test_two_ranks_two_channels_no_violation():
    spec = DDR4.with_overrides(channels=2, ranks=2)
    rng = np.random.default_rng(SEED)
    for name, trace in _traces(spec, rng):
        s = simulate(trace, spec, log_commands=True, mapping="RoCoBaRaCh")
        v = check_log(s.command_log, spec, end_cycle=s.cycles)
        assert v == [], f"seed {SEED} {name}: " + "; ".join(map(str, v[:5]))


# -- throughput ------------------------------------------------------------------------------

def test_sequential_reads_reach_90_percent_of_peak_with_default_mapping():
    s = simulate(AccessTrace(np.arange(100_000, dtype=np.uint64) * 64, 64), DDR4)
    assert s.bandwidth_fraction >= 0.90, s.bandwidth_fraction


@pytest.mark.parametrize("preset", ["ddr4-2400", "hbm2", "hbm2-legacy"])
def test_random_reads_stay_under_the_activate_bound(preset):
    spec = load_preset(preset)
    o = spec.org
    rng = np.random.default_rng(SEED)
    n = 40_000
    s = simulate(AccessTrace(rng.integers(0, o.capacity_bytes // 64, n).astype(np.uint64) * 64,
                             64), spec)
    # each random read needs its own ACT: per rank (pseudo-channel) at most 4 per tFAW and one
    # per tRRD_S; per channel 3 command(-row)-bus cycles per read
    bound = random_read_bound(spec)
    assert s.row_hit_rate < 0.01
    assert s.bandwidth_fraction <= bound + 1e-9, (s.bandwidth_fraction, bound)
    assert s.bandwidth_fraction >= 0.8 * bound, (s.bandwidth_fraction, bound)


def test_scaled_down_ramulator_anchor():
    """100k of the 1M-request Ramulator 2.1 anchor stream: bytes/cycle and row hits match."""
    s = simulate(AccessTrace(np.arange(100_000, dtype=np.uint64) * 64, 64), DDR4,
                 scheduler="frfcfs-ramulator", mapping="RoBaRaCoCh", read_queue=32)
    assert abs(s.bytes_per_cycle - 11.96) / 11.96 < 0.05, s.bytes_per_cycle
    assert abs(s.row_hit_rate - 0.991) < 0.01


# -- frontend controls -----------------------------------------------------------------------

def test_max_outstanding_bounds_requests_in_flight():
    trace = AccessTrace(np.arange(2000, dtype=np.uint64) * 64, 64)
    one = simulate(trace, DDR4, max_outstanding=1)
    t = DDR4.timing
    # one at a time: every read waits for the previous one's data
    assert one.cycles >= 2000 * (t.nCL + t.nBL)
    many = simulate(trace, DDR4)
    assert many.cycles < one.cycles / 5


def test_timestamps_are_respected():
    t = DDR4.timing
    times = np.arange(100) * 1000
    s = run(timed(np.arange(100) * 64, times))
    rd = s.command_log[s.command_log[:, 1] == CMDS.index("RD"), 0]
    assert np.all(rd >= times)
    assert s.cycles >= times[-1] + t.nCL + t.nBL


def test_writes_drain_and_complete():
    rng = np.random.default_rng(SEED)
    n = 5000
    s = run(AccessTrace(rng.integers(0, 1 << 20, n).astype(np.uint64) * 64, 64,
                        is_write=rng.random(n) < 0.7))
    assert s.commands["WR"] == s.writes and s.commands["RD"] == s.reads


def test_bursts_split_and_bytes_counted():
    trace = AccessTrace([0, 100], [256, 10])  # 4 bursts, then 1 burst straddling none
    s = simulate(trace, DDR4)
    assert s.bursts == 5 and s.dram_bytes == 5 * 64 and s.payload_bytes == 266


def test_address_beyond_capacity_is_an_error():
    with pytest.raises(ValueError, match="beyond the capacity"):
        simulate(AccessTrace([DDR4.org.capacity_bytes], 64), DDR4)


def test_config_validation():
    with pytest.raises(ValueError, match="scheduler"):
        ControllerConfig(scheduler="fifo")
    with pytest.raises(ValueError, match="page_policy"):
        ControllerConfig(page_policy="adaptive")
    with pytest.raises(ValueError, match="mapping"):
        ControllerConfig(mapping="nope")
    with pytest.raises(ValueError, match="read_queue"):
        ControllerConfig(read_queue=0)
    with pytest.raises(ValueError, match="watermarks"):
        ControllerConfig(write_low=0.9, write_high=0.5)


def test_energy_counts_commands():
    rng = np.random.default_rng(SEED)
    trace = AccessTrace(rng.integers(0, 1 << 24, 4000).astype(np.uint64) * 64, 64)
    s = simulate(trace, DDR4)
    e = s.energy_breakdown_nJ
    assert e["act_pre"] > 0 and e["read"] > 0 and e["background"] > 0
    assert abs(sum(v for k, v in e.items() if k != "total") - s.energy_nJ) < 1e-6
    seq = simulate(AccessTrace(np.arange(4000, dtype=np.uint64) * 64, 64), DDR4)
    assert seq.energy_breakdown_nJ["act_pre"] < e["act_pre"] / 5


@pytest.mark.slow
def test_full_validation_anchors():
    """The 1M-request Ramulator 2.1 anchor and the bounds (python -m psa.sim.validation)."""
    checks = run_validation(1_000_000)
    failed = [c for c in checks if not c.passed]
    assert not failed, failed


def test_write_drain_follows_watermarks():
    # 6 writes then 200 reads; write queue of 8 drains above 4 (high) until below 2 (low)
    addrs = np.arange(206, dtype=np.uint64) * 64
    trace = AccessTrace(addrs, 64, is_write=np.arange(206) < 6)
    s = run(trace, write_queue=8, write_high=0.5, write_low=0.25)
    log = s.command_log
    col = log[(log[:, 1] == CMDS.index("RD")) | (log[:, 1] == CMDS.index("WR"))]
    kinds = "".join("W" if c == CMDS.index("WR") else "R" for c in col[:, 1])
    # drain to 1 write left (below low = 2), serve the reads, the last write when reads run out
    assert kinds == "W" * 5 + "R" * 200 + "W", kinds


@pytest.mark.parametrize("case", range(8))
def test_random_configurations_never_violate_timing(case):
    """Random controller settings, timed or not, bounded or not, over random traffic."""
    rng = np.random.default_rng(SEED + case)
    preset = ["ddr4-2400", "hbm2", "hbm2-legacy"][case % 3]
    spec = load_preset(preset).with_overrides(channels=int(rng.choice([1, 2])),
                                              ranks=int(rng.choice([1, 2])))
    n = 2500
    hot = rng.integers(0, spec.org.capacity_bytes // 4096, 64)  # some locality
    lines = np.where(rng.random(n) < 0.5, rng.choice(hot, n) * 64 + rng.integers(0, 64, n),
                     rng.integers(0, spec.org.capacity_bytes // 64, n))
    sizes = rng.choice([32, 64, 100, 256], n)
    addr = np.minimum(lines.astype(np.uint64) * 64, spec.org.capacity_bytes - 512)
    times = np.sort(rng.uniform(0, n * 3.0, n)) if rng.random() < 0.5 else None
    trace = AccessTrace(addr, sizes, is_write=rng.random(n) < rng.uniform(0.1, 0.6),
                        time_ns=times)
    cfg = dict(scheduler=str(rng.choice(["frfcfs", "frfcfs-ramulator"])),
               page_policy=str(rng.choice(["open", "closed"])),
               mapping=str(rng.choice(["MOP4CLXOR", "RoBaRaCoCh", "RoCoBaRaCh", "ChRaBaRoCo"])),
               read_queue=int(rng.integers(1, 48)), write_queue=int(rng.integers(2, 48)),
               max_outstanding=int(rng.choice([0, 1, 4, 64])))
    s = simulate(trace, spec, log_commands=True, **cfg)
    v = check_log(s.command_log, spec, end_cycle=s.cycles)
    assert v == [], f"seed {SEED + case} {preset} {cfg}: " + "; ".join(map(str, v[:5]))
    assert s.commands["RD"] + s.commands["WR"] == s.bursts


# -- presets: sources, the default HBM2 preset and the Ramulator 2.1 one --------------------

def test_every_preset_names_its_source():
    for name in list_presets():
        spec = load_preset(name)
        assert len(spec.source) > 80, name
        assert any(k in spec.source for k in ("Ramulator", "DRAMsim3", "JESD", "datasheet")), name


def test_default_hbm2_is_the_dramsim3_preset():
    a, b = load_preset("hbm2"), load_preset("hbm2-dramsim3")
    assert (a.org, a.timing, a.power) == (b.org, b.timing, b.power)
    assert (a.pseudo_channels, a.dual_command_bus) == (b.pseudo_channels, b.dual_command_bus)
    assert "DRAMsim3" in a.source and "default" in a.source


def test_hbm2_ramulator_preset_matches_ramulators_hbm2_2000mbps():
    """Ramulator 2.1 HBM2_2Gb + HBM2_2000Mbps (python/ramulator/dram/hbm2.py); latencies after
    the two-cycle ACT +1, before one -1, as Ramulator applies them."""
    s = load_preset("hbm2-ramulator")
    t, o = s.timing, s.org
    assert (o.ranks, o.bankgroups, o.banks_per_group, o.rows, o.bursts_per_row,
            o.burst_bytes) == (2, 4, 4, 1 << 14, 32, 32) and s.pseudo_channels
    assert (t.tCK_ps, t.nBL, t.nCL, t.nCWL, t.nRC, t.nWR, t.nRTP, t.nRTPL) == \
        (1000, 2, 14, 5, 48, 16, 5, 5)
    assert (t.nRCD, t.nRCDWR, t.nRAS, t.nRP) == (14 + 1, 12 + 1, 34 + 1, 14 - 1)
    assert (t.nCCDS, t.nCCDL, t.nRRDS, t.nRRDL, t.nWTRS, t.nWTRL) == (2, 4, 4, 4, 6, 8)
    assert (t.nFAW, t.nRFC, t.nREFI) == (15, 160, 3900)
    # one channel of two 32 B pseudo-channels peaks at 32 B per cycle
    assert s.with_overrides(channels=1).peak_bytes_per_cycle == 32
