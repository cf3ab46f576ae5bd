"""DDR5, LPDDR5 and HBM3 presets: organisation and peak as the standards define them, the
standard-specific rules (DDR5 same-bank refresh, two-cycle commands, tCCD_L_WR; HBM3 per-bank
refresh), the independent checker over random and adversarial traces long enough to refresh,
and sequential streams near peak. Small traces: the default test run."""

from __future__ import annotations

import numpy as np
import pytest

from psa.golden.trace import AccessTrace
from psa.sim import load_preset, simulate
from psa.sim.checker import check_log
from psa.sim.energy import CommandEnergies
from psa.sim.spec import CMDS, REFSB, PresetError, constraint_table, parse_preset

SEED = 20240611
NEW = ("ddr5-4800", "ddr5-4800-ab", "lpddr5-6400", "hbm3")


def _gap(spec, first, second, level):
    return max((c.latency for c in constraint_table(spec) if c.window == 1
                and not c.sibling and c.level == level and first in c.preceding
                and second in c.following), default=0)


# -- organisation, peak, sources ---------------------------------------------------------------

def test_ddr5_dimm_is_two_32_bit_subchannels_of_8_bank_groups():
    s = load_preset("ddr5-4800")
    o = s.org
    assert (o.channels, o.bus_width, o.burst_length) == (2, 32, 16)  # 2 x 32-bit, BL16
    assert (o.bankgroups, o.banks_per_group) == (8, 4)
    assert o.burst_bytes == 64 and o.row_bytes == 4096
    assert o.capacity_bytes == 16 << 30  # eight 16 Gb x8 devices
    assert s.peak_GBps == pytest.approx(2 * 4 * 4.8 / 0.9984, rel=1e-3)  # 4800 MT/s x 8 B
    assert s.refresh_mode == "same-bank" and s.refresh_sets == 4
    assert load_preset("ddr5-4800-ab").refresh_mode == "all-bank"


def test_lpddr5_bank_group_mode_bl16_wck_4_to_1():
    s = load_preset("lpddr5-6400")
    o, t = s.org, s.timing
    assert (o.bankgroups, o.banks_per_group, o.bus_width, o.burst_length) == (4, 4, 16, 16)
    # BL16 in nBL = 2 CK: 8 beats per CK = two beats per WCK at WCK:CK = 4:1
    assert o.burst_length // t.nBL == 8
    assert t.nCCDS == 2 and t.nCCDL == 4  # BL/n_min and BL/n_max
    assert s.peak_GBps / o.channels == pytest.approx(12.8)  # 6400 Mb/s x 16 bit


def test_hbm3_stack_is_16_channels_of_2_pseudo_channels():
    s = load_preset("hbm3")
    o = s.org
    assert (o.channels, o.ranks, o.bus_width, o.burst_length) == (16, 2, 32, 8)
    assert s.pseudo_channels and s.dual_command_bus and o.burst_bytes == 32
    assert s.peak_GBps == pytest.approx(819.2)  # 1024 bits x 6.4 Gb/s
    assert s.refresh_mode == "per-bank" and s.refresh_sets == 16


@pytest.mark.parametrize("name", NEW)
def test_every_new_preset_names_its_sources(name):
    s = load_preset(name)
    assert "JESD" in s.source and "Ramulator 2" in s.source and "Power:" in s.source


def test_bank_set_refresh_needs_its_timings():
    with open(load_preset("ddr5-4800").path) as f:
        text = f.read()
    with pytest.raises(PresetError, match="nRFCSB"):
        parse_preset(text.replace("nRFCSB = 313", "nRFCSB = 0"), "x.toml")
    with pytest.raises(PresetError, match="refresh_mode"):
        parse_preset(text.replace('refresh_mode = "same-bank"', 'refresh_mode = "rfm"'),
                     "x.toml")


# -- standard-specific rules (hand-derived from JESD79-5 / JESD238 for these presets) ----------

def test_ddr5_rule_table():
    s = load_preset("ddr5-4800")
    assert _gap(s, "WR", "WR", "bankgroup") == 48  # tCCD_L_WR max(32 nCK, 20 ns)
    assert _gap(s, "WR", "WR", "rank") == 8  # tCCD_S_WR
    assert _gap(s, "RD", "WR", "rank") == 34 + 8 + 2 - 32 + 2  # CL + BL/2 + 2 - CWL + tWPRE
    assert _gap(s, "PRE", "PRE", "rank") == 2  # tPPD
    for cmd in ("ACT", "RD", "WR"):  # two-cycle CA-bus commands
        assert _gap(s, cmd, "PRE", "channel") == 2
    assert _gap(s, "PRE", "ACT", "channel") == 0
    # same-bank refresh: tRFCsb 130 ns to the refreshed banks, tREFSBRD 30 ns to the others
    assert _gap(s, "REFSB", "ACT", "bank") == 313
    assert _gap(s, "REFSB", "ACT", "rank") == 73
    assert _gap(s, "ACT", "REFSB", "bank") == s.timing.nRC
    assert [s.refresh_set_banks(k) for k in range(2)] == [[0, 4, 8, 12, 16, 20, 24, 28],
                                                         [1, 5, 9, 13, 17, 21, 25, 29]]


def test_hbm3_per_bank_refresh_rules():
    s = load_preset("hbm3")
    assert _gap(s, "REFSB", "ACT", "bank") == 320  # tRFCpb
    assert _gap(s, "REFSB", "REFSB", "rank") == 13  # tRREFD
    assert _gap(s, "ACT", "REFSB", "channel") == 2  # the ACT holds the shared row bus
    assert s.refresh_set_banks(5) == [5]


def test_refsb_energy_is_a_share_of_the_refresh():
    s = load_preset("ddr5-4800")
    e = CommandEnergies.of(s)
    assert e.refsb == pytest.approx(e.ref / 4) and e.refsb > 0


# -- the checker on random and adversarial traces, refresh included -------------------------------

def _traces(spec, rng, n):
    o = spec.org
    cap = o.capacity_bytes // 64
    yield "random-rw", AccessTrace(rng.integers(0, cap, n).astype(np.uint64) * 64, 64,
                                   is_write=rng.random(n) < 0.4)
    yield "sequential-rw", AccessTrace(np.arange(n, dtype=np.uint64) * 64, 64,
                                       is_write=(np.arange(n) // 64) % 3 == 0)
    # adversarial: hammer bank 0 of every bank group (DDR5: the first same-bank refresh set,
    # HBM3: a set of per-bank refreshes), rows alternating: conflicts into the refresh
    # RoBaRaCoCh, LSB first: channel, column, rank, bank group, bank, row
    bg_stride = o.row_bytes * o.channels * o.ranks
    row_stride = bg_stride * o.bankgroups * o.banks_per_group
    rows = rng.integers(0, 8, n)
    groups = rng.integers(0, o.bankgroups, n)
    addr = rows * row_stride + groups * bg_stride
    yield "refresh-set-thrash", AccessTrace(addr.astype(np.uint64), 64,
                                            is_write=rng.random(n) < 0.5)


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("scheduler", ["frfcfs", "frfcfs-ramulator"])
def test_no_violation_over_several_refresh_intervals(name, scheduler):
    spec = load_preset(name)
    if spec.org.channels > 2:
        spec = spec.with_overrides(channels=2)
    rng = np.random.default_rng(SEED)
    for trace_name, trace in _traces(spec, rng, 12_000):
        mapping = "RoBaRaCoCh" if trace_name == "refresh-set-thrash" else "MOP4CLXOR"
        for page in ("open", "closed"):
            s = simulate(trace, spec, scheduler=scheduler, page_policy=page, mapping=mapping,
                         read_queue=16, write_queue=16, log_commands=True)
            v = check_log(s.command_log, spec, end_cycle=s.cycles)
            assert v == [], f"seed {SEED} {trace_name} {page}: " + "; ".join(map(str, v[:5]))
            assert s.commands["RD"] + s.commands["WR"] == s.bursts
            n_ref = s.commands["REFSB"] if spec.refresh_mode != "all-bank" else s.commands["REF"]
            due = spec.org.channels * spec.org.ranks * spec.refresh_sets * \
                (s.cycles // spec.timing.nREFI - 1)
            assert n_ref >= due > 0, (trace_name, n_ref, due)


@pytest.mark.parametrize("name", ["ddr5-4800", "hbm3"])
def test_bank_set_refresh_leaves_the_other_banks_working(name):
    """While a REFSB's banks recover (tRFCsb), column commands keep issuing to other banks of
    the same rank: the point of same-bank / per-bank refresh."""
    spec = load_preset(name).with_overrides(channels=1)
    rng = np.random.default_rng(SEED)
    n = 20_000
    s = simulate(AccessTrace(rng.integers(0, spec.org.capacity_bytes // 64, n).astype(np.uint64)
                             * 64, 64), spec, log_commands=True)
    log = s.command_log
    refsb = log[log[:, 1] == REFSB]
    col = log[(log[:, 1] == CMDS.index("RD")) | (log[:, 1] == CMDS.index("WR"))]
    assert len(refsb) > 5
    busy = 0
    for t, _, _, fr, _, _, _ in refsb:
        inside = col[(col[:, 0] > t) & (col[:, 0] < t + spec.timing.nRFCSB) & (col[:, 3] == fr)]
        busy += len(inside) > 0
    assert busy == len(refsb)


# -- streams near peak --------------------------------------------------------------------------

@pytest.mark.parametrize("name,floor", [("ddr5-4800", 0.90), ("ddr5-4800-ab", 0.88),
                                        ("lpddr5-6400", 0.85), ("hbm3", 0.80)])
def test_sequential_stream_fraction_of_peak(name, floor):
    """Sequential 64-byte reads, default controller (FR-FCFS, MOP4CLXOR, 32-entry queues,
    refresh on); floors a little under the measured fractions (docs/dram.md)."""
    spec = load_preset(name)
    n = 25_000 * spec.data_buses
    s = simulate(AccessTrace(np.arange(n, dtype=np.uint64) * 64, 64), spec)
    assert floor <= s.bandwidth_fraction <= 1.0, s.bandwidth_fraction


def test_hbm3_stack_streams_near_peak_when_bursts_spread_over_channels():
    """The 16 x 2 HBM3 stack with RoCoBaRaCh (every burst to the next channel, pseudo-channel
    and bank group): 93.6% of peak measured (docs/dram.md); the default MOP4CLXOR is 82%."""
    spec = load_preset("hbm3")
    n = 25_000 * spec.data_buses
    s = simulate(AccessTrace(np.arange(n, dtype=np.uint64) * 64, 64), spec, mapping="RoCoBaRaCh")
    assert s.bandwidth_fraction >= 0.92, s.bandwidth_fraction
