"""Request schedulers: which queued request's next command a channel issues this cycle.

Both schedulers see one queue (reads, or writes while draining) in arrival order, and for each
request its next command (``RD``/``WR`` on a row hit, ``ACT`` on a closed bank, ``PRE`` on a
conflict) and the cycle at which that command becomes timing-legal. Neither closes a row that
an activated request (ACT issued, column command not yet) still needs: such a ``PRE`` is not a
candidate.

``frfcfs`` (classic, Rixner et al. ISCA 2000)
    Ready column commands (row hits) first, oldest first; otherwise the oldest ready ACT or
    PRE. A request stays in its queue until its column command issues.
``frfcfs-ramulator`` (Ramulator 2.1 ``FRFCFS`` with its ``GenericDDR`` / ``HBM12``
    controllers) Timing-ready first, then oldest, whatever the command. A request leaves its
    queue when its ACT issues and waits in the channel's active buffer (so up to queue depth +
    banks requests are in the controller). On HBM (separate row and column command buses) the
    column bus is scheduled first from the active buffer, then from row hits in the queue, and
    the row bus from ACTs and PREs in the queue.

Requests whose ACT has issued (the "active buffer") are served before either queue by the
controller, and refresh comes before the queues (see controller.py).
"""

from __future__ import annotations

from numba import njit

from .spec import ACT, PRE, RD, WR
from .state import (
    B_ACTIVATED,
    B_OPEN_ROW,
    B_VERSION,
    COL_BUS,
    Q_ACTIVATED,
    Q_CCMD,
    Q_CT,
    Q_CVER,
    Q_FB,
    Q_FG,
    Q_FR,
    Q_ROW,
    Q_WR,
    QS_T,
    R_ACT_PTR,
    R_HIST,
    R_REF_PENDING,
    ROW_BUS,
)

SCHEDULERS = ("frfcfs", "frfcfs-ramulator")
CLASSIC, RAMULATOR = 0, 1
# command-bus slots a scheduling pass may fill: either (one command bus), or on HBM's separate
# buses the column (RD/WR) or row (ACT/PRE/PREA/REF) bus only
SLOT_ANY, SLOT_COL, SLOT_ROW = 0, 1, 2
INF = 1 << 62


@njit(cache=True, inline="always")
def ready_at(cmd, ch, fr, fg, fb, nxt, rank, off_rk, off_bg, off_bk, nFAW, dual):
    """Earliest cycle ``cmd`` may issue; ``fg``/``fb`` < 0 for rank-wide commands."""
    t = nxt[ch, cmd]
    x = nxt[off_rk + fr, cmd]
    if x > t:
        t = x
    if fg >= 0:
        x = nxt[off_bg + fg, cmd]
        if x > t:
            t = x
    if fb >= 0:
        x = nxt[off_bk + fb, cmd]
        if x > t:
            t = x
    if cmd == ACT:
        # the oldest of the rank's last four ACTs opens the tFAW window
        x = rank[fr, R_HIST + rank[fr, R_ACT_PTR]] + nFAW
        if x > t:
            t = x
    if dual and (cmd == RD or cmd == WR):
        x = nxt[ch, COL_BUS]
    else:
        x = nxt[ch, ROW_BUS]
    if x > t:
        t = x
    return t


@njit(cache=True, inline="always")
def next_command(b, req, bank):
    """The next command request ``b`` needs given its bank's state."""
    open_row = bank[req[b, Q_FB], B_OPEN_ROW]
    if open_row == req[b, Q_ROW]:
        return WR if req[b, Q_WR] else RD
    if open_row < 0:
        return ACT
    return PRE


@njit(cache=True, inline="always")
def cached_ready(now, b, cmd, ch, req, nxt, bank, rank, off_rk, off_bg, off_bk, nFAW, dual):
    """``(cmd, cycle)`` for request ``b``; ``cmd`` < 0 lets the bank state decide it.

    Each request caches its next command and ready cycle. Ready cycles only grow while the
    bank's row state (``B_VERSION``) is unchanged, so a cached cycle still in the future proves
    the command is not ready without recomputing it.
    """
    fb = req[b, Q_FB]
    ver = bank[fb, B_VERSION]
    if req[b, Q_CVER] == ver and req[b, Q_CT] > now:
        return req[b, Q_CCMD], req[b, Q_CT]
    if cmd < 0:
        cmd = next_command(b, req, bank)
    t = ready_at(cmd, ch, req[b, Q_FR], req[b, Q_FG], fb, nxt, rank, off_rk, off_bg, off_bk,
                 nFAW, dual)
    req[b, Q_CCMD] = cmd
    req[b, Q_CT] = t
    req[b, Q_CVER] = ver
    return cmd, t


@njit(cache=True, inline="always")
def pick(now, policy, ch, qs, qk, qlen, req, bank, rank, nxt, off_rk, off_bg, off_bk, nFAW,
         dual, out, slot=SLOT_ANY):
    """Choose from queue ``qs[ch, qk, :qlen]``. Writes ``out[0]`` = queue slot or -1, ``out[1]``
    = the command, ``out[2]`` = earliest cycle any candidate becomes ready (a wake-up hint).
    ``slot`` limits the candidates to column (``SLOT_COL``) or row (``SLOT_ROW``) commands.

    ``qs[ch, QS_T + qk, j]`` caches when slot ``j``'s next command becomes legal. Legal times
    only grow while the bank's row state is unchanged (the controller zeroes the cache of a
    bank's requests when it changes), so a cached cycle still in the future proves the command
    is not ready without recomputing it.
    """
    best_hit = -1
    best_any = -1
    best_any_cmd = -1
    wake = INF
    ids = qs[ch, qk]
    ready = qs[ch, QS_T + qk]
    for j in range(qlen):
        t = ready[j]
        if t > now:  # cached lower bound still in the future: not ready
            wake = min(wake, t)
            continue
        b = ids[j]
        if req[b, Q_ACTIVATED]:
            ready[j] = INF  # served from the active set
            continue
        if policy == CLASSIC and rank[req[b, Q_FR], R_REF_PENDING] > 0:
            continue  # waits for the refresh (Ramulator: the controller stops the queues)
        cmd = next_command(b, req, bank)
        t = ready_at(cmd, ch, req[b, Q_FR], req[b, Q_FG], req[b, Q_FB], nxt, rank, off_rk,
                     off_bg, off_bk, nFAW, dual)
        ready[j] = t
        if cmd == PRE and bank[req[b, Q_FB], B_ACTIVATED] > 0:
            continue  # the row was opened for a request that has not read it yet
        column = cmd == RD or cmd == WR
        if (slot == SLOT_COL and not column) or (slot == SLOT_ROW and column):
            continue  # the other command bus schedules it
        if t > now:
            if t < wake:
                wake = t
            continue
        if column:
            if best_hit < 0:
                best_hit = j
                if policy == CLASSIC:
                    break
        if best_any < 0:
            best_any = j
            best_any_cmd = cmd
            if policy == RAMULATOR:
                break
    out[2] = wake
    if policy == CLASSIC and best_hit >= 0:
        out[0] = best_hit
        out[1] = WR if req[qs[ch, qk, best_hit], Q_WR] else RD
        return
    if best_any >= 0:
        out[0] = best_any
        out[1] = best_any_cmd
        return
    out[0] = -1
    out[1] = -1
