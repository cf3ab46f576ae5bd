"""Independent timing checker: replays an issued command log against JEDEC rules.

Modelled on LiteDRAM's ``DFITimingsChecker``: it knows nothing of the controller or of
``spec.constraint_table``. Each rule below is written from its JEDEC definition in terms of
the history of one bank, bank group, rank or data bus, and every command of the log is
checked against all of them, together with the legality of the bank state (no ACT to an open
bank, no column command to a closed bank or another row, no REF or REFSB with a bank it
refreshes open), command-bus occupancy (one command per cycle; on HBM one row and one column
command; multi-cycle commands: an HBM ACT holds the row bus two cycles, DDR5 ACT/RD/WR and the
LPDDR5 ACT-1/ACT-2 pair hold the CA bus two cycles), data-bus overlap (with ``nCS`` between
ranks sharing a bus) and the refresh rate (at most 8 postponed refreshes, JESD79-4 4.8; with
bank-set refresh every bank refreshed at least once per 9 ``nREFI`` and no bank set refreshed
twice before every set of its rank was, JESD79-5 same-bank refresh).

Bank-set refresh ``REFSB`` (DDR5 ``REFsb``: bank ``b`` of every bank group; HBM3 ``REFpb``:
one bank) is logged with its first bank; its rules: the set precharged, ``tRP`` after a PRE of
each of its banks, ``tRC`` after their ACT, ``tRFCsb`` before the same banks ACT or refresh
again, ``tREFSBRD`` before any ACT or REFSB of the rank, ``tRRD_S`` after any ACT of the rank,
``tRFC`` after a REF and ``tRFCsb`` before one.

Use :func:`check_log` on ``Stats.command_log`` (``simulate(..., log_commands=True)``).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np

from .spec import DramSpec

ACT, PRE, PREA, RD, WR, REF, REFSB = "ACT", "PRE", "PREA", "RD", "WR", "REF", "REFSB"
_NAMES = (ACT, PRE, PREA, RD, WR, REF, REFSB)
# Cycles a command holds its command bus, from the standards (not from spec.py's tables).
_BUS_CYCLES = {"DDR5": {ACT: 2, RD: 2, WR: 2}, "LPDDR5": {ACT: 2}, "HBM2": {ACT: 2},
               "HBM3": {ACT: 2}}
NEVER = -(10**12)


@dataclass(frozen=True)
class Violation:
    index: int  # position in the log
    cycle: int
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"#{self.index} @{self.cycle}: {self.rule}: {self.detail}"


def check_log(log: np.ndarray, spec: DramSpec, *, end_cycle: int | None = None,
              refresh: bool = True, max_violations: int = 50) -> list[Violation]:
    """Return the violations in ``log`` (rows ``t, cmd, ch, rank, bank, row, req``, ranks
    and banks as flat indices); an empty list means every rule held."""
    o, t = spec.org, spec.timing
    out: list[Violation] = []
    banks_per_rank = o.banks

    def bad(i: int, cyc: int, rule: str, detail: str) -> None:
        if len(out) < max_violations:
            out.append(Violation(i, cyc, rule, detail))

    def need(i, cyc, rule, since, gap, what):
        if since > NEVER and cyc - since < gap:
            bad(i, cyc, rule, f"{what} {cyc - since} cycles after, needs {gap}")

    open_row: dict[int, int] = {}
    b_act = defaultdict(lambda: NEVER)
    b_pre = defaultdict(lambda: NEVER)
    b_rd = defaultdict(lambda: NEVER)
    b_wr = defaultdict(lambda: NEVER)
    g_act = defaultdict(lambda: NEVER)
    g_rd = defaultdict(lambda: NEVER)
    g_wr = defaultdict(lambda: NEVER)
    r_act = defaultdict(lambda: NEVER)
    r_rd = defaultdict(lambda: NEVER)
    r_wr = defaultdict(lambda: NEVER)
    r_pre = defaultdict(lambda: NEVER)
    r_ref = defaultdict(lambda: NEVER)
    r_faw: dict[int, deque] = defaultdict(lambda: deque(maxlen=4))
    r_refs: dict[int, list[int]] = defaultdict(list)
    bus_slots: dict[tuple, int] = {}
    bus_cycles = _BUS_CYCLES.get(spec.standard, {})
    bus_busy = defaultdict(lambda: (NEVER, 1, ""))  # bus -> (free from, cycles, command)
    data_end = defaultdict(lambda: (NEVER, -1))  # bus -> (end of last burst, rank)
    r_pre_any = defaultdict(lambda: NEVER)  # last PRE or PREA of the rank (tPPD)
    b_refsb = defaultdict(lambda: NEVER)
    r_refsb = defaultdict(lambda: NEVER)
    b_refs: dict[int, list[int]] = defaultdict(list)  # bank-set refresh times of each bank
    r_round: dict[int, set] = defaultdict(set)  # bank sets refreshed in the current round
    bank_set = spec.refresh_mode != "all-bank"
    n_sets = spec.refresh_sets

    order = np.argsort(log[:, 0], kind="stable")
    for i in order:
        cyc, c, ch, fr, fb, row = (int(v) for v in log[i, :6])
        cmd = _NAMES[c]
        bank_in_rank = fb - fr * banks_per_rank if fb >= 0 else -1
        fg = fr * o.bankgroups + bank_in_rank // o.banks_per_group if fb >= 0 else -1
        is_col = cmd in (RD, WR)

        # command bus
        bus = (ch, "col" if (spec.dual_command_bus and is_col) else "row")
        if bus_slots.get(bus) == cyc:
            bad(i, cyc, "command bus", f"second command on channel {ch} bus in one cycle")
        elif cyc < bus_busy[bus][0]:
            rule = "ACT row-bus occupancy" if spec.standard.startswith("HBM") else \
                "CA bus occupancy"
            bad(i, cyc, rule, f"{cmd} during the {bus_busy[bus][1]}-cycle "
                f"{bus_busy[bus][2]} on channel {ch}")
        bus_slots[bus] = cyc
        n_cyc = bus_cycles.get(cmd, 1)
        if n_cyc > 1:
            bus_busy[bus] = (cyc + n_cyc, n_cyc, cmd)

        if cmd == ACT:
            if fb in open_row:
                bad(i, cyc, "state", f"ACT to open bank {fb}")
            need(i, cyc, "tRC", b_act[fb], t.nRC, "ACT to ACT same bank")
            need(i, cyc, "tRP", b_pre[fb], t.nRP, "ACT after PRE same bank")
            need(i, cyc, "tRP", r_pre[fr], t.nRPAB, "ACT after PREA")
            need(i, cyc, "tRFCsb", b_refsb[fb], t.nRFCSB, "ACT after REFSB of its bank")
            need(i, cyc, "tREFSBRD", r_refsb[fr], t.nREFSBRD, "ACT after REFSB same rank")
            need(i, cyc, "tRRD_L", g_act[fg], t.nRRDL, "ACT to ACT same bank group")
            need(i, cyc, "tRRD_S", r_act[fr], t.nRRDS, "ACT to ACT same rank")
            need(i, cyc, "tRFC", r_ref[fr], t.nRFC, "ACT after REF")
            faw = r_faw[fr]
            if len(faw) == 4 and cyc - faw[0] < t.nFAW:
                bad(i, cyc, "tFAW", f"5th ACT {cyc - faw[0]} cycles after the 1st, needs "
                    f"{t.nFAW}")
            faw.append(cyc)
            open_row[fb] = row
            b_act[fb] = g_act[fg] = r_act[fr] = cyc
        elif cmd == PRE:
            need(i, cyc, "tPPD", r_pre_any[fr], t.nPPD, "PRE after PRE/PREA same rank")
            r_pre_any[fr] = cyc
            if fb in open_row:
                need(i, cyc, "tRAS", b_act[fb], t.nRAS, "PRE after ACT")
                need(i, cyc, "tRTP", b_rd[fb], t.nRTPL, "PRE after RD")
                need(i, cyc, "tWR", b_wr[fb], t.nCWL + t.nBL + t.nWR, "PRE after WR")
                del open_row[fb]
            b_pre[fb] = cyc
        elif cmd == PREA:
            need(i, cyc, "tPPD", r_pre_any[fr], t.nPPD, "PREA after PRE/PREA same rank")
            need(i, cyc, "tRFCsb", r_refsb[fr], t.nRFCSB, "PREA after REFSB")
            r_pre_any[fr] = cyc
            for f in range(fr * banks_per_rank, (fr + 1) * banks_per_rank):
                if f in open_row:
                    need(i, cyc, "tRAS", b_act[f], t.nRAS, f"PREA after ACT (bank {f})")
                    need(i, cyc, "tRTP", b_rd[f], t.nRTP, f"PREA after RD (bank {f})")
                    need(i, cyc, "tWR", b_wr[f], t.nCWL + t.nBL + t.nWR,
                         f"PREA after WR (bank {f})")
                    del open_row[f]
            need(i, cyc, "tRFC", r_ref[fr], t.nRFC, "PREA after REF")
            r_pre[fr] = cyc
        elif cmd == REF:
            opened = [f for f in open_row if fr * banks_per_rank <= f < (fr + 1) * banks_per_rank]
            if opened:
                bad(i, cyc, "state", f"REF with banks {opened} open")
            need(i, cyc, "tRP", r_pre[fr], t.nRPAB, "REF after PREA")
            need(i, cyc, "tRFCsb", r_refsb[fr], t.nRFCSB, "REF after REFSB")
            last_pre = max((b_pre[f] for f in range(fr * banks_per_rank,
                                                      (fr + 1) * banks_per_rank)), default=NEVER)
            need(i, cyc, "tRP", last_pre, t.nRP, "REF after PRE")
            need(i, cyc, "tRC", r_act[fr], t.nRC, "REF after ACT")
            need(i, cyc, "tRFC", r_ref[fr], t.nRFC, "REF after REF")
            r_ref[fr] = cyc
            r_refs[fr].append(cyc)
        elif cmd == REFSB:
            first = fb - fr * banks_per_rank
            if not bank_set or fb < 0:
                bad(i, cyc, "state", f"REFSB with refresh_mode {spec.refresh_mode!r}")
                continue
            if spec.refresh_mode == "same-bank":
                s = first % o.banks_per_group
                members = [fr * banks_per_rank + g * o.banks_per_group + s
                           for g in range(o.bankgroups)]
            else:
                s = first
                members = [fb]
            opened = [f for f in members if f in open_row]
            if opened:
                bad(i, cyc, "state", f"REFSB with banks {opened} of its set open")
            for f in members:
                need(i, cyc, "tRP", b_pre[f], t.nRP, f"REFSB after PRE (bank {f})")
                need(i, cyc, "tRC", b_act[f], t.nRC, f"REFSB after ACT (bank {f})")
                need(i, cyc, "tRFCsb", b_refsb[f], t.nRFCSB, f"REFSB after REFSB (bank {f})")
            need(i, cyc, "tRP", r_pre[fr], t.nRPAB, "REFSB after PREA")
            need(i, cyc, "tRFC", r_ref[fr], t.nRFC, "REFSB after REF")
            need(i, cyc, "tREFSBRD", r_refsb[fr], t.nREFSBRD, "REFSB after REFSB same rank")
            need(i, cyc, "tRRD_S", r_act[fr], t.nRRDS, "REFSB after ACT same rank")
            if s in r_round[fr]:
                bad(i, cyc, "REFSB order", f"bank set {s} of rank {fr} refreshed again before "
                    "every set was")
            r_round[fr].add(s)
            if len(r_round[fr]) == n_sets:
                r_round[fr] = set()
            for f in members:
                b_refsb[f] = cyc
                b_refs[f].append(cyc)
            r_refsb[fr] = cyc
        else:  # RD / WR
            if open_row.get(fb) != row:
                bad(i, cyc, "state", f"{cmd} to bank {fb} row {row}, open row "
                    f"{open_row.get(fb)}")
            if cmd == RD:
                need(i, cyc, "tRCD", b_act[fb], t.nRCD, "RD after ACT")
                need(i, cyc, "tCCD_L", g_rd[fg], t.nCCDL, "RD to RD same bank group")
                need(i, cyc, "tCCD_S", r_rd[fr], t.nCCDS, "RD to RD same rank")
                need(i, cyc, "tWTR_L", g_wr[fg], t.nCWL + t.nBL + t.nWTRL,
                     "RD after WR same bank group")
                need(i, cyc, "tWTR_S", r_wr[fr], t.nCWL + t.nBL + t.nWTRS, "RD after WR")
                b_rd[fb] = g_rd[fg] = r_rd[fr] = cyc
                start, end = cyc + t.nCL, cyc + t.nCL + t.nBL
            else:
                need(i, cyc, "tRCD", b_act[fb], t.nRCDWR, "WR after ACT")
                need(i, cyc, "tCCD_L", g_wr[fg], t.nCCDLWR, "WR to WR same bank group")
                need(i, cyc, "tCCD_S", r_wr[fr], t.nCCDSWR, "WR to WR same rank")
                need(i, cyc, "tRTW", r_rd[fr], t.nRTW, "WR after RD")
                b_wr[fb] = g_wr[fg] = r_wr[fr] = cyc
                start, end = cyc + t.nCWL, cyc + t.nCWL + t.nBL
            data_bus = (ch, fr) if spec.pseudo_channels else ch
            prev_end, prev_rank = data_end[data_bus]
            gap = t.nCS if (prev_rank >= 0 and prev_rank != fr) else 0
            if start < prev_end + gap:
                bad(i, cyc, "data bus", f"burst starts at {start}, bus busy until {prev_end}"
                    + (f" + nCS {gap} (rank switch)" if gap else ""))
            data_end[data_bus] = (max(end, prev_end), fr)

    if refresh and end_cycle is not None and bank_set:
        limit = 9 * t.nREFI  # 8 postponed refreshes
        for f in range(o.channels * o.ranks * banks_per_rank):
            times = [0] + b_refs.get(f, []) + [end_cycle]
            for a, b in zip(times, times[1:], strict=False):
                if b - a > limit:
                    bad(-1, b, "tREFI", f"bank {f} not refreshed between cycles {a} and {b} "
                        f"(at most 9 nREFI = {limit} apart)")
                    break
    elif refresh and end_cycle is not None:
        n_ranks = o.channels * o.ranks
        for fr in range(n_ranks):
            refs = r_refs.get(fr, [])
            for k, cyc in enumerate(refs):
                deadline = (k + 1 + 8) * t.nREFI
                if cyc > deadline:
                    bad(-1, cyc, "tREFI", f"rank {fr} REF #{k + 1} at {cyc}, later than 8 "
                        f"postponed intervals ({deadline})")
            due = end_cycle // t.nREFI - 8
            if len(refs) < due:
                bad(-1, end_cycle, "tREFI", f"rank {fr} got {len(refs)} REFs in {end_cycle} "
                    f"cycles, needs at least {due}")
    return out
