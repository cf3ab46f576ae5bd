"""Presets, address mapping, trace import (text and SpAtten CSV) and burst splitting."""

from __future__ import annotations

import numpy as np
import pytest

from psa.golden.trace import AccessTrace, TraceFormatError
from psa.sim import PresetError, constraint_table, list_presets, load_preset, read_spatten_csv
from psa.sim.addr_map import MAPPINGS, map_addresses
from psa.sim.frontend import SPATTEN_HEADER, load_workload, split_bursts
from psa.sim.spec import preset_path

HEADER = ",".join(SPATTEN_HEADER)


# -- presets -----------------------------------------------------------------------------------

def test_builtin_presets_load_and_have_sane_peaks():
    names = list_presets()
    assert {"ddr4-2400", "hbm2", "hbm2-legacy"} <= set(names)
    ddr4 = load_preset("ddr4-2400")
    assert abs(ddr4.peak_GBps - 19.2) < 0.1  # 2400 MT/s x 8 B
    assert ddr4.org.capacity_bytes == 8 << 30
    assert ddr4.org.banks == 16 and ddr4.org.bankgroups == 4
    for name in ("hbm2", "hbm2-legacy"):
        hbm = load_preset(name)
        assert abs(hbm.peak_GBps - 256.0) < 0.1  # 8 x 128 bit x 2 Gb/s
        assert hbm.org.banks == 16 and hbm.org.capacity_bytes == 4 << 30
    assert load_preset("hbm2").org.burst_bytes == 32
    assert load_preset("hbm2-legacy").org.burst_bytes == 64


def test_user_preset_from_toml(tmp_path):
    text = open(preset_path("ddr4-2400")).read().replace('name = "ddr4-2400"', 'name = "mine"')
    text = text.replace("nCL = 16", "nCL = 17")
    p = tmp_path / "mine.toml"
    p.write_text(text)
    spec = load_preset(str(p))
    assert spec.name == "mine" and spec.timing.nCL == 17


@pytest.mark.parametrize("edit,match", [
    (("nCL = 16", "nCL = -1"), "timing.nCL"),
    (("nCL = 16\n", ""), "missing key"),
    (("nRAS = 39", "nRAS = 39\nnBOGUS = 3"), "unknown key"),
    (("banks_per_group = 4", "banks_per_group = 3"), "power of two"),
    (("[timing]", "[timing"), "not valid TOML"),
    (('standard = "DDR4"', 'standard = "DDR9"'), "standard must be one of"),
])
def test_malformed_preset_names_file_and_key(tmp_path, edit, match):
    text = open(preset_path("ddr4-2400")).read().replace(*edit)
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(PresetError, match=match) as e:
        load_preset(str(p))
    assert str(p) in str(e.value)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(PresetError, match="known presets: .*ddr4-2400"):
        load_preset("ddr7")


# JESD79-4, DDR4-2400R (16-16-16), x8 devices (1 KB page), 8 Gb: a count of clocks, or
# (minimum in ns, minimum in clocks) for max(n nCK, t ns).
DDR4_2400_JEDEC = {
    "nCL": 16, "nCWL": 12, "nCCDS": 4,
    "nRCD": (13.32, 0), "nRP": (13.32, 0), "nRAS": (32.0, 0), "nRC": (45.32, 0),
    "nWR": (15.0, 0), "nRTP": (7.5, 4), "nCCDL": (5.0, 5), "nRRDS": (3.3, 4),
    "nRRDL": (4.9, 4), "nWTRS": (2.5, 2), "nWTRL": (7.5, 4), "nFAW": (21.0, 20),
    "nRFC": (350.0, 0),
}


def _clocks(t_ns: float, tck_ps: float, min_ck: int) -> int:
    """JESD79-4's rounding of a minimum time to clocks: round up with a 2.5 % guard band."""
    return max(min_ck, int(np.floor(t_ns * 1000 / tck_ps + 0.974)))


def test_ddr4_2400_timing_is_jedec():
    """Every DDR4-2400 value of the preset from the JEDEC table at 2400 MT/s (1200 MHz)."""
    t = load_preset("ddr4-2400").timing
    tck = 1e6 / 1200  # ps
    assert t.tCK_ps == round(tck)
    for name, value in DDR4_2400_JEDEC.items():
        want = value if isinstance(value, int) else _clocks(value[0], tck, value[1])
        assert getattr(t, name) == want, name
    assert t.nBL == 8 // 2  # BL8, two beats a clock
    assert abs(t.nREFI * tck / 1e3 - 7800) < 0.001 * 7800  # tREFI 7.8 us (< 85 C)


@pytest.mark.parametrize("preset", ["ddr4-2400", "hbm2", "hbm2-legacy"])
def test_timing_relations(preset):
    """Relations any JEDEC part satisfies: tRC = tRAS + tRP; a burst of BL beats holds the
    data bus BL/2 clocks and back-to-back column commands to other bank groups keep it busy
    (tCCD_S = BL/2, what peak bandwidth assumes); the same-bank-group (_L) timings are at
    least the other-group (_S) ones; a row opens before it may close (tRCD <= tRAS)."""
    spec = load_preset(preset)
    t = spec.timing
    assert t.nRC == t.nRAS + t.nRP
    assert t.nBL == spec.org.burst_length // 2 == t.nCCDS
    assert t.nCCDS <= t.nCCDL and t.nRRDS <= t.nRRDL and t.nWTRS <= t.nWTRL
    assert max(t.nRCD, t.nRCDWR) <= t.nRAS


_LEVELS = {"bank": ("bank", "bankgroup", "rank", "channel"),
           "bankgroup": ("bankgroup", "rank", "channel"), "rank": ("rank", "channel"),
           "other rank": ("channel",)}


def _gap(table, first: str, second: str, where: str) -> int:
    """Cycles from ``first`` to ``second`` the table demands, the two commands being in the
    same bank, the same bank group (another bank), the same rank (another bank group) or in
    another rank of the channel; per the table's contract (:mod:`psa.sim.spec`) a rule
    applies where both commands fall in one unit of its level, a sibling rule between ranks."""
    gaps = [c.latency for c in table
            if c.window == 1 and first in c.preceding and second in c.following
            and (c.level in _LEVELS[where] if not c.sibling
                 else c.level == "rank" and where == "other rank")]
    return max(gaps, default=0)


# Worked out from JESD79-4 for DDR4-2400R (RL = CL = 16, WL = CWL = 12, BL/2 = 4, the values
# above) and a rank-to-rank switch (tRTRS) of 2 clocks:
#   RD -> WR    RL + BL/2 - WL + 2 (preamble, turnaround)       = 10
#   WR -> RD    WL + BL/2 + tWTR_L (9) / tWTR_S (3)              = 25 / 19
#   WR -> PRE   WL + BL/2 + tWR (18)                              = 34
#   other rank: RD -> RD BL/2 + tRTRS = 6, RD -> WR RL + BL/2 + tRTRS - WL = 10,
#               WR -> RD WL + BL/2 + tRTRS - RL = 2; no bank rule crosses ranks
DDR4_2400_GAPS = {
    "bank": {("ACT", "RD"): 16, ("ACT", "WR"): 16, ("ACT", "PRE"): 39, ("PRE", "ACT"): 16,
             ("ACT", "ACT"): 55, ("RD", "PRE"): 9, ("WR", "PRE"): 34, ("RD", "RD"): 6,
             ("WR", "WR"): 6, ("WR", "RD"): 25, ("RD", "WR"): 10},
    "bankgroup": {("ACT", "ACT"): 6, ("RD", "RD"): 6, ("WR", "WR"): 6, ("WR", "RD"): 25,
                  ("RD", "WR"): 10, ("ACT", "RD"): 0, ("RD", "PRE"): 0, ("PRE", "ACT"): 0},
    "rank": {("ACT", "ACT"): 4, ("RD", "RD"): 4, ("WR", "WR"): 4, ("WR", "RD"): 19,
             ("RD", "WR"): 10, ("ACT", "PREA"): 39, ("RD", "PREA"): 9, ("WR", "PREA"): 34,
             ("PREA", "ACT"): 16, ("REF", "ACT"): 420, ("REF", "REF"): 420,
             ("ACT", "REF"): 55, ("PRE", "REF"): 16, ("PREA", "REF"): 16},
    "other rank": {("RD", "RD"): 6, ("WR", "WR"): 6, ("RD", "WR"): 10, ("WR", "RD"): 2,
                   ("ACT", "ACT"): 0, ("REF", "ACT"): 0, ("ACT", "RD"): 0},
}

# HBM2 pseudo-channel mode (tCK 1 ns: clocks = ns): the two pseudo-channels of a channel
# ("ranks") have their own 64-bit data buses, so column commands do not wait for each other;
# they share the row-command bus, where an ACT takes 2 clocks (JESD235).
HBM2_GAPS = {
    "bank": {("ACT", "RD"): 14, ("ACT", "ACT"): 48, ("ACT", "PRE"): 34, ("PRE", "ACT"): 14},
    "bankgroup": {("ACT", "ACT"): 6, ("RD", "RD"): 4, ("WR", "WR"): 4},
    "rank": {("ACT", "ACT"): 4, ("RD", "RD"): 2, ("WR", "WR"): 2, ("REF", "ACT"): 260},
    "other rank": {("RD", "RD"): 0, ("WR", "WR"): 0, ("RD", "WR"): 0, ("WR", "RD"): 0,
                   ("ACT", "ACT"): 2, ("ACT", "PRE"): 2, ("PRE", "ACT"): 0},
}


@pytest.mark.parametrize("preset,gaps", [("ddr4-2400", DDR4_2400_GAPS), ("hbm2", HBM2_GAPS)])
def test_constraint_table_gives_hand_derived_gaps(preset, gaps):
    spec = load_preset(preset).with_overrides(ranks=2)
    table = constraint_table(spec)
    for where, pairs in gaps.items():
        for (first, second), want in pairs.items():
            assert _gap(table, first, second, where) == want, (preset, where, first, second)
    faw = [c for c in table if c.window > 1]
    assert [(c.level, c.preceding, c.window, c.latency) for c in faw] == \
        [("rank", ("ACT",), 4, 26 if preset == "ddr4-2400" else 30)]


# -- address mapping ---------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["ddr4-2400", "hbm2"])
@pytest.mark.parametrize("mapping", MAPPINGS)
def test_mappings_are_bijective(preset, mapping):
    spec = load_preset(preset).with_overrides(channels=2, ranks=2)
    o = spec.org
    n_bursts = o.capacity_bytes // o.burst_bytes
    rng = np.random.default_rng(5)
    bursts = np.unique(np.concatenate([np.arange(4096), rng.integers(0, n_bursts, 20000)]))
    m = map_addresses(bursts.astype(np.uint64) * o.burst_bytes, spec, mapping)
    for arr, n in ((m.channel, o.channels), (m.rank, o.ranks), (m.bankgroup, o.bankgroups),
                   (m.bank, o.banks_per_group), (m.row, o.rows), (m.column, o.bursts_per_row)):
        assert arr.min() >= 0 and arr.max() < n
    key = ((((m.channel * o.ranks + m.rank) * o.bankgroups + m.bankgroup) * o.banks_per_group
            + m.bank) * o.rows + m.row) * o.bursts_per_row + m.column
    assert len(np.unique(key)) == len(bursts)


def test_robaracoch_matches_ramulator_order():
    spec = load_preset("ddr4-2400")
    m = map_addresses(np.array([0, 64, 127 * 64, 128 * 64, 4 * 128 * 64], np.uint64), spec,
                      "RoBaRaCoCh")
    assert list(m.column) == [0, 1, 127, 0, 0]
    assert list(m.bankgroup) == [0, 0, 0, 1, 0]
    assert list(m.bank) == [0, 0, 0, 0, 1]


def test_default_mapping_interleaves_bank_groups():
    spec = load_preset("ddr4-2400")
    m = map_addresses(np.arange(16, dtype=np.uint64) * 64, spec)
    assert len(set(m.bankgroup[::4])) == 4  # groups of 4 bursts rotate over bank groups


# -- traces and bursts -------------------------------------------------------------------------

def test_split_bursts_aligns_and_times():
    tr = AccessTrace([0, 60, 128], [64, 8, 200], time_ns=[0.0, 1.0, 2.5])
    b = split_bursts(tr, 64, 1000)
    assert list(b.addr) == [0, 0, 64, 128, 192, 256, 320]
    assert list(b.request) == [0, 1, 1, 2, 2, 2, 2]
    assert list(b.time_cycles) == [0, 1, 1, 3, 3, 3, 3]


def test_text_trace_with_ld_st_lines(tmp_path):
    p = tmp_path / "t.trace"
    p.write_text("LD 0x40\nST 0x80\n# comment\nLD 0x1000\n")
    wl = load_workload(p)
    assert len(wl.trace) == 3 and wl.payload_bytes == 192
    assert list(wl.trace.is_write) == [False, True, False]


def test_malformed_trace_names_file_and_line(tmp_path):
    p = tmp_path / "bad.trace"
    p.write_text("R 0x0 64\nR 0xZZ 64\n")
    with pytest.raises(TraceFormatError, match=r"bad.trace:2: expected an address"):
        load_workload(p)


def _csv(tmp_path, rows, tail="configs/gpt2.yaml"):
    p = tmp_path / "wl.csv"
    p.write_text(HEADER + "\n" + "\n".join(rows) + ("\n" + tail if tail else "") + "\n")
    return p


def test_spatten_csv_payload_and_layout(tmp_path):
    # it, layer, head, D, L, kfetch, kbit, qbit, thres, requant, incre, vfetch, vbit, ...
    rows = ["0,0,0,64,10,10,-1,12,0.1,0,4,3,8,1,0,1,3",
            "0,1,1,64,10,4,6,12,0.1,0,4,2,-1,1,0,1,3"]
    wl = read_spatten_csv(_csv(tmp_path, rows), full_bits=32)
    expect = (10 * 64 * 32 + 3 * 64 * 8 + 4 * 64 * 6 + 2 * 64 * 32) / 8
    assert wl.payload_bytes == expect
    tr = wl.trace
    assert len(tr) == 10 + 3 + 4 + 2
    pitch = 64 * 32 // 8
    # row 0: keys 0..9 of (layer 0, head 0) contiguous at full precision
    assert list(tr.addr[:10]) == [i * pitch for i in range(10)]
    assert set(tr.size[:10]) == {pitch}
    # row 1 keys: layer 1, head 1 -> row block (1*2 + 1) * 10 tokens, 6-bit: 48 bytes each
    assert tr.addr[13] == (1 * 2 + 1) * 10 * pitch and tr.size[13] == 48
    # values live after all keys
    assert tr.addr[10] >= 2 * 2 * 10 * pitch


def test_spatten_csv_scattered_is_a_subset(tmp_path):
    rows = ["0,0,0,64,100,20,8,12,0.1,0,4,0,8,1,0,1,3"]
    wl = read_spatten_csv(_csv(tmp_path, rows), placement="scattered", seed=3)
    tok = wl.trace.addr // 256
    assert len(set(tok.tolist())) == 20 and tok.max() < 100 and np.all(np.diff(tok) > 0)


@pytest.mark.parametrize("rows,match", [
    (["0,0,0,64,10,10,-1"], "expected 17 comma-separated fields"),
    (["0,0,0,64,10,11,-1,12,0.1,0,4,3,8,1,0,1,3"], "key_fetch_num must be in"),
    (["0,0,0,64,10,1,40,12,0.1,0,4,3,8,1,0,1,3"], "quant_key_bit must be"),
    (["0,0,0,x,10,1,8,12,0.1,0,4,3,8,1,0,1,3"], "expected numeric fields"),
])
def test_spatten_csv_errors_name_line(tmp_path, rows, match):
    with pytest.raises(TraceFormatError, match=f"wl.csv:2: {match}"):
        read_spatten_csv(_csv(tmp_path, rows, tail=None))


def test_spatten_csv_needs_header(tmp_path):
    p = tmp_path / "wl.csv"
    p.write_text("a,b,c\n")
    with pytest.raises(TraceFormatError, match="wl.csv:1: expected the SpAtten header"):
        read_spatten_csv(p)


def test_split_bursts_refuses_huge_expansion_before_allocating():
    from psa.sim.frontend import MAX_BURSTS

    # one line inside the format's size limit (2^32-1 bytes) is 2^26 bursts of 64 B
    tr = AccessTrace(np.array([0, 0x1000], np.uint64), np.array([64, 2**32 - 1], np.uint32))
    with pytest.raises(ValueError, match=r"expands to 67,108,865 bursts of 64 B; .* at most "
                                         r"8,388,608 bursts .* request, number 2"):
        split_bursts(tr, 64, 833)
    at_limit = AccessTrace(np.array([0], np.uint64), np.array([MAX_BURSTS * 64], np.uint32))
    assert len(split_bursts(at_limit, 64, 833).addr) == MAX_BURSTS


@pytest.mark.parametrize("max_rows", [0, -1])
def test_spatten_csv_refuses_nonpositive_max_rows(tmp_path, max_rows):
    path = _csv(tmp_path, ["0,0,0,64,10,10,-1,12,0.1,0,4,3,8,1,0,1,3"])
    with pytest.raises(ValueError, match=f"max_rows must be >= 1.*got {max_rows}"):
        read_spatten_csv(path, max_rows=max_rows)
