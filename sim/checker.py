"""Independent timing checker: replays an issued command log against JEDEC rules.

Modelled on LiteDRAM's ``DFITimingsChecker``: it knows nothing of the controller or of
``spec.constraint_table``. Each rule below is written from its JEDEC definition in terms of
the history of one bank, bank group, rank or data bus, and every command of the log is
checked against all of them, together with the legality of the bank state (no ACT to an open
bank, no column command to a closed bank or another row, no REF with a bank open), command-bus
occupancy (one command per cycle; on HBM2 one row and one column command, an ACT holding the
row bus two cycles), data-bus overlap (with ``nCS`` between ranks sharing a bus) and the
refresh rate (at most 8 postponed refreshes, JESD79-4 4.8).

Use :func:`check_log` on ``Stats.command_log`` (``simulate(..., log_commands=True)``).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

import numpy as np

from .spec import DramSpec

ACT, PRE, PREA, RD, WR, REF = "ACT", "PRE", "PREA", "RD", "WR", "REF"
_NAMES = (ACT, PRE, PREA, RD, WR, REF)
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
    row_bus_act = defaultdict(lambda: NEVER)  # HBM2: ACT holds the row bus for 2 cycles
    data_end = defaultdict(lambda: (NEVER, -1))  # bus -> (end of last burst, rank)

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
        bus_slots[bus] = cyc
        if spec.standard == "HBM2" and not is_col and cyc - row_bus_act[ch] < 2:
            bad(i, cyc, "ACT row-bus occupancy", "row command during the 2-cycle ACT")
        if cmd == ACT:
            row_bus_act[ch] = cyc

        if cmd == ACT:
            if fb in open_row:
                bad(i, cyc, "state", f"ACT to open bank {fb}")
            need(i, cyc, "tRC", b_act[fb], t.nRC, "ACT to ACT same bank")
            need(i, cyc, "tRP", b_pre[fb], t.nRP, "ACT after PRE same bank")
            need(i, cyc, "tRP", r_pre[fr], t.nRP, "ACT after PREA")
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
            if fb in open_row:
                need(i, cyc, "tRAS", b_act[fb], t.nRAS, "PRE after ACT")
                need(i, cyc, "tRTP", b_rd[fb], t.nRTPL, "PRE after RD")
                need(i, cyc, "tWR", b_wr[fb], t.nCWL + t.nBL + t.nWR, "PRE after WR")
                del open_row[fb]
            b_pre[fb] = cyc
        elif cmd == PREA:
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
            need(i, cyc, "tRP", r_pre[fr], t.nRP, "REF after PREA")
            last_pre = max((b_pre[f] for f in range(fr * banks_per_rank,
                                                      (fr + 1) * banks_per_rank)), default=NEVER)
            need(i, cyc, "tRP", last_pre, t.nRP, "REF after PRE")
            need(i, cyc, "tRC", r_act[fr], t.nRC, "REF after ACT")
            need(i, cyc, "tRFC", r_ref[fr], t.nRFC, "REF after REF")
            r_ref[fr] = cyc
            r_refs[fr].append(cyc)
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
                need(i, cyc, "tCCD_L", g_wr[fg], t.nCCDL, "WR to WR same bank group")
                need(i, cyc, "tCCD_S", r_wr[fr], t.nCCDS, "WR to WR same rank")
                need(i, cyc, "tRTW", r_rd[fr], t.nCL + t.nBL + 2 - t.nCWL, "WR after RD")
                b_wr[fb] = g_wr[fg] = r_wr[fr] = cyc
                start, end = cyc + t.nCWL, cyc + t.nCWL + t.nBL
            data_bus = (ch, fr) if spec.pseudo_channels else ch
            prev_end, prev_rank = data_end[data_bus]
            gap = t.nCS if (prev_rank >= 0 and prev_rank != fr) else 0
            if start < prev_end + gap:
                bad(i, cyc, "data bus", f"burst starts at {start}, bus busy until {prev_end}"
                    + (f" + nCS {gap} (rank switch)" if gap else ""))
            data_end[data_bus] = (max(end, prev_end), fr)

    if refresh and end_cycle is not None:
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
