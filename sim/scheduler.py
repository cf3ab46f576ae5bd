"""Request schedulers: which queued request's next command a channel issues this cycle.

Both schedulers see one queue (reads, or writes while draining) in arrival order, and for each
request its next command (``RD``/``WR`` on a row hit, ``ACT`` on a closed bank, ``PRE`` on a
conflict) and the cycle at which that command becomes timing-legal.

``frfcfs`` (classic, Rixner et al. ISCA 2000)
    Ready column commands (row hits) first, oldest first; otherwise the oldest ready ACT or
    PRE, skipping a PRE that would close a row opened for a request not yet served.
``frfcfs-ramulator`` (Ramulator 2.1 ``FRFCFS``)
    Timing-ready first, then oldest, whatever the command. If the winner is a PRE that would
    close a row a request has activated and not yet read, nothing issues this cycle.

Requests whose ACT has issued (Ramulator's "active buffer") are served before either queue by
the controller, and requests to a rank with a refresh pending wait for it.
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
         dual, out):
    """Choose from queue ``qs[ch, qk, :qlen]``. Writes ``out[0]`` = queue slot or -1, ``out[1]``
    = the command, ``out[2]`` = earliest cycle any candidate becomes ready (a wake-up hint).

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
        if rank[req[b, Q_FR], R_REF_PENDING] > 0:
            continue  # waits for the refresh
        cmd = next_command(b, req, bank)
        t = ready_at(cmd, ch, req[b, Q_FR], req[b, Q_FG], req[b, Q_FB], nxt, rank, off_rk,
                     off_bg, off_bk, nFAW, dual)
        ready[j] = t
        if cmd == PRE and policy == CLASSIC and bank[req[b, Q_FB], B_ACTIVATED] > 0:
            continue  # the row was opened for a request that has not read it yet
        if t > now:
            if t < wake:
                wake = t
            continue
        if cmd == RD or cmd == WR:
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
        if best_any_cmd == PRE and bank[req[qs[ch, qk, best_any], Q_FB], B_ACTIVATED] > 0:
            out[0] = -1  # Ramulator: never close a row an activated request still needs
            out[1] = -1
            out[2] = now + 1
            return
        out[0] = best_any
        out[1] = best_any_cmd
        return
    out[0] = -1
    out[1] = -1
