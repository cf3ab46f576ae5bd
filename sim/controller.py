"""The memory controller: queues, refresh, row policy and command issue (a C++ kernel).

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

The loop is ``controller.cpp`` next to this file, compiled once per source/flags hash with the
system C++ compiler (``$CXX``, default ``g++``) into a per-user cache folder (``$PSA_CACHE_DIR``,
else ``$XDG_CACHE_HOME/psa`` or ``~/.cache/psa``) and called through ctypes on the NumPy
tables of ``state.py``. The table column constants are generated from the Python names below
and in ``state.py`` (a ``#define`` prelude), so both sides share one definition.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from . import scheduler as _sched
from . import spec as _spec
from . import state as _state
from .spec import CMDS, REFRESH_MODES, DramSpec
from .state import R_ACTIVE_CYCLES, R_ACTIVE_SINCE, R_OPEN

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

# slots of the scheduling decision (``out``): pick() uses 0-2, _choose 3-7
O_CMD, O_RANK, O_BG, O_BANK, O_REQ = range(3, 8)
N_OUT = 8

CXXFLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-fno-exceptions", "-fno-rtti")
_SOURCE = Path(__file__).with_name("controller.cpp")


def _prelude() -> str:
    """``#define`` lines for every table column and configuration slot the kernel uses."""
    names: dict[str, int] = {}
    for mod in (_state, _spec, _sched, sys.modules[__name__]):
        for k, v in vars(mod).items():
            if k.isupper() and type(v) is int and k != "INF":
                if names.get(k, v) != v:
                    raise RuntimeError(f"kernel constant {k} has two values")
                names[k] = v
    return "".join(f"#define {k} ({v}LL)\n" for k, v in sorted(names.items()))


def cache_dir() -> Path:
    """Per-user folder of compiled kernels: ``$PSA_CACHE_DIR``, else ``$XDG_CACHE_HOME/psa``,
    else ``~/.cache/psa``."""
    d = os.environ.get("PSA_CACHE_DIR")
    if d:
        return Path(d)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "psa"


def _build_key() -> tuple[str, str, Path]:
    """(full source with prelude, compiler, flags) and the library path they hash to."""
    cxx = os.environ.get("CXX", "g++")
    text = _prelude() + _SOURCE.read_text()
    h = hashlib.sha256("\0".join([text, cxx, *CXXFLAGS, sys.platform]).encode()).hexdigest()
    return text, cxx, cache_dir() / f"dram-controller-{h[:16]}.so"


def kernel_path() -> Path:
    """Where the compiled kernel for this source and these flags lives (may not exist yet)."""
    return _build_key()[2]


def compile_kernel(path: Path, text: str, cxx: str, say=None) -> float:
    """Compile ``text`` into the shared library ``path`` (atomically: a temporary file is
    renamed); returns the seconds it took. ``say(msg)`` reports it (default: stderr)."""
    import subprocess
    import tempfile
    import time

    if say is None:
        def say(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)
    say(f"compiling the DRAM kernel (the C++ controller loop; one time, ~2 s) into {path.parent}")
    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        cpp = Path(tmp) / "controller.cpp"
        cpp.write_text(text)
        so = Path(tmp) / path.name
        try:
            r = subprocess.run([cxx, *CXXFLAGS, str(cpp), "-o", str(so)], capture_output=True,
                               text=True)
        except FileNotFoundError:
            raise RuntimeError(f"the DRAM model needs a C++ compiler to build its kernel once: "
                               f"{cxx!r} not found (install g++ or set $CXX)") from None
        if r.returncode != 0:
            raise RuntimeError(f"compiling the DRAM controller kernel failed ({cxx} "
                               f"{' '.join(CXXFLAGS)}):\n{r.stderr[-3000:]}")
        os.replace(so, path)
    dt = time.perf_counter() - t0
    say(f"DRAM kernel ready in {dt:.1f} s")
    return dt


_LIB = None


def kernel(say=None):
    """The loaded kernel library (compiled first if this source has never been built)."""
    global _LIB
    if _LIB is None:
        text, cxx, path = _build_key()
        if not path.exists():
            compile_kernel(path, text, cxx, say)
        lib = ctypes.CDLL(str(path))
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        lib.psa_run.restype = i64
        lib.psa_run.argtypes = [i64, i64, i64] + [ptr] * 11
        lib.psa_apply_timing.restype = None
        lib.psa_apply_timing.argtypes = [i64] * 6 + [ptr] * 3
        lib.psa_ready_at.restype = i64
        lib.psa_ready_at.argtypes = [i64] * 5 + [ptr] * 2 + [i64] * 5
        lib.psa_parse_trace.restype = i64
        lib.psa_parse_trace.argtypes = [ctypes.c_char_p, i64, i64, i64] + [ptr] * 6
        _LIB = lib
    return _LIB


def _p(a: np.ndarray, name: str) -> int:
    """The data address of int64 table ``a`` (C-contiguous: the kernel indexes it flat)."""
    if a.dtype != np.int64 or not a.flags.c_contiguous:
        raise TypeError(f"controller table {name} must be a C-contiguous int64 array, got "
                        f"{a.dtype} {'C' if a.flags.c_contiguous else 'strided'}")
    return a.ctypes.data


def run(stop_burst: int, cfg: np.ndarray, rules: np.ndarray, req: np.ndarray, nxt: np.ndarray,
        bank: np.ndarray, rank: np.ndarray, chan: np.ndarray, qs: np.ndarray, heap: np.ndarray,
        scal: np.ndarray, log: np.ndarray) -> int:
    """Simulate until every burst is served, or until burst ``stop_burst`` has been admitted
    (to report progress); state lives in the arrays, so calling again resumes. Returns the
    memory clock (cycles)."""
    n = req.shape[0]
    if n == 0:
        return int(scal[_state.S_NOW])
    tables = dict(cfg=cfg, rules=rules, req=req, nxt=nxt, bank=bank, rank=rank, chan=chan,
                  qs=qs, heap=heap, scal=scal, log=log)
    ptrs = [_p(a, k) for k, a in tables.items()]
    return int(kernel().psa_run(int(stop_burst), n, qs.shape[2], *ptrs))


def _apply_timing(now: int, cmd: int, ch: int, fr: int, fg: int, fb: int, cfg: np.ndarray,
                  rules: np.ndarray, nxt: np.ndarray) -> None:
    """Push the earliest legal issue time of every command ``cmd`` constrains (the kernel's
    rule machinery, for tests)."""
    kernel().psa_apply_timing(int(now), int(cmd), int(ch), int(fr), int(fg), int(fb),
                              _p(cfg, "cfg"), _p(rules, "rules"), _p(nxt, "nxt"))


def watermarks(high: float, low: float, depth: int) -> tuple[int, int]:
    """Write-drain thresholds as integers ``(hi, lo)``: drain starts when the write queue holds
    more than ``hi`` and stops below ``lo``. Ramulator compares the queue size with
    ``high * depth`` and ``low * depth`` in single precision (``size < 0.2f * 32`` = 6.4: it
    drains to 6), so the fractions are rounded as float32 products."""
    hi = float(np.float32(high) * np.float32(depth))
    lo = float(np.float32(low) * np.float32(depth))
    return int(np.floor(hi)), int(np.ceil(lo))


def refresh_config(cfg: np.ndarray, spec: DramSpec) -> None:
    """Fill the bank-set refresh slots of the configuration vector ``cfg`` for ``spec``."""
    cfg[K_REFMODE] = REFRESH_MODES.index(spec.refresh_mode)
    cfg[K_NSETS] = spec.refresh_sets
    cfg[K_SETSIZE] = len(spec.refresh_set_banks(0))
    cfg[K_NREFSB] = max(spec.timing.nREFI // spec.refresh_sets, 1)
    cfg[K_NRFCSB] = spec.timing.nRFCSB


def close_active_time(now: int, rank: np.ndarray) -> None:
    """Count active-standby time up to ``now`` for ranks with open banks."""
    open_ = rank[:, R_OPEN] > 0
    rank[open_, R_ACTIVE_CYCLES] += now - rank[open_, R_ACTIVE_SINCE]
    rank[open_, R_ACTIVE_SINCE] = now
