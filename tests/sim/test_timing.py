"""Every timing constraint at n-1 cycles (blocked) and n (allowed), in the controller's rule
machinery and in the independent checker."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from psa.sim import load_preset
from psa.sim.checker import check_log
from psa.sim.controller import _apply_timing
from psa.sim.memory_system import compile_rules
from psa.sim.scheduler import ready_at
from psa.sim.spec import ACT, CMDS, PRE, PREA, RD, REF, WR
from psa.sim.state import COL_BUS, R_ACT_PTR, R_HIST, ROW_BUS, ControllerState, Layout

DDR4 = load_preset("ddr4-2400").with_overrides(ranks=2)
HBM2 = load_preset("hbm2")


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

    def issue(self, cmd, t, loc=(0, 0, 0), row=1):
        fr, fg, fb = self._ids(loc)
        if cmd in (PREA, REF):
            fg = fb = -1
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
        fr, fg, fb = self._ids(loc)
        if cmd in (PREA, REF):
            fg = fb = -1
        L = self.layout
        return int(ready_at(cmd, 0, fr, fg, fb, self.st.nxt, self.st.rank, L.off_rank,
                            L.off_bg, L.off_bank, self.nfaw, self.spec.dual_command_bus))

    def log_with(self, cmd, t, loc=(0, 0, 0), row=1):
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
        Case("tCCD_L", act_all + [(WR, T0, SAME)], (WR, BANK2), t.nCCDL),
        Case("tCCD_S", act_all + [(WR, T0, SAME)], (WR, BG2), max(t.nCCDS, t.nBL)),
        Case("tWTR_L", act_all + [(WR, T0, SAME)], (RD, BANK2), t.nCWL + t.nBL + t.nWTRL),
        Case("tWTR_S", act_all + [(WR, T0, SAME)], (RD, BG2), t.nCWL + t.nBL + t.nWTRS),
        Case("tRTW", act_all + [(RD, T0, SAME)], (WR, BG2), t.nCL + t.nBL + 2 - t.nCWL),
        Case("tWR", act_all + [(WR, T0, SAME)], (PRE, SAME), t.nCWL + t.nBL + t.nWR),
        Case("tRTP", act_all + [(RD, T0, SAME)], (PRE, SAME), t.nRTPL),
        Case("tRFC", [(REF, T0, SAME)], (ACT, SAME), t.nRFC),
        Case("tRFC", [(REF, T0, SAME)], (REF, SAME), t.nRFC),
        Case("tRP", [(ACT, 0, SAME), (PREA, T0, SAME)], (REF, SAME), t.nRP),
        Case("tRC", [(ACT, T0, SAME), (PREA, T0 + t.nRAS, SAME)], (REF, SAME),
             t.nRC - t.nRAS),
    ]
    if spec.org.ranks > 1 and not spec.pseudo_channels:
        cases += [
            Case("data bus", act_all + [(RD, T0, SAME)], (RD, RANK2), t.nBL + t.nCS),
            Case("data bus", act_all + [(WR, T0, SAME)], (RD, RANK2),
                 t.nCWL + t.nBL + t.nCS - t.nCL),
        ]
    if spec.standard == "HBM2":
        cases.append(Case("ACT row-bus occupancy", [(ACT, T0, SAME)], (PRE, (1, 1, 1)), 2))
    return cases


def _params():
    out = []
    for spec in (DDR4, HBM2):
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


def test_checker_flags_missing_refresh():
    spec = DDR4
    log = np.zeros((0, 7), np.int64)
    v = check_log(log, spec, end_cycle=20 * spec.timing.nREFI, refresh=True)
    assert "tREFI" in {x.rule for x in v}
