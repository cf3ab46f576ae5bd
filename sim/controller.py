"""The memory controller: queues, refresh, row policy and command issue, compiled with numba.

One loop advances a global memory clock ``now`` over all channels. Each cycle, for each
channel, in priority order:

1. a request whose ACT has issued (Ramulator's active buffer) and whose column command is
   timing-ready;
2. refresh of a rank whose ``nREFI`` interval has elapsed: ``PREA`` if any bank is open (never
   while an activated request still waits on it), then ``REF``; requests to that rank wait.
   With bank-set refresh (DDR5 same-bank, HBM3 per-bank), one ``REFSB`` every ``nREFI / sets``
   per rank, the sets in turn: ``PRE`` of the set's open banks, then ``REFSB``; only ACTs to
   that set wait;
3. closed-page policy only: ``PRE`` of a bank whose last queued hit has been served;
4. the scheduler's choice from the read queue, or the write queue while draining (writes drain
   from ``write_high`` occupancy down to ``write_low``, or whenever no read is queued).

A channel issues one command per cycle (DDR4), or one row and one column command per cycle
(HBM2's separate row/column command buses). When no channel can issue, the clock jumps to the
next cycle at which anything can happen: a command becomes timing-legal, a request arrives, an
outstanding request completes or a refresh falls due. Issuing a command pushes the earliest
legal time of every command it constrains, per scope, from the standard's rule table
(``spec.constraint_table``); the four-activate window keeps each rank's last four ACT times.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .scheduler import RAMULATOR, SLOT_ANY, SLOT_COL, SLOT_ROW, cached_ready, pick, ready_at
from .spec import ACT, CMDS, PRE, PREA, RD, REF, REFRESH_MODES, REFSB, WR, DramSpec
from .state import (
    B_ACTIVATED,
    B_ACTS,
    B_CLOSE,
    B_COLS,
    B_HITS,
    B_HOLD,
    B_OPEN_ROW,
    B_VERSION,
    C_ACTL,
    C_CLOSE,
    C_RQ,
    C_WAKE,
    C_WMODE,
    C_WQ,
    COL_BUS,
    Q_ACTIVATED,
    Q_CH,
    Q_CT,
    Q_CVER,
    Q_DONE,
    Q_ENQ,
    Q_FB,
    Q_FG,
    Q_FR,
    Q_KIND,
    Q_ROW,
    Q_TIME,
    Q_WR,
    QS_ACTIVE,
    QS_READ,
    QS_T,
    QS_WRITE,
    R_ACT_PTR,
    R_ACTIVATED,
    R_ACTIVE_CYCLES,
    R_ACTIVE_SINCE,
    R_CMD,
    R_HIST,
    R_OPEN,
    R_REF_DUE,
    R_REF_PENDING,
    R_SB_PENDING,
    R_SB_SET,
    ROW_BUS,
    S_HEAP,
    S_IDLE,
    S_ITERS,
    S_LOG,
    S_NEXT,
    S_NOW,
    S_OUT,
    S_SERVED,
    S_STATUS,
)

INF = 1 << 62

# cfg slots; K_PTR.. holds where each preceding command's rules start in the rule table
(K_NCH, K_NRK, K_NBG, K_NBA, K_RQCAP, K_WQCAP, K_WHI, K_WLO, K_MAXOUT, K_SCHED, K_CLOSED,
 K_DUAL, K_NBL, K_NCL, K_NCWL, K_NREFI, K_NFAW, K_LOGCAP, K_OFF_RK, K_OFF_BG, K_OFF_BK,
 K_TIMED, K_WATCHDOG, K_PTR) = range(24)
N_K0 = K_PTR + len(CMDS) + 1
# bank-set refresh (REFSB): mode (index in spec.REFRESH_MODES), bank sets per rank, banks per
# set, cycles between a rank's REFSBs, REFSB to ACT of the refreshed banks
K_REFMODE, K_NSETS, K_SETSIZE, K_NREFSB, K_NRFCSB = range(N_K0, N_K0 + 5)
N_K = N_K0 + 5

# rule table columns (rows grouped by preceding command)
RULE_LEVEL, RULE_NEXT, RULE_LAT, RULE_SIBLING = range(4)

# log columns
L_T, L_CMD, L_CH, L_RANK, L_BANK, L_ROW, L_REQ = range(7)
N_L = 7

# request kinds
HIT, MISS, CONFLICT = 0, 1, 2


def watermarks(high: float, low: float, depth: int) -> tuple[int, int]:
    """Write-drain thresholds as integers ``(hi, lo)``: drain starts when the write queue holds
    more than ``hi`` and stops below ``lo``. Ramulator compares the queue size with
    ``high * depth`` and ``low * depth`` in single precision (``size < 0.2f * 32`` = 6.4: it
    drains to 6), so the fractions are rounded as float32 products."""
    hi = float(np.float32(high) * np.float32(depth))
    lo = float(np.float32(low) * np.float32(depth))
    return int(np.floor(hi)), int(np.ceil(lo))


@njit(cache=True)
def _heap_push(heap, n, v):
    i = n
    heap[i] = v
    while i > 0:
        p = (i - 1) >> 1
        if heap[p] <= heap[i]:
            break
        heap[p], heap[i] = heap[i], heap[p]
        i = p
    return n + 1


@njit(cache=True)
def _heap_pop(heap, n):
    n -= 1
    heap[0] = heap[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and heap[c + 1] < heap[c]:
            c += 1
        if heap[i] <= heap[c]:
            break
        heap[i], heap[c] = heap[c], heap[i]
        i = c
    return n


@njit(cache=True, inline="always")
def _apply_timing(now, cmd, ch, fr, fg, fb, cfg, rules, nxt):
    """Push the earliest legal issue time of every command ``cmd`` constrains."""
    for k in range(cfg[K_PTR + cmd], cfg[K_PTR + cmd + 1]):
        t = now + rules[k, RULE_LAT]
        nx = rules[k, RULE_NEXT]
        lvl = rules[k, RULE_LEVEL]
        if lvl == 0:
            e = ch
        elif lvl == 1:
            if rules[k, RULE_SIBLING]:
                nrk = cfg[K_NRK]
                for r in range(ch * nrk, ch * nrk + nrk):
                    if r != fr and nxt[cfg[K_OFF_RK] + r, nx] < t:
                        nxt[cfg[K_OFF_RK] + r, nx] = t
                continue
            e = cfg[K_OFF_RK] + fr
        elif lvl == 2:
            if fg < 0:
                continue
            e = cfg[K_OFF_BG] + fg
        else:
            if fb < 0:
                continue
            e = cfg[K_OFF_BK] + fb
        if nxt[e, nx] < t:
            nxt[e, nx] = t


@njit(cache=True, inline="always")
def _close_bank(now, fb, fr, bank, rank):
    if bank[fb, B_OPEN_ROW] >= 0:
        bank[fb, B_OPEN_ROW] = -1
        bank[fb, B_VERSION] += 1
        bank[fb, B_HITS] = 0
        rank[fr, R_OPEN] -= 1
        if rank[fr, R_OPEN] == 0:
            rank[fr, R_ACTIVE_CYCLES] += now - rank[fr, R_ACTIVE_SINCE]


@njit(cache=True, inline="always")
def _remove(queue, qlen, j):
    for i in range(j, qlen - 1):
        queue[i] = queue[i + 1]


@njit(cache=True, inline="always")
def _remove_value(queue, qlen, b):
    for j in range(qlen):
        if queue[j] == b:
            _remove(queue, qlen, j)
            return


@njit(cache=True, inline="always")
def _dequeue(qs, ch, qk, qlen, b):
    """Drop request ``b`` from read/write queue ``qk``, with its cached ready cycle."""
    for j in range(qlen):
        if qs[ch, qk, j] == b:
            _remove(qs[ch, qk], qlen, j)
            _remove(qs[ch, QS_T + qk], qlen, j)
            return


@njit(cache=True, inline="always")
def _forget_ready(qs, chan, req, ch, fr, fb):
    """The row state of bank ``fb`` (all banks of rank ``fr`` if ``fb`` < 0) changed: the next
    command of requests queued for it changes too, so drop their cached ready cycles."""
    for qk in range(2):
        for j in range(chan[ch, C_RQ + qk]):
            o = qs[ch, qk, j]
            if req[o, Q_FB] == fb or (fb < 0 and req[o, Q_FR] == fr):
                qs[ch, QS_T + qk, j] = 0


def refresh_config(cfg: np.ndarray, spec: DramSpec) -> None:
    """Fill the bank-set refresh slots of the configuration vector ``cfg`` for ``spec``."""
    cfg[K_REFMODE] = REFRESH_MODES.index(spec.refresh_mode)
    cfg[K_NSETS] = spec.refresh_sets
    cfg[K_SETSIZE] = len(spec.refresh_set_banks(0))
    cfg[K_NREFSB] = max(spec.timing.nREFI // spec.refresh_sets, 1)
    cfg[K_NRFCSB] = spec.timing.nRFCSB


@njit(cache=True, inline="always")
def _set_member(cfg, fr, s, k):
    """Flat (bank, bank group) of the ``k``-th bank of bank set ``s`` in rank ``fr``: bank ``s``
    of bank group ``k`` (same-bank refresh) or bank ``s`` itself (per-bank refresh)."""
    nbg, nba = cfg[K_NBG], cfg[K_NBA]
    bpg = nba // nbg
    if cfg[K_REFMODE] == 1:
        g, bir = k, k * bpg + s
    else:
        g, bir = s // bpg, s
    return fr * nba + bir, fr * nbg + g


@njit(cache=True, inline="always")
def _hold_set(fr, s, cfg, nxt, bank):
    """A REFSB of set ``s`` is due: no new ACT to its banks until it has issued (their ACT
    ready cycle is parked in ``B_HOLD``). Other banks of the rank keep working."""
    for k in range(cfg[K_SETSIZE]):
        fb, _ = _set_member(cfg, fr, s, k)
        e = cfg[K_OFF_BK] + fb
        bank[fb, B_HOLD] = nxt[e, ACT]
        nxt[e, ACT] = INF


@njit(cache=True, inline="always")
def _release_set(now, ch, fr, s, cfg, req, nxt, bank, chan, qs):
    """The REFSB of set ``s`` issued at ``now``: its banks may ACT again after nRFCSB."""
    for k in range(cfg[K_SETSIZE]):
        fb, _ = _set_member(cfg, fr, s, k)
        e = cfg[K_OFF_BK] + fb
        nxt[e, ACT] = max(bank[fb, B_HOLD], now + cfg[K_NRFCSB])
        bank[fb, B_HOLD] = -1
        bank[fb, B_VERSION] += 1  # cached ready cycles may now be too late
        _forget_ready(qs, chan, req, ch, fr, fb)


@njit(cache=True, inline="always")
def _issue(now, cmd, ch, fr, fg, fb, b, cfg, rules, req, nxt, bank, rank, chan, qs, heap, scal,
           log):
    """Issue ``cmd`` at ``now`` for request ``b`` (-1 for refresh and closed-page PREs)."""
    _apply_timing(now, cmd, ch, fr, fg, fb, cfg, rules, nxt)
    if cfg[K_DUAL] and (cmd == RD or cmd == WR):
        nxt[ch, COL_BUS] = now + 1
    elif cfg[K_DUAL]:
        nxt[ch, ROW_BUS] = now + 1
    else:
        nxt[ch, ROW_BUS] = now + 1
        nxt[ch, COL_BUS] = now + 1
    rank[fr, R_CMD + cmd] += 1
    if cfg[K_LOGCAP] > 0:
        n = scal[S_LOG]
        if n < cfg[K_LOGCAP]:
            log[n, L_T] = now
            log[n, L_CMD] = cmd
            log[n, L_CH] = ch
            log[n, L_RANK] = fr
            log[n, L_BANK] = fb
            log[n, L_ROW] = -1
            if b >= 0:
                log[n, L_ROW] = req[b, Q_ROW]
            log[n, L_REQ] = b
        scal[S_LOG] = n + 1
    if b >= 0 and req[b, Q_KIND] < 0:
        if cmd == RD or cmd == WR:
            req[b, Q_KIND] = HIT
        elif cmd == ACT:
            req[b, Q_KIND] = MISS
        else:
            req[b, Q_KIND] = CONFLICT

    if cmd == ACT:
        row = req[b, Q_ROW]
        if rank[fr, R_OPEN] == 0:
            rank[fr, R_ACTIVE_SINCE] = now
        rank[fr, R_OPEN] += 1
        bank[fb, B_OPEN_ROW] = row
        bank[fb, B_VERSION] += 1
        bank[fb, B_ACTS] += 1
        rank[fr, R_HIST + rank[fr, R_ACT_PTR]] = now
        rank[fr, R_ACT_PTR] = (rank[fr, R_ACT_PTR] + 1) & 3
        # the request joins the active set
        req[b, Q_ACTIVATED] = 1
        bank[fb, B_ACTIVATED] += 1
        rank[fr, R_ACTIVATED] += 1
        qs[ch, QS_ACTIVE, chan[ch, C_ACTL]] = b
        chan[ch, C_ACTL] += 1
        # queued hits to the new row (the activating request included); forget cached
        # ready cycles of the bank's requests, whose next command changed
        hits = 0
        for qk in range(2):
            for j in range(chan[ch, C_RQ + qk]):
                o = qs[ch, qk, j]
                if req[o, Q_FB] == fb:
                    qs[ch, QS_T + qk, j] = 0
                    if req[o, Q_ROW] == row:
                        hits += 1
        bank[fb, B_HITS] = hits
        bank[fb, B_CLOSE] = 0
        if cfg[K_SCHED] == RAMULATOR:
            # Ramulator: the request leaves its queue for the active buffer, making room for
            # a new one (the buffer holds one request per bank: no PRE closes its row)
            qk = QS_WRITE if req[b, Q_WR] else QS_READ
            _dequeue(qs, ch, qk, chan[ch, C_RQ + qk], b)
            chan[ch, C_RQ + qk] -= 1
    elif cmd == PRE:
        if bank[fb, B_CLOSE]:
            bank[fb, B_CLOSE] = 0
            chan[ch, C_CLOSE] -= 1
        _close_bank(now, fb, fr, bank, rank)
        _forget_ready(qs, chan, req, ch, fr, fb)
    elif cmd == PREA:
        nba = cfg[K_NBA]
        for f in range(fr * nba, fr * nba + nba):
            if bank[f, B_CLOSE]:
                bank[f, B_CLOSE] = 0
                chan[ch, C_CLOSE] -= 1
            _close_bank(now, f, fr, bank, rank)
        _forget_ready(qs, chan, req, ch, fr, -1)
    elif cmd == REF:
        rank[fr, R_REF_PENDING] -= 1
    elif cmd == REFSB:  # fb, fg: the set's first bank; the bank rules apply to every bank
        s = rank[fr, R_SB_SET]
        for k in range(1, cfg[K_SETSIZE]):
            mb, mg = _set_member(cfg, fr, s, k)
            _apply_timing(now, REFSB, ch, fr, mg, mb, cfg, rules, nxt)
        _release_set(now, ch, fr, s, cfg, req, nxt, bank, chan, qs)
        rank[fr, R_SB_SET] = (s + 1) % cfg[K_NSETS]
        rank[fr, R_SB_PENDING] -= 1
        if rank[fr, R_SB_PENDING] > 0:
            _hold_set(fr, rank[fr, R_SB_SET], cfg, nxt, bank)
    else:  # RD / WR: the request is served
        bank[fb, B_HITS] -= 1
        bank[fb, B_COLS] += 1
        queued = True
        if req[b, Q_ACTIVATED]:
            req[b, Q_ACTIVATED] = 0
            _remove_value(qs[ch, QS_ACTIVE], chan[ch, C_ACTL], b)
            chan[ch, C_ACTL] -= 1
            bank[fb, B_ACTIVATED] -= 1
            rank[fr, R_ACTIVATED] -= 1
            queued = cfg[K_SCHED] != RAMULATOR  # Ramulator: it left its queue at the ACT
        if req[b, Q_WR]:
            if queued:
                _dequeue(qs, ch, QS_WRITE, chan[ch, C_WQ], b)
                chan[ch, C_WQ] -= 1
            req[b, Q_DONE] = now + cfg[K_NCWL] + cfg[K_NBL]
        else:
            if queued:
                _dequeue(qs, ch, QS_READ, chan[ch, C_RQ], b)
                chan[ch, C_RQ] -= 1
            req[b, Q_DONE] = now + cfg[K_NCL] + cfg[K_NBL]
        scal[S_SERVED] += 1
        if cfg[K_MAXOUT] > 0:
            scal[S_HEAP] = _heap_push(heap, scal[S_HEAP], req[b, Q_DONE])
        if cfg[K_CLOSED] and bank[fb, B_HITS] == 0 and bank[fb, B_CLOSE] == 0:
            bank[fb, B_CLOSE] = 1
            chan[ch, C_CLOSE] += 1


# slots of the scheduling decision (``out``): pick() uses 0-2, _choose 3-7
O_CMD, O_RANK, O_BG, O_BANK, O_REQ = range(3, 8)
N_OUT = 8


@njit(cache=True, inline="always")
def _choose(now, ch, cfg, req, nxt, bank, rank, chan, qs, out, slot):
    """Choose at most one command for channel ``ch`` at ``now`` on command-bus ``slot``
    (``scheduler.SLOT_*``). Returns (found, wake-up hint); the command and its target are left
    in ``out[O_*]``."""
    off_rk, off_bg, off_bk = cfg[K_OFF_RK], cfg[K_OFF_BG], cfg[K_OFF_BK]
    nFAW, dual, nba = cfg[K_NFAW], cfg[K_DUAL], cfg[K_NBA]
    ramulator = cfg[K_SCHED] == RAMULATOR
    wake = INF

    # 1. activated requests (their row is open for them), oldest first
    best = -1
    for j in range(chan[ch, C_ACTL] if slot != SLOT_ROW else 0):
        b = qs[ch, QS_ACTIVE, j]
        t = req[b, Q_CT]
        if req[b, Q_CVER] != bank[req[b, Q_FB], B_VERSION] or t <= now:
            cmd = WR if req[b, Q_WR] else RD
            cmd, t = cached_ready(now, b, cmd, ch, req, nxt, bank, rank, off_rk, off_bg,
                                  off_bk, nFAW, dual)
        if t <= now:
            if best < 0 or b < best:
                best = b
        elif t < wake:
            wake = t
    if best >= 0:
        return _chosen(out, WR if req[best, Q_WR] else RD, req[best, Q_FR], req[best, Q_FG],
                       req[best, Q_FB], best), now + 1

    # 2. refresh
    nrk = cfg[K_NRK]
    ref_stop = False
    for fr in range(ch * nrk, ch * nrk + nrk):
        if rank[fr, R_SB_PENDING] > 0:
            # bank-set refresh: precharge the set's open banks (once no activated request
            # waits on them), then REFSB; the rank's other banks keep serving requests
            s = rank[fr, R_SB_SET]
            closed = True
            t_ref = 0
            for k in range(cfg[K_SETSIZE]):
                mb, mg = _set_member(cfg, fr, s, k)
                if bank[mb, B_OPEN_ROW] >= 0:
                    closed = False
                    if bank[mb, B_ACTIVATED] > 0:
                        continue  # its column command's readiness is in `wake`
                    t = ready_at(PRE, ch, fr, mg, mb, nxt, rank, off_rk, off_bg, off_bk, nFAW,
                                 dual)
                    if t <= now and slot != SLOT_COL:
                        return _chosen(out, PRE, fr, mg, mb, -1), now + 1
                    if t < wake:
                        wake = t
                else:
                    t = ready_at(REFSB, ch, fr, mg, mb, nxt, rank, off_rk, off_bg, off_bk,
                                 nFAW, dual)
                    if t > t_ref:
                        t_ref = t
            if closed:
                if t_ref <= now and slot != SLOT_COL:
                    mb, mg = _set_member(cfg, fr, s, 0)
                    return _chosen(out, REFSB, fr, mg, mb, -1), now + 1
                if t_ref < wake:
                    wake = t_ref
        if rank[fr, R_REF_PENDING] <= 0:
            continue
        # Ramulator: refreshes wait in one FIFO per channel (ranks in order, the head only)
        # and stop the channel's read/write queues until the REF issues
        ref_stop = ramulator
        if rank[fr, R_OPEN] > 0:
            if rank[fr, R_ACTIVATED] > 0:
                if ramulator:
                    break
                continue  # wait for activated requests (their readiness is in `wake`)
            cmd = PREA
        else:
            cmd = REF
        t = ready_at(cmd, ch, fr, -1, -1, nxt, rank, off_rk, off_bg, off_bk, nFAW, dual)
        if t <= now and slot != SLOT_COL:
            return _chosen(out, cmd, fr, -1, -1, -1), now + 1
        if t < wake:
            wake = t
        if ramulator:
            break

    # 3. closed page: precharge banks whose queued hits are all served
    if cfg[K_CLOSED] and chan[ch, C_CLOSE] > 0 and slot != SLOT_COL:
        bpg = nba // cfg[K_NBG]
        for fr in range(ch * nrk, ch * nrk + nrk):
            for fb in range(fr * nba, fr * nba + nba):
                if bank[fb, B_CLOSE] == 0:
                    continue
                if bank[fb, B_HITS] > 0 or bank[fb, B_OPEN_ROW] < 0:
                    bank[fb, B_CLOSE] = 0
                    chan[ch, C_CLOSE] -= 1
                    continue
                fg = fr * cfg[K_NBG] + (fb - fr * nba) // bpg
                t = ready_at(PRE, ch, fr, fg, fb, nxt, rank, off_rk, off_bg, off_bk, nFAW, dual)
                if t <= now:
                    return _chosen(out, PRE, fr, fg, fb, -1), now + 1
                if t < wake:
                    wake = t

    # 4. read queue, or write queue while draining
    if ref_stop:
        return False, wake
    nr, nw = chan[ch, C_RQ], chan[ch, C_WQ]
    if chan[ch, C_WMODE]:
        if nw == 0 or (nw < cfg[K_WLO] and nr > 0):
            chan[ch, C_WMODE] = 0
    elif nw > 0 and (nw > cfg[K_WHI] or nr == 0):
        chan[ch, C_WMODE] = 1
    qk = QS_WRITE if chan[ch, C_WMODE] else QS_READ
    pick(now, cfg[K_SCHED], ch, qs, qk, chan[ch, C_RQ + qk], req, bank, rank, nxt, off_rk,
         off_bg, off_bk, nFAW, dual, out, slot)
    if out[2] < wake:
        wake = out[2]
    j = out[0]
    if j < 0:
        return False, wake
    b = qs[ch, qk, j]
    return _chosen(out, out[1], req[b, Q_FR], req[b, Q_FG], req[b, Q_FB], b), now + 1


@njit(cache=True, inline="always")
def _chosen(out, cmd, fr, fg, fb, b):
    out[O_CMD] = cmd
    out[O_RANK] = fr
    out[O_BG] = fg
    out[O_BANK] = fb
    out[O_REQ] = b
    return True


@njit(cache=True, inline="always")
def _schedule_channel(now, ch, cfg, rules, req, nxt, bank, rank, chan, qs, heap, scal, log,
                      out, slot):
    """Issue at most one command on channel ``ch`` at ``now`` on command-bus ``slot``; return
    (issued, wake-up hint)."""
    found, wake = _choose(now, ch, cfg, req, nxt, bank, rank, chan, qs, out, slot)
    if found:
        _issue(now, out[O_CMD], ch, out[O_RANK], out[O_BG], out[O_BANK], out[O_REQ], cfg, rules,
               req, nxt, bank, rank, chan, qs, heap, scal, log)
    return found, wake


@njit(cache=True)
def run(stop_burst, cfg, rules, req, nxt, bank, rank, chan, qs, heap, scal, log):
    """Simulate until every burst is served, or until burst ``stop_burst`` has been admitted
    (to report progress); state lives in the arrays, so calling again resumes."""
    n = req.shape[0]
    nch = cfg[K_NCH]
    n_ranks = nch * cfg[K_NRK]
    pick_out = np.zeros(N_OUT, np.int64)
    now = scal[S_NOW]
    served_before = scal[S_SERVED]
    ref_next = rank[:, R_REF_DUE].min()  # earliest refresh deadline of any rank
    ramulator = 1 if cfg[K_SCHED] == RAMULATOR else 0
    while scal[S_SERVED] < n:
        if scal[S_NEXT] >= stop_burst and stop_burst < n:
            break
        # completions free outstanding slots
        while scal[S_HEAP] > 0 and heap[0] <= now:
            scal[S_HEAP] = _heap_pop(heap, scal[S_HEAP])
            scal[S_OUT] -= 1
        # refresh deadlines
        if now >= ref_next:
            ref_next = INF
            for fr in range(n_ranks):
                if now >= rank[fr, R_REF_DUE]:
                    if cfg[K_REFMODE] == 0:
                        rank[fr, R_REF_PENDING] += 1
                        rank[fr, R_REF_DUE] += cfg[K_NREFI]
                    else:  # one REFSB per nREFI / sets, the bank sets in turn
                        if rank[fr, R_SB_PENDING] == 0:
                            _hold_set(fr, rank[fr, R_SB_SET], cfg, nxt, bank)
                        rank[fr, R_SB_PENDING] += 1
                        rank[fr, R_REF_DUE] += cfg[K_NREFSB]
                    chan[fr // cfg[K_NRK], C_WAKE] = 0
                ref_next = min(ref_next, rank[fr, R_REF_DUE])
        # admit requests in order while their queue has room (Ramulator's frontend: one per
        # cycle, handed over the cycle before it can first be scheduled)
        limited = False
        while scal[S_NEXT] < n:
            if limited:
                break
            b = scal[S_NEXT]
            if cfg[K_TIMED] and req[b, Q_TIME] > now:
                break
            if cfg[K_MAXOUT] > 0 and scal[S_OUT] >= cfg[K_MAXOUT]:
                break
            ch = req[b, Q_CH]
            qk = QS_WRITE if req[b, Q_WR] else QS_READ
            if chan[ch, C_RQ + qk] >= cfg[K_RQCAP + qk]:
                break
            qs[ch, qk, chan[ch, C_RQ + qk]] = b
            qs[ch, QS_T + qk, chan[ch, C_RQ + qk]] = 0
            chan[ch, C_RQ + qk] += 1
            chan[ch, C_WAKE] = 0
            fb = req[b, Q_FB]
            if bank[fb, B_OPEN_ROW] == req[b, Q_ROW]:
                bank[fb, B_HITS] += 1
            req[b, Q_ENQ] = req[b, Q_TIME] if cfg[K_TIMED] else now - ramulator
            if cfg[K_MAXOUT] > 0:
                scal[S_OUT] += 1
            scal[S_NEXT] = b + 1
            limited = ramulator == 1

        issued_any = False
        scal[S_ITERS] += 1
        wake = INF
        for ch in range(nch):
            if now < chan[ch, C_WAKE]:  # its last pass still holds: nothing ready before then
                if chan[ch, C_WAKE] < wake:
                    wake = chan[ch, C_WAKE]
                continue
            issued_here = False
            if ramulator == 1 and cfg[K_DUAL]:  # column bus first, then row bus (Ramulator HBM12)
                w = INF
                for slot in (SLOT_COL, SLOT_ROW):
                    issued, w2 = _schedule_channel(now, ch, cfg, rules, req, nxt, bank, rank,
                                                   chan, qs, heap, scal, log, pick_out, slot)
                    issued_here |= issued
                    w = min(w, w2)
            else:
                for _ in range(2 if cfg[K_DUAL] else 1):
                    issued, w = _schedule_channel(now, ch, cfg, rules, req, nxt, bank, rank,
                                                  chan, qs, heap, scal, log, pick_out, SLOT_ANY)
                    if not issued:
                        break
                    issued_here = True
            if issued_here:
                issued_any = True
                w = now + 1
            chan[ch, C_WAKE] = w
            if w < wake:
                wake = w
        if scal[S_SERVED] != served_before:
            served_before = scal[S_SERVED]
            scal[S_IDLE] = now  # last cycle a request was served
        elif now - scal[S_IDLE] > cfg[K_WATCHDOG]:
            scal[S_STATUS] = 1  # requests queued but none served for too long
            break
        if issued_any:
            now += 1
            continue
        # nothing can issue: jump to the next cycle at which something can happen
        nb = scal[S_NEXT]
        if nb < n:
            if cfg[K_TIMED] and req[nb, Q_TIME] > now and req[nb, Q_TIME] < wake:
                wake = req[nb, Q_TIME]
            if cfg[K_MAXOUT] > 0 and scal[S_OUT] >= cfg[K_MAXOUT] and scal[S_HEAP] > 0:
                if heap[0] < wake:
                    wake = heap[0]
        if ref_next < wake:
            wake = ref_next
        if limited:
            wake = now + 1  # the frontend hands over the next request
        if wake <= now:
            wake = now + 1
        if wake >= INF:
            scal[S_STATUS] = 1  # deadlock: nothing can ever issue
            break
        pending = False
        for ch in range(nch):
            if chan[ch, C_RQ] > 0 or chan[ch, C_WQ] > 0 or chan[ch, C_ACTL] > 0:
                pending = True
        if not pending:
            scal[S_IDLE] = wake  # waiting for arrivals is not a stall
        now = wake
    scal[S_NOW] = now
    return now


def close_active_time(now: int, rank: np.ndarray) -> None:
    """Count active-standby time up to ``now`` for ranks with open banks."""
    open_ = rank[:, R_OPEN] > 0
    rank[open_, R_ACTIVE_CYCLES] += now - rank[open_, R_ACTIVE_SINCE]
    rank[open_, R_ACTIVE_SINCE] = now
