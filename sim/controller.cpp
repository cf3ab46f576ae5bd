// The memory controller loop of psa.sim (see controller.py for the model it implements).
//
// Built once per source/compiler-flag hash by controller.py (g++ -O2 -shared) and called
// through ctypes on the NumPy state tables of state.py. The table column names (Q_*, B_*,
// R_*, C_*, QS_*, K_*...) are not spelled out here: controller.py prepends them as
// `#define`s generated from the Python constants, so the two sides cannot disagree.
//
// All tables are C-contiguous int64 arrays: req[b][N_Q], nxt[entity][N_NXT], bank[fb][N_B],
// rank[fr][N_R], chan[ch][N_C], qs[ch][N_QS][qcap], heap[], scal[], log[][N_L], cfg[], and
// rules[][4] (level, following, latency, sibling) grouped by preceding command.

#include <cstdint>

typedef int64_t i64;

namespace {

const i64 INF = (i64)1 << 62;

struct Ctx {
    const i64* cfg;
    const i64* rules;
    i64* req;
    i64* nxt;
    i64* bank;
    i64* rank;
    i64* chan;
    i64* qs;
    i64* heap;
    i64* scal;
    i64* log;
    i64 qcap;  // last dimension of qs
    i64 off_rk, off_bg, off_bk, nfaw, dual, sched;
    i64 out[N_OUT];
};

#define REQ(b, c) x.req[(b) * N_Q + (c)]
#define NXT(e, c) x.nxt[(e) * N_NXT + (c)]
#define BANK(f, c) x.bank[(f) * N_B + (c)]
#define RANK(f, c) x.rank[(f) * N_R + (c)]
#define CHAN(ch, c) x.chan[(ch) * N_C + (c)]
#define QROW(ch, k) (x.qs + ((ch) * N_QS + (k)) * x.qcap)
#define CFG(k) x.cfg[k]

inline i64 imax(i64 a, i64 b) { return a > b ? a : b; }
inline i64 imin(i64 a, i64 b) { return a < b ? a : b; }

// ---- completion-time min-heap ---------------------------------------------------------------
inline i64 heap_push(i64* heap, i64 n, i64 v) {
    i64 i = n;
    heap[i] = v;
    while (i > 0) {
        i64 p = (i - 1) >> 1;
        if (heap[p] <= heap[i]) break;
        i64 t = heap[p]; heap[p] = heap[i]; heap[i] = t;
        i = p;
    }
    return n + 1;
}

inline i64 heap_pop(i64* heap, i64 n) {
    n -= 1;
    heap[0] = heap[n];
    i64 i = 0;
    while (true) {
        i64 c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap[c + 1] < heap[c]) c += 1;
        if (heap[i] <= heap[c]) break;
        i64 t = heap[i]; heap[i] = heap[c]; heap[c] = t;
        i = c;
    }
    return n;
}

// ---- timing ---------------------------------------------------------------------------------
// Push the earliest legal issue time of every command `cmd` constrains.
inline void apply_timing(i64 now, i64 cmd, i64 ch, i64 fr, i64 fg, i64 fb, const i64* cfg,
                         const i64* rules, i64* nxt) {
    for (i64 k = cfg[K_PTR + cmd]; k < cfg[K_PTR + cmd + 1]; ++k) {
        const i64* r = rules + 4 * k;
        i64 t = now + r[RULE_LAT];
        i64 nx = r[RULE_NEXT];
        i64 lvl = r[RULE_LEVEL];
        i64 e;
        if (lvl == 0) {
            e = ch;
        } else if (lvl == 1) {
            if (r[RULE_SIBLING]) {
                i64 nrk = cfg[K_NRK];
                for (i64 q = ch * nrk; q < ch * nrk + nrk; ++q) {
                    i64* p = nxt + (cfg[K_OFF_RK] + q) * N_NXT + nx;
                    if (q != fr && *p < t) *p = t;
                }
                continue;
            }
            e = cfg[K_OFF_RK] + fr;
        } else if (lvl == 2) {
            if (fg < 0) continue;
            e = cfg[K_OFF_BG] + fg;
        } else {
            if (fb < 0) continue;
            e = cfg[K_OFF_BK] + fb;
        }
        i64* p = nxt + e * N_NXT + nx;
        if (*p < t) *p = t;
    }
}

// Earliest cycle `cmd` may issue; fg / fb < 0 for rank-wide commands.
inline i64 ready_at_raw(i64 cmd, i64 ch, i64 fr, i64 fg, i64 fb, const i64* nxt,
                        const i64* rank, i64 off_rk, i64 off_bg, i64 off_bk, i64 nfaw,
                        i64 dual) {
    i64 t = nxt[ch * N_NXT + cmd];
    i64 v = nxt[(off_rk + fr) * N_NXT + cmd];
    if (v > t) t = v;
    if (fg >= 0) {
        v = nxt[(off_bg + fg) * N_NXT + cmd];
        if (v > t) t = v;
    }
    if (fb >= 0) {
        v = nxt[(off_bk + fb) * N_NXT + cmd];
        if (v > t) t = v;
    }
    if (cmd == ACT) {  // the oldest of the rank's last four ACTs opens the tFAW window
        v = rank[fr * N_R + R_HIST + rank[fr * N_R + R_ACT_PTR]] + nfaw;
        if (v > t) t = v;
    }
    v = (dual && (cmd == RD || cmd == WR)) ? nxt[ch * N_NXT + COL_BUS]
                                           : nxt[ch * N_NXT + ROW_BUS];
    if (v > t) t = v;
    return t;
}

inline i64 ready_at(Ctx& x, i64 cmd, i64 ch, i64 fr, i64 fg, i64 fb) {
    return ready_at_raw(cmd, ch, fr, fg, fb, x.nxt, x.rank, x.off_rk, x.off_bg, x.off_bk,
                        x.nfaw, x.dual);
}

// The next command request b needs given its bank's state.
inline i64 next_command(Ctx& x, i64 b) {
    i64 open_row = BANK(REQ(b, Q_FB), B_OPEN_ROW);
    if (open_row == REQ(b, Q_ROW)) return REQ(b, Q_WR) ? WR : RD;
    if (open_row < 0) return ACT;
    return PRE;
}

// (cmd, cycle) for request b, cached per request while its bank's row state is unchanged;
// cmd < 0 lets the bank state decide it.
inline i64 cached_ready(Ctx& x, i64 now, i64 b, i64 cmd, i64 ch, i64* cmd_out) {
    i64 fb = REQ(b, Q_FB);
    i64 ver = BANK(fb, B_VERSION);
    if (REQ(b, Q_CVER) == ver && REQ(b, Q_CT) > now) {
        *cmd_out = REQ(b, Q_CCMD);
        return REQ(b, Q_CT);
    }
    if (cmd < 0) cmd = next_command(x, b);
    i64 t = ready_at(x, cmd, ch, REQ(b, Q_FR), REQ(b, Q_FG), fb);
    REQ(b, Q_CCMD) = cmd;
    REQ(b, Q_CT) = t;
    REQ(b, Q_CVER) = ver;
    *cmd_out = cmd;
    return t;
}

// ---- scheduler (scheduler.py documents the policies) ----------------------------------------
// Choose from queue qk of channel ch. out[0] = queue slot or -1, out[1] = command, out[2] =
// earliest cycle any candidate becomes ready.
void pick(Ctx& x, i64 now, i64 ch, i64 qk, i64 qlen, i64 slot) {
    const i64 policy = x.sched;
    i64 best_hit = -1, best_any = -1, best_any_cmd = -1;
    i64 wake = INF;
    i64* ids = QROW(ch, qk);
    i64* ready = QROW(ch, QS_T + qk);
    // Slots whose cached lower bound is still in the future are not ready: they only bound
    // the wake-up. One branch-free pass takes their minimum and marks the others (64 slots at
    // a time), which are then visited in queue order. (Entries past a chosen one may lower
    // `wake` here where a scan stopping at the choice would not; `wake` only matters when
    // nothing is chosen, and then every entry is visited either way.)
    for (i64 base = 0; base < qlen; base += 64) {
        const i64 m = qlen - base < 64 ? qlen - base : 64;
        uint64_t mask = 0;
        for (i64 k = 0; k < m; ++k) {
            const i64 t = ready[base + k];
            const bool le = t <= now;
            mask |= (uint64_t)le << k;
            const i64 u = le ? INF : t;
            wake = u < wake ? u : wake;
        }
        for (; mask; mask &= mask - 1) {
            const i64 j = base + __builtin_ctzll(mask);
            const i64 b = ids[j];
            if (REQ(b, Q_ACTIVATED)) {
                ready[j] = INF;  // served from the active set
                continue;
            }
            if (policy == CLASSIC && RANK(REQ(b, Q_FR), R_REF_PENDING) > 0) continue;
            const i64 cmd = next_command(x, b);
            const i64 t = ready_at(x, cmd, ch, REQ(b, Q_FR), REQ(b, Q_FG), REQ(b, Q_FB));
            ready[j] = t;
            if (cmd == PRE && BANK(REQ(b, Q_FB), B_ACTIVATED) > 0) continue;
            const bool column = cmd == RD || cmd == WR;
            if ((slot == SLOT_COL && !column) || (slot == SLOT_ROW && column)) continue;
            if (t > now) {
                if (t < wake) wake = t;
                continue;
            }
            if (column && best_hit < 0) {
                best_hit = j;
                if (policy == CLASSIC) goto done;
            }
            if (best_any < 0) {
                best_any = j;
                best_any_cmd = cmd;
                if (policy == RAMULATOR) goto done;
            }
        }
    }
done:
    x.out[2] = wake;
    if (policy == CLASSIC && best_hit >= 0) {
        x.out[0] = best_hit;
        x.out[1] = REQ(ids[best_hit], Q_WR) ? WR : RD;
        return;
    }
    if (best_any >= 0) {
        x.out[0] = best_any;
        x.out[1] = best_any_cmd;
        return;
    }
    x.out[0] = -1;
    x.out[1] = -1;
}

// ---- state changes --------------------------------------------------------------------------
inline void close_bank(Ctx& x, i64 now, i64 fb, i64 fr) {
    if (BANK(fb, B_OPEN_ROW) >= 0) {
        BANK(fb, B_OPEN_ROW) = -1;
        BANK(fb, B_VERSION) += 1;
        BANK(fb, B_HITS) = 0;
        RANK(fr, R_OPEN) -= 1;
        if (RANK(fr, R_OPEN) == 0) RANK(fr, R_ACTIVE_CYCLES) += now - RANK(fr, R_ACTIVE_SINCE);
    }
}

inline void remove_at(i64* q, i64 qlen, i64 j) {
    for (i64 i = j; i < qlen - 1; ++i) q[i] = q[i + 1];
}

inline void remove_value(i64* q, i64 qlen, i64 b) {
    for (i64 j = 0; j < qlen; ++j) {
        if (q[j] == b) {
            remove_at(q, qlen, j);
            return;
        }
    }
}

// Drop request b from read/write queue qk, with its cached ready cycle.
inline void dequeue(Ctx& x, i64 ch, i64 qk, i64 qlen, i64 b) {
    i64* ids = QROW(ch, qk);
    for (i64 j = 0; j < qlen; ++j) {
        if (ids[j] == b) {
            remove_at(ids, qlen, j);
            remove_at(QROW(ch, QS_T + qk), qlen, j);
            remove_at(QROW(ch, QS_B + qk), qlen, j);
            return;
        }
    }
}

// The row state of bank fb (all banks of rank fr if fb < 0) changed: drop the cached ready
// cycles of the requests queued for it.
inline void forget_ready(Ctx& x, i64 ch, i64 fr, i64 fb) {
    const i64 nba = CFG(K_NBA);
    for (i64 qk = 0; qk < 2; ++qk) {
        const i64* banks = QROW(ch, QS_B + qk);
        i64* ready = QROW(ch, QS_T + qk);
        i64 n = CHAN(ch, C_RQ + qk);
        if (fb >= 0) {
            for (i64 j = 0; j < n; ++j)
                if (banks[j] == fb) ready[j] = 0;
        } else {  // every bank of rank fr (flat banks fr * nba ...)
            for (i64 j = 0; j < n; ++j)
                if (banks[j] / nba == fr) ready[j] = 0;
        }
    }
}

// Flat (bank, bank group) of the k-th bank of bank set s in rank fr.
inline void set_member(Ctx& x, i64 fr, i64 s, i64 k, i64* fb, i64* fg) {
    i64 nbg = CFG(K_NBG), nba = CFG(K_NBA);
    i64 bpg = nba / nbg;
    i64 g, bir;
    if (CFG(K_REFMODE) == 1) {
        g = k;
        bir = k * bpg + s;
    } else {
        g = s / bpg;
        bir = s;
    }
    *fb = fr * nba + bir;
    *fg = fr * nbg + g;
}

// A REFSB of set s is due: no new ACT to its banks until it has issued.
inline void hold_set(Ctx& x, i64 fr, i64 s) {
    for (i64 k = 0; k < CFG(K_SETSIZE); ++k) {
        i64 fb, fg;
        set_member(x, fr, s, k, &fb, &fg);
        i64 e = CFG(K_OFF_BK) + fb;
        BANK(fb, B_HOLD) = NXT(e, ACT);
        NXT(e, ACT) = INF;
    }
}

// The REFSB of set s issued at now: its banks may ACT again after nRFCSB.
inline void release_set(Ctx& x, i64 now, i64 ch, i64 fr, i64 s) {
    for (i64 k = 0; k < CFG(K_SETSIZE); ++k) {
        i64 fb, fg;
        set_member(x, fr, s, k, &fb, &fg);
        i64 e = CFG(K_OFF_BK) + fb;
        NXT(e, ACT) = imax(BANK(fb, B_HOLD), now + CFG(K_NRFCSB));
        BANK(fb, B_HOLD) = -1;
        BANK(fb, B_VERSION) += 1;  // cached ready cycles may now be too late
        forget_ready(x, ch, fr, fb);
    }
}

// Issue cmd at now for request b (-1 for refresh and closed-page PREs).
void issue(Ctx& x, i64 now, i64 cmd, i64 ch, i64 fr, i64 fg, i64 fb, i64 b) {
    apply_timing(now, cmd, ch, fr, fg, fb, x.cfg, x.rules, x.nxt);
    if (x.dual && (cmd == RD || cmd == WR)) {
        NXT(ch, COL_BUS) = now + 1;
    } else if (x.dual) {
        NXT(ch, ROW_BUS) = now + 1;
    } else {
        NXT(ch, ROW_BUS) = now + 1;
        NXT(ch, COL_BUS) = now + 1;
    }
    RANK(fr, R_CMD + cmd) += 1;
    if (CFG(K_LOGCAP) > 0) {
        i64 n = x.scal[S_LOG];
        if (n < CFG(K_LOGCAP)) {
            i64* l = x.log + n * N_L;
            l[L_T] = now;
            l[L_CMD] = cmd;
            l[L_CH] = ch;
            l[L_RANK] = fr;
            l[L_BANK] = fb;
            l[L_ROW] = b >= 0 ? REQ(b, Q_ROW) : -1;
            l[L_REQ] = b;
        }
        x.scal[S_LOG] = n + 1;
    }
    if (b >= 0 && REQ(b, Q_KIND) < 0) {
        if (cmd == RD || cmd == WR) REQ(b, Q_KIND) = HIT;
        else if (cmd == ACT) REQ(b, Q_KIND) = MISS;
        else REQ(b, Q_KIND) = CONFLICT;
    }

    if (cmd == ACT) {
        i64 row = REQ(b, Q_ROW);
        if (RANK(fr, R_OPEN) == 0) RANK(fr, R_ACTIVE_SINCE) = now;
        RANK(fr, R_OPEN) += 1;
        BANK(fb, B_OPEN_ROW) = row;
        BANK(fb, B_VERSION) += 1;
        BANK(fb, B_ACTS) += 1;
        RANK(fr, R_HIST + RANK(fr, R_ACT_PTR)) = now;
        RANK(fr, R_ACT_PTR) = (RANK(fr, R_ACT_PTR) + 1) & 3;
        // the request joins the active set
        REQ(b, Q_ACTIVATED) = 1;
        BANK(fb, B_ACTIVATED) += 1;
        RANK(fr, R_ACTIVATED) += 1;
        QROW(ch, QS_ACTIVE)[CHAN(ch, C_ACTL)] = b;
        CHAN(ch, C_ACTL) += 1;
        // queued hits to the new row (the activating request included); forget cached ready
        // cycles of the bank's requests, whose next command changed
        i64 hits = 0;
        for (i64 qk = 0; qk < 2; ++qk) {
            const i64* ids = QROW(ch, qk);
            const i64* banks = QROW(ch, QS_B + qk);
            i64* ready = QROW(ch, QS_T + qk);
            i64 n = CHAN(ch, C_RQ + qk);
            for (i64 j = 0; j < n; ++j) {
                if (banks[j] == fb) {
                    ready[j] = 0;
                    if (REQ(ids[j], Q_ROW) == row) hits += 1;
                }
            }
        }
        BANK(fb, B_HITS) = hits;
        BANK(fb, B_CLOSE) = 0;
        if (x.sched == RAMULATOR) {
            // the request leaves its queue for the active buffer
            i64 qk = REQ(b, Q_WR) ? QS_WRITE : QS_READ;
            dequeue(x, ch, qk, CHAN(ch, C_RQ + qk), b);
            CHAN(ch, C_RQ + qk) -= 1;
        }
    } else if (cmd == PRE) {
        if (BANK(fb, B_CLOSE)) {
            BANK(fb, B_CLOSE) = 0;
            CHAN(ch, C_CLOSE) -= 1;
        }
        close_bank(x, now, fb, fr);
        forget_ready(x, ch, fr, fb);
    } else if (cmd == PREA) {
        i64 nba = CFG(K_NBA);
        for (i64 f = fr * nba; f < fr * nba + nba; ++f) {
            if (BANK(f, B_CLOSE)) {
                BANK(f, B_CLOSE) = 0;
                CHAN(ch, C_CLOSE) -= 1;
            }
            close_bank(x, now, f, fr);
        }
        forget_ready(x, ch, fr, -1);
    } else if (cmd == REF) {
        RANK(fr, R_REF_PENDING) -= 1;
    } else if (cmd == REFSB) {  // fb, fg: the set's first bank; the bank rules apply to all
        i64 s = RANK(fr, R_SB_SET);
        for (i64 k = 1; k < CFG(K_SETSIZE); ++k) {
            i64 mb, mg;
            set_member(x, fr, s, k, &mb, &mg);
            apply_timing(now, REFSB, ch, fr, mg, mb, x.cfg, x.rules, x.nxt);
        }
        release_set(x, now, ch, fr, s);
        RANK(fr, R_SB_SET) = (s + 1) % CFG(K_NSETS);
        RANK(fr, R_SB_PENDING) -= 1;
        if (RANK(fr, R_SB_PENDING) > 0) hold_set(x, fr, RANK(fr, R_SB_SET));
    } else {  // RD / WR: the request is served
        BANK(fb, B_HITS) -= 1;
        BANK(fb, B_COLS) += 1;
        bool queued = true;
        if (REQ(b, Q_ACTIVATED)) {
            REQ(b, Q_ACTIVATED) = 0;
            remove_value(QROW(ch, QS_ACTIVE), CHAN(ch, C_ACTL), b);
            CHAN(ch, C_ACTL) -= 1;
            BANK(fb, B_ACTIVATED) -= 1;
            RANK(fr, R_ACTIVATED) -= 1;
            queued = x.sched != RAMULATOR;  // Ramulator: it left its queue at the ACT
        }
        if (REQ(b, Q_WR)) {
            if (queued) {
                dequeue(x, ch, QS_WRITE, CHAN(ch, C_WQ), b);
                CHAN(ch, C_WQ) -= 1;
            }
            REQ(b, Q_DONE) = now + CFG(K_NCWL) + CFG(K_NBL);
        } else {
            if (queued) {
                dequeue(x, ch, QS_READ, CHAN(ch, C_RQ), b);
                CHAN(ch, C_RQ) -= 1;
            }
            REQ(b, Q_DONE) = now + CFG(K_NCL) + CFG(K_NBL);
        }
        x.scal[S_SERVED] += 1;
        if (CFG(K_MAXOUT) > 0) x.scal[S_HEAP] = heap_push(x.heap, x.scal[S_HEAP], REQ(b, Q_DONE));
        if (CFG(K_CLOSED) && BANK(fb, B_HITS) == 0 && BANK(fb, B_CLOSE) == 0) {
            BANK(fb, B_CLOSE) = 1;
            CHAN(ch, C_CLOSE) += 1;
        }
    }
}

inline bool chosen(Ctx& x, i64 cmd, i64 fr, i64 fg, i64 fb, i64 b) {
    x.out[O_CMD] = cmd;
    x.out[O_RANK] = fr;
    x.out[O_BG] = fg;
    x.out[O_BANK] = fb;
    x.out[O_REQ] = b;
    return true;
}

// Choose at most one command for channel ch at now on command-bus slot. Returns whether one
// was found; *wake gets the wake-up hint; the command and its target are left in x.out[O_*].
bool choose(Ctx& x, i64 now, i64 ch, i64 slot, i64* wake_out) {
    const bool ramulator = x.sched == RAMULATOR;
    const i64 nba = CFG(K_NBA);
    i64 wake = INF;

    // 1. activated requests (their row is open for them), oldest first
    i64 best = -1;
    i64 nact = slot != SLOT_ROW ? CHAN(ch, C_ACTL) : 0;
    i64* act = QROW(ch, QS_ACTIVE);
    for (i64 j = 0; j < nact; ++j) {
        i64 b = act[j];
        i64 t = REQ(b, Q_CT);
        if (REQ(b, Q_CVER) != BANK(REQ(b, Q_FB), B_VERSION) || t <= now) {
            i64 c;
            t = cached_ready(x, now, b, REQ(b, Q_WR) ? WR : RD, ch, &c);
        }
        if (t <= now) {
            if (best < 0 || b < best) best = b;
        } else if (t < wake) {
            wake = t;
        }
    }
    if (best >= 0) {
        *wake_out = now + 1;
        return chosen(x, REQ(best, Q_WR) ? WR : RD, REQ(best, Q_FR), REQ(best, Q_FG),
                      REQ(best, Q_FB), best);
    }

    // 2. refresh
    const i64 nrk = CFG(K_NRK);
    bool ref_stop = false;
    for (i64 fr = ch * nrk; fr < ch * nrk + nrk; ++fr) {
        if (RANK(fr, R_SB_PENDING) > 0) {
            // bank-set refresh: precharge the set's open banks (once no activated request
            // waits on them), then REFSB
            i64 s = RANK(fr, R_SB_SET);
            bool closed = true;
            i64 t_ref = 0;
            for (i64 k = 0; k < CFG(K_SETSIZE); ++k) {
                i64 mb, mg;
                set_member(x, fr, s, k, &mb, &mg);
                if (BANK(mb, B_OPEN_ROW) >= 0) {
                    closed = false;
                    if (BANK(mb, B_ACTIVATED) > 0) continue;
                    i64 t = ready_at(x, PRE, ch, fr, mg, mb);
                    if (t <= now && slot != SLOT_COL) {
                        *wake_out = now + 1;
                        return chosen(x, PRE, fr, mg, mb, -1);
                    }
                    if (t < wake) wake = t;
                } else {
                    i64 t = ready_at(x, REFSB, ch, fr, mg, mb);
                    if (t > t_ref) t_ref = t;
                }
            }
            if (closed) {
                if (t_ref <= now && slot != SLOT_COL) {
                    i64 mb, mg;
                    set_member(x, fr, s, 0, &mb, &mg);
                    *wake_out = now + 1;
                    return chosen(x, REFSB, fr, mg, mb, -1);
                }
                if (t_ref < wake) wake = t_ref;
            }
        }
        if (RANK(fr, R_REF_PENDING) <= 0) continue;
        // Ramulator: refreshes wait in one FIFO per channel (ranks in order, the head only)
        // and stop the channel's read/write queues until the REF issues
        ref_stop = ramulator;
        i64 cmd;
        if (RANK(fr, R_OPEN) > 0) {
            if (RANK(fr, R_ACTIVATED) > 0) {
                if (ramulator) break;
                continue;  // wait for activated requests (their readiness is in `wake`)
            }
            cmd = PREA;
        } else {
            cmd = REF;
        }
        i64 t = ready_at(x, cmd, ch, fr, -1, -1);
        if (t <= now && slot != SLOT_COL) {
            *wake_out = now + 1;
            return chosen(x, cmd, fr, -1, -1, -1);
        }
        if (t < wake) wake = t;
        if (ramulator) break;
    }

    // 3. closed page: precharge banks whose queued hits are all served
    if (CFG(K_CLOSED) && CHAN(ch, C_CLOSE) > 0 && slot != SLOT_COL) {
        i64 bpg = nba / CFG(K_NBG);
        for (i64 fr = ch * nrk; fr < ch * nrk + nrk; ++fr) {
            for (i64 fb = fr * nba; fb < fr * nba + nba; ++fb) {
                if (BANK(fb, B_CLOSE) == 0) continue;
                if (BANK(fb, B_HITS) > 0 || BANK(fb, B_OPEN_ROW) < 0) {
                    BANK(fb, B_CLOSE) = 0;
                    CHAN(ch, C_CLOSE) -= 1;
                    continue;
                }
                i64 fg = fr * CFG(K_NBG) + (fb - fr * nba) / bpg;
                i64 t = ready_at(x, PRE, ch, fr, fg, fb);
                if (t <= now) {
                    *wake_out = now + 1;
                    return chosen(x, PRE, fr, fg, fb, -1);
                }
                if (t < wake) wake = t;
            }
        }
    }

    // 4. read queue, or write queue while draining
    if (ref_stop) {
        *wake_out = wake;
        return false;
    }
    i64 nr = CHAN(ch, C_RQ), nw = CHAN(ch, C_WQ);
    if (CHAN(ch, C_WMODE)) {
        if (nw == 0 || (nw < CFG(K_WLO) && nr > 0)) CHAN(ch, C_WMODE) = 0;
    } else if (nw > 0 && (nw > CFG(K_WHI) || nr == 0)) {
        CHAN(ch, C_WMODE) = 1;
    }
    i64 qk = CHAN(ch, C_WMODE) ? QS_WRITE : QS_READ;
    pick(x, now, ch, qk, CHAN(ch, C_RQ + qk), slot);
    if (x.out[2] < wake) wake = x.out[2];
    i64 j = x.out[0];
    if (j < 0) {
        *wake_out = wake;
        return false;
    }
    i64 b = QROW(ch, qk)[j];
    *wake_out = now + 1;
    return chosen(x, x.out[1], REQ(b, Q_FR), REQ(b, Q_FG), REQ(b, Q_FB), b);
}

// Issue at most one command on channel ch at now on command-bus slot.
inline bool schedule_channel(Ctx& x, i64 now, i64 ch, i64 slot, i64* wake) {
    bool found = choose(x, now, ch, slot, wake);
    if (found)
        issue(x, now, x.out[O_CMD], ch, x.out[O_RANK], x.out[O_BG], x.out[O_BANK],
              x.out[O_REQ]);
    return found;
}

}  // namespace

extern "C" {

// Simulate until every burst is served, or until burst stop_burst has been admitted; state
// lives in the arrays, so calling again resumes. Returns the clock.
i64 psa_run(i64 stop_burst, i64 n, i64 qcap, const i64* cfg, const i64* rules, i64* req,
            i64* nxt, i64* bank, i64* rank, i64* chan, i64* qs, i64* heap, i64* scal,
            i64* log) {
    Ctx x;
    x.cfg = cfg; x.rules = rules; x.req = req; x.nxt = nxt; x.bank = bank; x.rank = rank;
    x.chan = chan; x.qs = qs; x.heap = heap; x.scal = scal; x.log = log; x.qcap = qcap;
    x.off_rk = cfg[K_OFF_RK]; x.off_bg = cfg[K_OFF_BG]; x.off_bk = cfg[K_OFF_BK];
    x.nfaw = cfg[K_NFAW]; x.dual = cfg[K_DUAL]; x.sched = cfg[K_SCHED];
    for (i64 k = 0; k < N_OUT; ++k) x.out[k] = 0;

    const i64 nch = CFG(K_NCH);
    const i64 n_ranks = nch * CFG(K_NRK);
    const i64 ramulator = x.sched == RAMULATOR ? 1 : 0;
    i64 now = scal[S_NOW];
    i64 served_before = scal[S_SERVED];
    i64 ref_next = INF;  // earliest refresh deadline of any rank
    for (i64 fr = 0; fr < n_ranks; ++fr) ref_next = imin(ref_next, RANK(fr, R_REF_DUE));
    if (n_ranks == 0) ref_next = 0;
    while (scal[S_SERVED] < n) {
        if (scal[S_NEXT] >= stop_burst && stop_burst < n) break;
        // completions free outstanding slots
        while (scal[S_HEAP] > 0 && heap[0] <= now) {
            scal[S_HEAP] = heap_pop(heap, scal[S_HEAP]);
            scal[S_OUT] -= 1;
        }
        // refresh deadlines
        if (now >= ref_next) {
            ref_next = INF;
            for (i64 fr = 0; fr < n_ranks; ++fr) {
                if (now >= RANK(fr, R_REF_DUE)) {
                    if (CFG(K_REFMODE) == 0) {
                        RANK(fr, R_REF_PENDING) += 1;
                        RANK(fr, R_REF_DUE) += CFG(K_NREFI);
                    } else {  // one REFSB per nREFI / sets, the bank sets in turn
                        if (RANK(fr, R_SB_PENDING) == 0) hold_set(x, fr, RANK(fr, R_SB_SET));
                        RANK(fr, R_SB_PENDING) += 1;
                        RANK(fr, R_REF_DUE) += CFG(K_NREFSB);
                    }
                    CHAN(fr / CFG(K_NRK), C_WAKE) = 0;
                }
                ref_next = imin(ref_next, RANK(fr, R_REF_DUE));
            }
        }
        // admit requests in order while their queue has room (Ramulator's frontend: one per
        // cycle, handed over the cycle before it can first be scheduled)
        bool limited = false;
        while (scal[S_NEXT] < n) {
            if (limited) break;
            i64 b = scal[S_NEXT];
            if (CFG(K_TIMED) && REQ(b, Q_TIME) > now) break;
            if (CFG(K_MAXOUT) > 0 && scal[S_OUT] >= CFG(K_MAXOUT)) break;
            i64 ch = REQ(b, Q_CH);
            i64 qk = REQ(b, Q_WR) ? QS_WRITE : QS_READ;
            i64 len = CHAN(ch, C_RQ + qk);
            if (len >= CFG(K_RQCAP + qk)) break;
            i64 fb = REQ(b, Q_FB);
            QROW(ch, qk)[len] = b;
            QROW(ch, QS_T + qk)[len] = 0;
            QROW(ch, QS_B + qk)[len] = fb;
            CHAN(ch, C_RQ + qk) += 1;
            CHAN(ch, C_WAKE) = 0;
            if (BANK(fb, B_OPEN_ROW) == REQ(b, Q_ROW)) BANK(fb, B_HITS) += 1;
            REQ(b, Q_ENQ) = CFG(K_TIMED) ? REQ(b, Q_TIME) : now - ramulator;
            if (CFG(K_MAXOUT) > 0) scal[S_OUT] += 1;
            scal[S_NEXT] = b + 1;
            limited = ramulator == 1;
        }

        bool issued_any = false;
        scal[S_ITERS] += 1;
        i64 wake = INF;
        for (i64 ch = 0; ch < nch; ++ch) {
            if (now < CHAN(ch, C_WAKE)) {  // its last pass still holds
                if (CHAN(ch, C_WAKE) < wake) wake = CHAN(ch, C_WAKE);
                continue;
            }
            bool issued_here = false;
            i64 w = INF;
            if (ramulator == 1 && x.dual) {  // column bus first, then row bus (Ramulator HBM12)
                i64 w2;
                if (schedule_channel(x, now, ch, SLOT_COL, &w2)) issued_here = true;
                w = imin(w, w2);
                if (schedule_channel(x, now, ch, SLOT_ROW, &w2)) issued_here = true;
                w = imin(w, w2);
            } else {
                for (int k = 0; k < (x.dual ? 2 : 1); ++k) {
                    bool issued = schedule_channel(x, now, ch, SLOT_ANY, &w);
                    if (!issued) break;
                    issued_here = true;
                }
            }
            if (issued_here) {
                issued_any = true;
                w = now + 1;
            }
            CHAN(ch, C_WAKE) = w;
            if (w < wake) wake = w;
        }
        if (scal[S_SERVED] != served_before) {
            served_before = scal[S_SERVED];
            scal[S_IDLE] = now;  // last cycle a request was served
        } else if (now - scal[S_IDLE] > CFG(K_WATCHDOG)) {
            scal[S_STATUS] = 1;  // requests queued but none served for too long
            break;
        }
        if (issued_any) {
            now += 1;
            continue;
        }
        // nothing can issue: jump to the next cycle at which something can happen
        i64 nb = scal[S_NEXT];
        if (nb < n) {
            if (CFG(K_TIMED) && REQ(nb, Q_TIME) > now && REQ(nb, Q_TIME) < wake)
                wake = REQ(nb, Q_TIME);
            if (CFG(K_MAXOUT) > 0 && scal[S_OUT] >= CFG(K_MAXOUT) && scal[S_HEAP] > 0) {
                if (heap[0] < wake) wake = heap[0];
            }
        }
        if (ref_next < wake) wake = ref_next;
        if (limited) wake = now + 1;  // the frontend hands over the next request
        if (wake <= now) wake = now + 1;
        if (wake >= INF) {
            scal[S_STATUS] = 1;  // deadlock: nothing can ever issue
            break;
        }
        bool pending = false;
        for (i64 ch = 0; ch < nch; ++ch) {
            if (CHAN(ch, C_RQ) > 0 || CHAN(ch, C_WQ) > 0 || CHAN(ch, C_ACTL) > 0) pending = true;
        }
        if (!pending) scal[S_IDLE] = wake;  // waiting for arrivals is not a stall
        now = wake;
    }
    scal[S_NOW] = now;
    return now;
}

// The rule machinery on its own (tests/sim/test_timing.py probes it).
void psa_apply_timing(i64 now, i64 cmd, i64 ch, i64 fr, i64 fg, i64 fb, const i64* cfg,
                      const i64* rules, i64* nxt) {
    apply_timing(now, cmd, ch, fr, fg, fb, cfg, rules, nxt);
}

i64 psa_ready_at(i64 cmd, i64 ch, i64 fr, i64 fg, i64 fb, const i64* nxt, const i64* rank,
                 i64 off_rk, i64 off_bg, i64 off_bk, i64 nfaw, i64 dual) {
    return ready_at_raw(cmd, ch, fr, fg, fb, nxt, rank, off_rk, off_bg, off_bk, nfaw, dual);
}

}  // extern "C"

// ---- text trace parser ----------------------------------------------------------------------
// A fast path for well-formed text traces (the grammar of psa.golden.trace, docs/
// trace_format.md): it accepts a subset of what the NumPy parser accepts and gives the same
// columns; on anything else it refuses the whole block (returns -1) and the caller falls back
// to the Python parsers, which name the offending line.

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace {

inline bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\r'; }
inline bool is_dec(uint8_t c) { return c >= '0' && c <= '9'; }
inline int hex_val(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    c |= 32;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// Digits [s, e) in base 10 (at most `width` digits) into *v; false if not plain digits.
inline bool parse_dec(const uint8_t* s, const uint8_t* e, int width, uint64_t* v) {
    if (e - s < 1 || e - s > width) return false;
    uint64_t r = 0;
    for (; s < e; ++s) {
        if (!is_dec(*s)) return false;
        r = r * 10 + (*s - '0');
    }
    *v = r;
    return true;
}

inline bool parse_hex(const uint8_t* s, const uint8_t* e, uint64_t* v) {
    if (e - s < 1 || e - s > 16) return false;
    uint64_t r = 0;
    for (; s < e; ++s) {
        int d = hex_val(*s);
        if (d < 0) return false;
        r = (r << 4) | (uint64_t)d;
    }
    *v = r;
    return true;
}

// An issue time: digits[.digits][e[+-]digits] (a digit before or after the point), finite.
inline bool parse_time(const uint8_t* s, const uint8_t* e, double* v) {
    i64 n = e - s;
    if (n < 1 || n > 48) return false;
    const uint8_t* p = s;
    i64 digits = 0;
    while (p < e && is_dec(*p)) { ++p; ++digits; }
    if (p < e && *p == '.') {
        ++p;
        while (p < e && is_dec(*p)) { ++p; ++digits; }
    }
    if (digits == 0) return false;
    if (p < e && (*p | 32) == 'e') {
        ++p;
        if (p < e && (*p == '+' || *p == '-')) ++p;
        i64 ed = 0;
        while (p < e && is_dec(*p)) { ++p; ++ed; }
        if (ed == 0) return false;
    }
    if (p != e) return false;
    char tmp[64];
    std::memcpy(tmp, s, (size_t)n);
    tmp[n] = 0;
    char* end = nullptr;
    double d = std::strtod(tmp, &end);
    if (end != tmp + n || !std::isfinite(d) || d < 0) return false;
    *v = d;
    return true;
}

}  // namespace

extern "C" {

// Parse `len` bytes of whole lines. layer0: the layer before the block (-1 unknown);
// timed0: -1 (no request yet), 0 or 1. Columns go to addr/size/wr/tns/layer (room for one
// request per line); state[0] = layer after the block, state[1] = timed after it. Returns
// the number of requests, or -1 when the block holds anything this fast path does not accept.
i64 psa_parse_trace(const uint8_t* buf, i64 len, i64 layer0, i64 timed0, uint64_t* addr,
                    uint32_t* size, uint8_t* wr, double* tns, int16_t* layer, i64* state) {
    const uint8_t* p = buf;
    const uint8_t* end = buf + len;
    i64 n = 0, cur_layer = layer0, timed = timed0;
    while (p < end) {
        const uint8_t* le = (const uint8_t*)std::memchr(p, '\n', (size_t)(end - p));
        if (!le) le = end;
        // tokens of the line up to '#' (at most 5 matter); control bytes refuse the block
        const uint8_t* ts[6];
        const uint8_t* te[6];
        int nt = 0;
        const uint8_t* hash = nullptr;
        const uint8_t* q = p;
        while (q < le) {
            uint8_t c = *q;
            if (c == '\r') {
                if (q + 1 != le || le == end) return -1;  // a bare carriage return
                ++q;
                continue;
            }
            if (c < 32 && c != '\t') return -1;
            if (c >= 127) return -1;
            if (c == '#') { hash = q; break; }
            if (is_ws(c)) { ++q; continue; }
            const uint8_t* s = q;
            while (q < le && *q > 32 && *q < 127 && *q != '#') ++q;
            if (nt == 6) return -1;
            ts[nt] = s; te[nt] = q; ++nt;
        }
        if (hash) {  // the rest of the line is a comment: check its bytes
            for (const uint8_t* r = hash; r < le; ++r) {
                uint8_t c = *r;
                if (c == '\r') {
                    if (r + 1 != le || le == end) return -1;
                } else if ((c < 32 && c != '\t') || c >= 127) {
                    return -1;
                }
            }
        }
        if (nt == 0) {
            if (hash) {  // '# layer L' marker?
                const uint8_t* ms[4];
                const uint8_t* me[4];
                int nm = 0;
                const uint8_t* r = hash;
                while (r < le) {
                    if (is_ws(*r)) { ++r; continue; }
                    const uint8_t* s = r;
                    while (r < le && !is_ws(*r)) ++r;
                    if (nm == 4) { nm = 5; break; }
                    ms[nm] = s; me[nm] = r; ++nm;
                }
                if (nm == 3 && me[0] - ms[0] == 1 && me[1] - ms[1] == 5 &&
                    std::memcmp(ms[1], "layer", 5) == 0) {
                    bool digits = true;
                    for (const uint8_t* d = ms[2]; d < me[2]; ++d) digits &= is_dec(*d);
                    if (digits) {
                        uint64_t v;
                        if (!parse_dec(ms[2], me[2], 5, &v) || v > 32767) return -1;
                        cur_layer = (i64)v;
                    }
                }
            }
            p = le + 1;
            continue;
        }
        int k = 0;
        uint8_t c0 = *ts[0];
        i64 has_time = (is_dec(c0) || c0 == '.' || c0 == '+' || c0 == '-') ? 1 : 0;
        if (timed < 0) timed = has_time;
        if (has_time != timed) return -1;
        double t = 0;
        if (has_time) {
            if (!parse_time(ts[0], te[0], &t)) return -1;
            k = 1;
        }
        if (nt - k < 2) return -1;
        i64 ol = te[k] - ts[k];
        uint8_t a0 = ts[k][0] | 32, a1 = ol > 1 ? (ts[k][1] | 32) : 0;
        bool rw = ol == 1 && (a0 == 'r' || a0 == 'w');
        bool ldst = ol == 2 && ((a0 == 'l' && a1 == 'd') || (a0 == 's' && a1 == 't'));
        if (!(rw || ldst) || nt != (rw ? 3 : 2) + k) return -1;
        const uint8_t* as = ts[k + 1];
        const uint8_t* ae = te[k + 1];
        uint64_t a, s = 64;
        if (ae - as > 2 && as[0] == '0' && (as[1] | 32) == 'x') {
            if (!parse_hex(as + 2, ae, &a)) return -1;
        } else if (!parse_dec(as, ae, 19, &a)) {
            return -1;
        }
        if (rw) {
            if (!parse_dec(ts[k + 2], te[k + 2], 10, &s) || s < 1 || s >= ((uint64_t)1 << 32))
                return -1;
        }
        if (a > UINT64_MAX - (s - 1)) return -1;  // runs past the last address
        addr[n] = a;
        size[n] = (uint32_t)s;
        wr[n] = rw ? (a0 == 'w') : (a0 == 's');
        if (has_time) tns[n] = t;
        layer[n] = (int16_t)cur_layer;
        ++n;
        p = le + 1;
    }
    state[0] = cur_layer;
    state[1] = timed;
    return n;
}

}  // extern "C"
