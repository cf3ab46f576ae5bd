"""Bank, rank and channel state of the controller as flat NumPy tables.

The compiled controller loop (``controller.py``) works on integer tables whose columns are
named by the constants below, one row per hardware object:

- ``nxt[entity, cmd]``: earliest cycle at which ``cmd`` may issue, per timing scope. Rows
  ``[0, C)`` are channels, then ranks, bank groups and banks (offsets in ``Layout``);
  columns ``ROW_BUS``/``COL_BUS`` of a channel row hold when its command bus(es) are free.
- ``bank[fb, B_*]``: open row (-1 closed), queued row hits to the open row, whether a request
  has activated it and awaits its column command, closed-page close request, column commands,
  ACTs, a version bumped whenever the row state changes (for the scheduler's cache), and,
  while a bank-set refresh is due for the bank, its ACT ready cycle held back (``B_HOLD``,
  -1 when not held).
- ``rank[fr, R_*]``: open banks, refresh bookkeeping (all-bank ``REF`` and bank-set
  ``REFSB``), last four ACT times (tFAW), active-standby time (energy) and command counts.
- ``chan[ch, C_*]``: queue lengths, write-drain mode, and the cycle before which a channel's
  last scheduling pass stays valid (nothing can issue there until then unless a request
  arrives or a refresh falls due).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import CMDS, DramSpec

NEVER = -(1 << 40)  # "long ago": an ACT history slot that constrains nothing

ROW_BUS = len(CMDS)
COL_BUS = len(CMDS) + 1
N_NXT = len(CMDS) + 2

B_OPEN_ROW, B_HITS, B_ACTIVATED, B_CLOSE, B_COLS, B_ACTS, B_VERSION, B_HOLD = range(8)
N_B = 8

(R_OPEN, R_ACTIVATED, R_REF_PENDING, R_REF_DUE, R_ACT_PTR, R_ACTIVE_SINCE,
 R_ACTIVE_CYCLES, R_HIST) = range(8)
R_CMD = R_HIST + 4  # one counter per command follows the four-entry ACT history
# bank-set refresh (REFSB): refreshes due and not yet issued, and the set they start with
R_SB_PENDING = R_CMD + len(CMDS)
R_SB_SET = R_SB_PENDING + 1
N_R = R_SB_SET + 1

C_RQ, C_WQ, C_WMODE, C_ACTL, C_CLOSE, C_WAKE = range(6)
N_C = 6

# queues: qs[ch, QS_*, slot] holds burst indices in arrival order; qs[ch, QS_T + k, slot] a
# lower bound on the cycle the next command of read (k=0) / write (k=1) slot may issue, and
# qs[ch, QS_B + k, slot] the slot's flat bank (the request's Q_FB, kept beside the queue so
# that scans for a bank's requests read one row)
QS_READ, QS_WRITE, QS_ACTIVE, QS_T = range(4)
QS_B = QS_T + 2
N_QS = QS_B + 2

# per-burst table req[b, Q_*]: inputs (mapped coordinates, arrival) and results
(Q_CH, Q_FR, Q_FG, Q_FB, Q_ROW, Q_WR, Q_TIME, Q_ACTIVATED, Q_KIND, Q_ENQ, Q_DONE, Q_CCMD, Q_CT,
 Q_CVER) = range(14)
N_Q = 14


@dataclass
class Layout:
    """Sizes and row offsets of the flat tables for one memory system."""

    channels: int
    ranks: int  # per channel
    bankgroups: int  # per rank
    banks: int  # per rank

    @property
    def n_ranks(self) -> int:
        return self.channels * self.ranks

    @property
    def n_bgs(self) -> int:
        return self.n_ranks * self.bankgroups

    @property
    def n_banks(self) -> int:
        return self.n_ranks * self.banks

    @property
    def off_rank(self) -> int:
        return self.channels

    @property
    def off_bg(self) -> int:
        return self.off_rank + self.n_ranks

    @property
    def off_bank(self) -> int:
        return self.off_bg + self.n_bgs

    @classmethod
    def of(cls, spec: DramSpec) -> Layout:
        o = spec.org
        return cls(o.channels, o.ranks, o.bankgroups, o.banks)


@dataclass
class ControllerState:
    """All mutable controller state; survives between chunks of a long run."""

    nxt: np.ndarray
    bank: np.ndarray
    rank: np.ndarray
    chan: np.ndarray
    qs: np.ndarray  # [channel, read/write/active/read-ready/write-ready/banks, slot]
    heap: np.ndarray  # completion times of outstanding requests (min-heap), if bounded
    scal: np.ndarray  # now, next burst, outstanding, heap size, served, log length, status,
    # last cycle with progress, loop iterations

    @classmethod
    def new(cls, layout: Layout, rq_cap: int, wq_cap: int, heap_cap: int, nREFI: int,
            refresh: bool) -> ControllerState:
        n_ent = layout.off_bank + layout.n_banks
        bank = np.zeros((layout.n_banks, N_B), np.int64)
        bank[:, B_OPEN_ROW] = -1
        bank[:, B_HOLD] = -1
        rank = np.zeros((layout.n_ranks, N_R), np.int64)
        rank[:, R_HIST:R_HIST + 4] = NEVER
        rank[:, R_REF_DUE] = nREFI if refresh else np.iinfo(np.int64).max // 2
        return cls(
            nxt=np.zeros((n_ent, N_NXT), np.int64), bank=bank, rank=rank,
            chan=np.zeros((layout.channels, N_C), np.int64),
            qs=np.zeros((layout.channels, N_QS,
                         max(rq_cap, wq_cap, layout.ranks * layout.banks)), np.int64),
            heap=np.zeros(max(heap_cap, 1), np.int64), scal=np.zeros(9, np.int64),
        )


# scal slots
S_NOW, S_NEXT, S_OUT, S_HEAP, S_SERVED, S_LOG, S_STATUS, S_IDLE, S_ITERS = range(9)
