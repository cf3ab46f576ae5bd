"""Every timing constraint at n-1 cycles (blocked) and n (allowed), in the controller's rule
machinery and in the independent checker, for every standard (DDR4, DDR5 with same-bank
refresh, LPDDR5, HBM2, HBM3 with per-bank refresh)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from psa.sim import load_preset
from psa.sim.checker import check_log
from psa.sim.controller import _apply_timing
from psa.sim.memory_system import compile_rules
from psa.sim.scheduler import ready_at
from psa.sim.spec import ACT, CMDS, PRE, PREA, RD, REF, REFSB, WR
from psa.sim.state import COL_BUS, R_ACT_PTR, R_HIST, ROW_BUS, ControllerState, Layout

DDR4 = load_preset("ddr4-2400").with_overrides(ranks=2)
HBM2 = load_preset("hbm2")
DDR5 = load_preset("ddr5-4800").with_overrides(ranks=2)
LPDDR5 = load_preset("lpddr5-6400")
HBM3 = load_preset("hbm3")


class TimingProbe:
    """Issue commands at chosen cycles through the controller's rule table; ask when another
    command may issue. Locations are ``(rank, bankgroup, bank)`` in channel 0."""

    def __init__(self, spec):
        self.spec = spec
        self.layout = Layout.of(spec)
        ptr, self.rules, self.nfaw = compile_rules(spec)
        from psa.sim import controller as ctl
        self.cfg = np.zeros(ctl.N_K, np.int64)
        self.cfg[ctl.K_NRK] = spec.org.ranks
        self.cfg[ctl.K_OFF_RK] = self.layout.off_rank
        self.cfg[ctl.K_OFF_BG] = self.layout.off_bg
        self.cfg[ctl.K_OFF_BK] = self.layout.off_bank
        self.cfg[ctl.K_PTR:ctl.K_PTR + len(ptr)] = ptr
        self.st = ControllerState.new(self.layout, 4, 4, 1, spec.timing.nREFI, False)
        self.log = []

    def _ids(self, loc):
        r, g, b = loc
        o = self.spec.org
        return r, r * o.bankgroups + g, r * o.banks + g * o.banks_per_group + b

    def _set(self, loc):
        """(rank, bankgroup, bank) of every bank in the refresh bank set of ``loc``."""
        r, g, b = loc
        o = self.spec.org
        s = b if self.spec.refresh_mode == "same-bank" else g * o.banks_per_group + b
        return [(r, k // o.banks_per_group, k % o.banks_per_group)
                for k in self.spec.refresh_set_banks(s)]

    def issue(self, cmd, t, loc=(0, 0, 0), row=1):
        fr, fg, fb = self._ids(loc)
        if cmd in (PREA, REF):
            fg = fb = -1
        if cmd == REFSB:  # the bank rules apply to every bank of the set
            for m in self._set(loc):
                _, mg, mb = self._ids(m)
                _apply_timing(t, cmd, 0, fr, mg, mb, self.cfg, self.rules, self.st.nxt)
            fr, fg, fb = self._ids(self._set(loc)[0])
        _apply_timing(t, cmd, 0, fr, fg, fb, self.cfg, self.rules, self.st.nxt)
        if cmd == ACT:
            rk = self.st.rank
            rk[fr, R_HIST + rk[fr, R_ACT_PTR]] = t
            rk[fr, R_ACT_PTR] = (rk[fr, R_ACT_PTR] + 1) % 4
        if self.spec.dual_command_bus:
            self.st.nxt[0, COL_BUS if cmd in (RD, WR) else ROW_BUS] = t + 1
        else:
            self.st.nxt[0, ROW_BUS] = self.st.nxt[0, COL_BUS] = t + 1
        self.log.append((t, cmd, 0, fr, fb, row if cmd in (ACT, RD, WR) else -1, -1))

    def earliest(self, cmd, loc=(0, 0, 0)):
        if cmd == REFSB:
            return max(self._earliest(cmd, m) for m in self._set(loc))
        return self._earliest(cmd, loc)

    def _earliest(self, cmd, loc):
        fr, fg, fb = self._ids(loc)
        if cmd in (PREA, REF):
            fg = fb = -1
        L = self.layout
        return int(ready_at(cmd, 0, fr, fg, fb, self.st.nxt, self.st.rank, L.off_rank,
                            L.off_bg, L.off_bank, self.nfaw, self.spec.dual_command_bus))

    def log_with(self, cmd, t, loc=(0, 0, 0), row=1):
        if cmd == REFSB:
            loc = self._set(loc)[0]
        fr, fg, fb = self._ids(loc)
        if cmd in (PREA, REF):
            fb = -1
        return np.array(self.log + [(t, cmd, 0, fr, fb, row if cmd in (ACT, RD, WR) else -1,
                                     -1)], np.int64)


@dataclass
class Case:
    name: str  # rule name the checker reports
    setup: list  # (cmd, cycle, loc) issued first
    second: tuple  # (cmd, loc) whose earliest cycle is checked
    n: object  # latency after the last setup command, f(timing) -> cycles


SAME, BANK2, BG2, RANK2 = (0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)
T0 = 1000


def _cases(spec):
    t = spec.timing
    act_all = [(ACT, 0, SAME), (ACT, 100, BANK2), (ACT, 200, BG2)]
    if spec.org.ranks > 1 and not spec.pseudo_channels:
        act_all.append((ACT, 300, RANK2))
    cases = [
        Case("tRCD", [(ACT, T0, SAME)], (RD, SAME), t.nRCD),
        Case("tRCD", [(ACT, T0, SAME)], (WR, SAME), t.nRCDWR),
        Case("tRAS", [(ACT, T0, SAME)], (PRE, SAME), t.nRAS),
        Case("tRP", [(ACT, 0, SAME), (PRE, T0, SAME)], (ACT, SAME), t.nRP),
        Case("tRC", [(ACT, T0, SAME), (PRE, T0 + t.nRAS, SAME)], (ACT, SAME),
             t.nRC - t.nRAS),
        Case("tRRD_L", [(ACT, T0, SAME)], (ACT, BANK2), t.nRRDL),
        Case("tRRD_S", [(ACT, T0, SAME)], (ACT, BG2), t.nRRDS),
        Case("tFAW", [(ACT, T0 + i * t.nRRDS, (0, i, 0)) for i in range(4)],
             (ACT, (0, 0, 3)), t.nFAW - 3 * t.nRRDS),
        Case("tCCD_L", act_all + [(RD, T0, SAME)], (RD, BANK2), t.nCCDL),
        Case("tCCD_S", act_all + [(RD, T0, SAME)], (RD, BG2), max(t.nCCDS, t.nBL)),
        Case("tCCD_L", act_all + [(WR, T0, SAME)], (WR, BANK2), t.nCCDLWR),
        Case("tCCD_S", act_all + [(WR, T0, SAME)], (WR, BG2), max(t.nCCDSWR, t.nBL)),
        Case("tWTR_L", act_all + [(WR, T0, SAME)], (RD, BANK2), t.nCWL + t.nBL + t.nWTRL),
        Case("tWTR_S", act_all + [(WR, T0, SAME)], (RD, BG2), t.nCWL + t.nBL + t.nWTRS),
        Case("tRTW", act_all + [(RD, T0, SAME)], (WR, BG2), t.nRTW),
        Case("tWR", act_all + [(WR, T0, SAME)], (PRE, SAME), t.nCWL + t.nBL + t.nWR),
        Case("tRTP", act_all + [(RD, T0, SAME)], (PRE, SAME), t.nRTPL),
        Case("tRFC", [(REF, T0, SAME)], (ACT, SAME), t.nRFC),
        Case("tRFC", [(REF, T0, SAME)], (REF, SAME), t.nRFC),
        Case("tRP", [(ACT, 0, SAME), (PREA, T0, SAME)], (REF, SAME), t.nRPAB),
        Case("tRP", [(ACT, 0, SAME), (PREA, T0, SAME)], (ACT, SAME), t.nRPAB),
        # ACT..REF spans tRC, or tRAS + tRPab where the all-bank precharge is slower (LPDDR5)
        Case("tRC" if t.nRC - t.nRAS >= t.nRPAB else "tRP",
             [(ACT, T0, SAME), (PREA, T0 + t.nRAS, SAME)], (REF, SAME),
             max(t.nRC - t.nRAS, t.nRPAB)),
    ]
    if spec.org.ranks > 1 and not spec.pseudo_channels:
        cases += [
            Case("data bus", act_all + [(RD, T0, SAME)], (RD, RANK2), t.nBL + t.nCS),
            Case("data bus", act_all + [(WR, T0, SAME)], (RD, RANK2),
                 t.nCWL + t.nBL + t.nCS - t.nCL),
        ]
    if spec.standard in ("HBM2", "HBM3"):
        cases.append(Case("ACT row-bus occupancy", [(ACT, T0, SAME)], (PRE, (1, 1, 1)), 2))
    if spec.standard in ("DDR5", "LPDDR5"):  # ACT takes two CA-bus cycles
        cases.append(Case("CA bus occupancy", [(ACT, T0, SAME)], (PRE, BG2), 2))
    if spec.standard == "DDR5":  # so do RD and WR
        cases += [Case("CA bus occupancy", act_all + [(RD, T0, SAME)], (ACT, (0, 2, 0)), 2),
                  Case("CA bus occupancy", act_all + [(WR, T0, SAME)], (PRE, (0, 2, 0)), 2)]
    if t.nPPD > 0:
        cases.append(Case("tPPD", [(ACT, 0, SAME), (ACT, 100, BG2), (PRE, T0, SAME)],
                          (PRE, BG2), t.nPPD))
    if spec.refresh_mode != "all-bank":
        cases += _bank_set_refresh_cases(spec)
    return cases


def _bank_set_refresh_cases(spec):
    """REFSB: same-bank (DDR5: bank b of every bank group) or per-bank (HBM3) refresh."""
    t = spec.timing
    # a bank of SAME's set other than SAME, and a bank outside it
    member = (0, 1, 0) if spec.refresh_mode == "same-bank" else SAME
    other = BANK2
    cases = [
        Case("tRFCsb", [(REFSB, T0, SAME)], (ACT, member), t.nRFCSB),
        Case("tREFSBRD", [(REFSB, T0, SAME)], (ACT, other), t.nREFSBRD),
        Case("tREFSBRD", [(REFSB, T0, SAME)], (REFSB, other), t.nREFSBRD),
        Case("tRC", [(ACT, T0, member), (PRE, T0 + t.nRAS, member)], (REFSB, SAME),
             t.nRC - t.nRAS),
        Case("tRP", [(ACT, 0, member), (PRE, T0, member)], (REFSB, SAME), t.nRP),
        Case("tRRD_S", [(ACT, T0, other)], (REFSB, SAME), t.nRRDS),
        Case("tRFC", [(REF, T0, SAME)], (REFSB, SAME), t.nRFC),
        Case("tRFCsb", [(REFSB, T0, SAME)], (REF, SAME), t.nRFCSB),
    ]
    if spec.dual_command_bus:
        cases.append(Case("ACT row-bus occupancy", [(ACT, T0, SAME)], (REFSB, (1, 1, 1)), 2))
    return cases


def _params():
    out = []
    for spec in (DDR4, HBM2, DDR5, LPDDR5, HBM3):
        for i, c in enumerate(_cases(spec)):
            second = f"{CMDS[c.second[0]]}"
            out.append(pytest.param(spec, c, id=f"{spec.name}-{i}-{c.name}-{second}"))
    return out


def _probe(spec, case):
    p = TimingProbe(spec)
    for cmd, t, loc in case.setup:
        p.issue(cmd, t, loc)
    return p


@pytest.mark.parametrize("spec,case", _params())
def test_rule_blocks_at_n_minus_1_and_allows_at_n(spec, case):
    p = _probe(spec, case)
    last = case.setup[-1][1]
    cmd, loc = case.second
    assert p.earliest(cmd, loc) == last + case.n, (
        f"{case.name}: {CMDS[cmd]} may issue at {p.earliest(cmd, loc) - last} cycles, "
        f"expected {case.n}")


@pytest.mark.parametrize("spec,case", _params())
def test_checker_flags_n_minus_1_and_accepts_n(spec, case):
    p = _probe(spec, case)
    last = case.setup[-1][1]
    cmd, loc = case.second
    ok = check_log(p.log_with(cmd, last + case.n, loc), spec, refresh=False)
    assert ok == [], [str(v) for v in ok]
    early = check_log(p.log_with(cmd, last + case.n - 1, loc), spec, refresh=False)
    assert case.name in {v.rule for v in early}, [str(v) for v in early]


def test_checker_flags_state_errors():
    spec = DDR4
    log = np.array([(0, RD, 0, 0, 0, 5, -1)], np.int64)  # RD to a closed bank
    assert {v.rule for v in check_log(log, spec, refresh=False)} == {"state"}
    log = np.array([(0, ACT, 0, 0, 0, 5, -1), (100, ACT, 0, 0, 0, 6, -1)], np.int64)
    assert "state" in {v.rule for v in check_log(log, spec, refresh=False)}
    log = np.array([(0, ACT, 0, 0, 0, 5, -1), (100, REF, 0, 0, -1, -1, -1)], np.int64)
    assert "state" in {v.rule for v in check_log(log, spec, refresh=False)}
    log = np.array([(0, ACT, 0, 0, 0, 5, -1), (0, ACT, 0, 0, 4, 5, -1)], np.int64)
    assert "command bus" in {v.rule for v in check_log(log, spec, refresh=False)}


@pytest.mark.parametrize("spec", [DDR4, DDR5, HBM3], ids=lambda s: s.name)
def test_checker_flags_missing_refresh(spec):
    log = np.zeros((0, 7), np.int64)
    v = check_log(log, spec, end_cycle=20 * spec.timing.nREFI, refresh=True)
    assert "tREFI" in {x.rule for x in v}


def _refsb_log(spec, sets, gap):
    """REFSBs of rank 0 to bank sets ``sets`` (first bank of each), ``gap`` cycles apart."""
    first = [spec.refresh_set_banks(s)[0] for s in sets]
    return np.array([((k + 1) * gap, REFSB, 0, 0, b, -1, -1) for k, b in enumerate(first)],
                    np.int64).reshape(-1, 7)


@pytest.mark.parametrize("spec", [DDR5, HBM3], ids=lambda s: s.name)
def test_checker_bank_set_refresh_order_and_rate(spec):
    spec = spec.with_overrides(channels=1, ranks=1)
    t, n = spec.timing, spec.refresh_sets
    gap = t.nREFI // n
    # every set in turn, for 12 nREFI: legal; the same set twice in a round: flagged
    rounds = [s for _ in range(12) for s in range(n)]
    end = (len(rounds) + 1) * gap
    assert check_log(_refsb_log(spec, rounds, gap), spec, end_cycle=end) == []
    v = check_log(_refsb_log(spec, [0, 0] + list(range(1, n)), gap), spec, refresh=False)
    assert "REFSB order" in {x.rule for x in v}
    # set 1 never refreshed: its banks go more than 9 nREFI without refresh
    skipped = [s for _ in range(12) for s in range(n) if s != 1]
    v = check_log(_refsb_log(spec, skipped, gap), spec, end_cycle=end, max_violations=10**4)
    assert "tREFI" in {x.rule for x in v}
    # a REFSB with a bank of its set open is a state error
    log = np.array([(0, ACT, 0, 0, spec.refresh_set_banks(0)[-1], 3, -1),
                    (500, REFSB, 0, 0, spec.refresh_set_banks(0)[0], -1, -1)], np.int64)
    assert "state" in {x.rule for x in check_log(log, spec, refresh=False)}
