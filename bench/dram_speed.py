"""DRAM model speed, whole process: ``psa dram`` from the shell, as a user runs it.

For each preset (ddr4-2400, hbm2), request count (200k, 1M) and pattern (sequential, uniform
random 64-byte reads), writes one trace in the Ramulator-style text format (``LD 0x...``, read
by both simulators) and as a binary ``.npy`` trace, then times separate processes on the same
trace, one after the other on the same machine:

- ``psa`` on the text trace and on the ``.npy`` trace (this checkout), and on multi-channel
  presets also with ``--jobs`` processes (per-channel mode);
- ``base``: ``psa dram`` of an older commit (``--base-commit``, checked out with
  ``git worktree`` and run from there), on the text trace;
- ``ramulator``: Ramulator 2.1 (``--ramulator DIR``, a checkout with its Python build;
  default ``$RAMULATOR2`` if set) with the same organisation, FR-FCFS, open page, all-bank
  refresh, RoBaRaCoCh mapping and 32-entry queues.

Every tool is run once on a small trace first (compiled caches loaded, so the timed runs are
warm). Reported: wall time, CPU time (user + sys of the process and its children), peak RSS,
requests/s of wall time and the ratios, and whether issue 21's floors hold (whole process >= 2x
Ramulator 2.1's requests/s, >= 4x the base commit's, on every row). ``--first-run`` also times a
cold first ``psa dram`` (empty kernel cache: it compiles the C++ controller loop) and the next,
warm one. ``--big N`` instead times one run of an N-request
random ``.npy`` trace on a multi-channel HBM stack with ``--jobs`` processes (peak RSS of every
process).

Writes JSON (default bench/results/dram_speed.json) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from psa.golden.trace import TRACE_DTYPE, open_binary_trace
from psa.sim import load_preset

ROOT = Path(__file__).resolve().parents[1]
SEED = 7
PACKAGES = ("golden", "hw", "verif", "flows", "sim", "models", "policies", "reports")

def make_addresses(pattern: str, n: int, capacity: int, seed: int = SEED) -> np.ndarray:
    """Byte addresses of ``n`` 64-byte reads: a sequential stream or uniform random lines."""
    if pattern == "sequential":
        return np.arange(n, dtype=np.uint64) * np.uint64(64)
    rng = np.random.default_rng(seed)
    return rng.integers(0, capacity // 64, n).astype(np.uint64) * np.uint64(64)


def write_text(path: Path, addr: np.ndarray) -> None:
    """``LD 0x...`` lines (the format Ramulator's LoadStoreTrace and ``psa dram`` both read)."""
    with open(path, "w") as f:
        for a in range(0, len(addr), 1 << 18):
            f.write("".join(f"LD 0x{x:x}\n" for x in addr[a:a + (1 << 18)].tolist()))


def write_npy(path: Path, addr: np.ndarray) -> None:
    rec = np.zeros(len(addr), TRACE_DTYPE)
    rec["addr"], rec["size"], rec["layer"], rec["plane"] = addr, 64, -1, 255
    np.save(path, rec)


def timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None,
          timeout: float | None = None) -> dict:
    """Run ``cmd`` to completion: wall and CPU seconds, peak RSS (MiB) of it and its
    children (``wait4`` of this one process); raises with the output tail if it fails."""
    import threading

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        killer = threading.Timer(timeout, p.kill) if timeout else None
        if killer:
            killer.start()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        if killer:
            killer.cancel()
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{stdout[-2000:]}\n"
                           f"{stderr[-2000:]}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "max_rss_MiB": ru.ru_maxrss / 1024,
            "stdout": stdout, "stderr": stderr}


def base_checkout(commit: str) -> dict:
    """Environment running ``psa`` of ``commit``: a git worktree plus a folder whose ``psa``
    package links to it (so the installed checkout is not imported)."""
    tree = Path(tempfile.gettempdir()) / f"psa-base-{commit[:12]}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit],
                       check=True, capture_output=True)
    pkg = tree.parent / f"psa-base-{commit[:12]}-pkg"
    if not (pkg / "psa").exists():
        shutil.copytree(tree / "psa", pkg / "psa")
        for d in PACKAGES:
            if (tree / d).exists():
                (pkg / "psa" / d).symlink_to(tree / d)
    return {**os.environ, "PYTHONPATH": str(pkg)}


def psa_cmd(trace: Path, preset: str, out: Path) -> list[str]:
    return [sys.executable, "-c", "from psa.cli import main; main()", "dram", str(trace),
            "--preset", preset, "--mapping", "RoBaRaCoCh", "--json", str(out)]


def find_ramulator(arg: str | None) -> tuple[str | None, str]:
    """A Ramulator 2.1 checkout with its built Python module (Ramulator 2.1 is driven from
    Python): ``--ramulator``, else ``$RAMULATOR2``."""
    if arg:
        return arg, "given with --ramulator"
    env = os.environ.get("RAMULATOR2")
    if env:
        if Path(env).is_dir():
            return env, "from $RAMULATOR2"
        return None, f"$RAMULATOR2={env} is not a directory"
    return None, "no Ramulator 2.1 (no --ramulator, $RAMULATOR2 unset)"


MATRIX_ARGS = ["--channels", "1", "--scheduler", "frfcfs-ramulator", "--mapping", "RoBaRaCoCh",
               "--page-policy", "open", "--refresh", "on", "--queue-depth", "32"]


def speed_table(args, console: Console) -> dict:
    """The matrix configuration of ``psa.sim.validation`` (one channel, Ramulator's FR-FCFS
    bookkeeping, RoBaRaCoCh, open page, refresh, 32-entry queues) on one-burst requests, so that
    Ramulator 2.1 simulates the same system on the same requests."""
    from psa.golden.trace import AccessTrace
    from psa.sim.validation import matrix_spec, matrix_trace, run_ramulator, write_ramulator_trace

    work = Path(tempfile.mkdtemp(prefix="dram-speed-"))
    base_env = base_checkout(args.base_commit) if args.base_commit else None
    ram, ram_note = find_ramulator(args.ramulator)
    if ram is None:
        console.print(f"[yellow]Ramulator columns skipped: {ram_note}[/]")
    small = work / "warm.trace"
    AccessTrace(make_addresses("random", 2000, 1 << 28), 64).write(small)
    for preset in args.presets:
        timed(psa_cmd(small, preset, work / "w.json") + MATRIX_ARGS)
        if base_env:
            _base_run(small, preset, work, base_env)
    rows = []
    for preset in args.presets:
        spec = matrix_spec(preset)
        for n in args.sizes:
            for pattern in args.patterns:
                trace = matrix_trace(pattern, spec, n)
                text, npy = work / f"{pattern}_{n}.trace", work / f"{pattern}_{n}.npy"
                trace.write(text)
                trace.write(npy)
                row = {"preset": preset, "pattern": pattern, "requests": n,
                       "burst_bytes": spec.org.burst_bytes}
                for name, path, out in (("psa", text, "a.json"), ("psa_npy", npy, "b.json")):
                    r = timed(psa_cmd(path, preset, work / out) + MATRIX_ARGS)
                    row[name] = {k: r[k] for k in ("wall_s", "cpu_s", "max_rss_MiB")}
                ours = json.loads((work / "a.json").read_text())
                row["cycles"] = ours["cycles"]
                assert json.loads((work / "b.json").read_text())["cycles"] == ours["cycles"]
                if base_env:
                    row["base"] = _base_run(text, preset, work, base_env)
                if ram:
                    lst = work / f"{pattern}_{n}.ldst"
                    write_ramulator_trace(trace, lst)
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    t0 = time.perf_counter()
                    st = run_ramulator(ram, preset, lst)
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    row["ramulator"] = {
                        "wall_s": time.perf_counter() - t0,
                        "cpu_s": (after.ru_utime - before.ru_utime)
                        + (after.ru_stime - before.ru_stime), "cycles": st.get("cycles")}
                    lst.unlink()
                rows.append(row)
                console.print(_line(row), highlight=False)
                text.unlink()
                npy.unlink()
    shutil.rmtree(work, ignore_errors=True)
    return {"results": rows, "ramulator": ram, "ramulator_note": ram_note,
            "base_commit": args.base_commit, "config": " ".join(MATRIX_ARGS)}


def _base_run(trace: Path, preset: str, work: Path, env: dict) -> dict | None:
    """The older commit on the same trace; a preset it does not know runs from our TOML file
    (None if it cannot read that either)."""
    for p in (preset, str(ROOT / "sim" / "presets" / f"{preset}.toml")):
        try:
            # cwd outside the checkout: `python -c` puts the cwd first on sys.path, and this
            # checkout's psa/ would shadow the base commit's
            r = timed(psa_cmd(trace, p, work / "c.json") + MATRIX_ARGS, env=env, cwd=work)
        except RuntimeError:
            continue
        out = {k: r[k] for k in ("wall_s", "cpu_s", "max_rss_MiB")}
        out["cycles"] = json.loads((work / "c.json").read_text())["cycles"]
        out["preset"] = p
        return out
    return None


def _line(row: dict) -> str:
    s = f"{row['preset']} {row['pattern']} {row['requests']:,}: psa {row['psa']['wall_s']:.2f} s"
    for k in ("psa_npy", "psa_jobs", "base", "ramulator"):
        if k in row:
            s += f", {k} {row[k]['wall_s']:.2f} s"
    return s


def first_run(args, console: Console) -> dict:
    """A cold first ``psa dram`` (empty kernel cache folder), then a warm one."""
    work = Path(tempfile.mkdtemp(prefix="dram-first-"))
    trace = work / "t.trace"
    write_text(trace, make_addresses("random", 200_000, 1 << 30))
    env = {**os.environ, "PSA_CACHE_DIR": str(work / "kernel-cache")}
    cold = timed(psa_cmd(trace, "ddr4-2400", work / "o.json"), env=env)
    warm = timed(psa_cmd(trace, "ddr4-2400", work / "o.json"), env=env)
    shutil.rmtree(work, ignore_errors=True)
    said = [ln for ln in cold["stderr"].splitlines() if "kernel" in ln]
    console.print(f"first run {cold['wall_s']:.1f} s wall ({cold['cpu_s']:.1f} s CPU), "
                  f"then {warm['wall_s']:.2f} s; it said: {said}", highlight=False)
    return {"first_run": {k: cold[k] for k in ("wall_s", "cpu_s", "max_rss_MiB")},
            "warm_run": {k: warm[k] for k in ("wall_s", "cpu_s", "max_rss_MiB")},
            "messages": said}


def big_run(args, console: Console) -> dict:
    """One run of ``args.big`` random 64-byte reads (binary trace) with ``args.jobs``."""
    spec = load_preset(args.big_preset)
    if args.big_channels:
        spec = spec.with_overrides(channels=args.big_channels)
    work = Path(tempfile.mkdtemp(prefix="dram-big-", dir=args.big_dir))
    path = work / "big.npy"
    # written by another process: a child's peak RSS starts from its parent's at fork
    gen = [sys.executable, __file__, "--make-big", str(path), "--big", str(args.big),
           "--big-preset", args.big_preset]
    if args.big_channels:
        gen += ["--big-channels", str(args.big_channels)]
    subprocess.run(gen, check=True)
    cmd = [sys.executable, "-c", "from psa.cli import main; main()", "dram", str(path),
           "--preset", args.big_preset, "--jobs", str(args.jobs), "--json",
           str(work / "o.json")]
    if args.big_channels:
        cmd += ["--channels", str(args.big_channels)]
    try:
        r = timed(cmd, timeout=args.big_timeout)
    finally:
        path.unlink()
    out = json.loads((work / "o.json").read_text())
    shutil.rmtree(work, ignore_errors=True)
    res = {"preset": args.big_preset, "channels": spec.org.channels, "ranks": spec.org.ranks,
           "requests": args.big, "jobs": args.jobs, "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
           "max_rss_MiB": r["max_rss_MiB"], "requests_per_s": args.big / r["wall_s"],
           "bursts": out["bursts"], "cycles": out["cycles"],
           "bandwidth_fraction": out["bandwidth_fraction"]}
    console.print(f"{args.big:,} requests on {args.big_preset} ({spec.org.channels} ch x "
                  f"{spec.org.ranks}), --jobs {args.jobs}: {r['wall_s']:.0f} s wall, "
                  f"{r['cpu_s']:.0f} s CPU, peak RSS {r['max_rss_MiB']:.0f} MiB (largest "
                  f"process), {res['requests_per_s'] / 1e3:.0f}k requests/s", highlight=False)
    return {"big": res}


def make_big(path: Path, n: int, spec) -> None:
    """``n`` uniform random 64-byte reads as a binary trace, written piece by piece."""
    rec = open_binary_trace(path, n)
    rng = np.random.default_rng(SEED)
    step = 1 << 22
    for a in range(0, n, step):
        k = min(step, n - a)
        rec["addr"][a:a + k] = rng.integers(0, spec.org.capacity_bytes // 64, k) * 64
    rec["size"], rec["write"], rec["layer"], rec["plane"] = 64, 0, -1, 255
    rec.flush()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="200000,1000000",
                    type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--presets", default="ddr4-2400,hbm2-ramulator", type=lambda s: s.split(","))
    ap.add_argument("--patterns", default="sequential,random", type=lambda s: s.split(","))
    ap.add_argument("--base-commit", default=None,
                    help="Also time psa dram of this commit (e.g. the one before a change).")
    ap.add_argument("--ramulator", default=None,
                    help="Ramulator 2.1 checkout (holding python/ramulator with its module).")
    ap.add_argument("--first-run", action="store_true",
                    help="Also time a cold first run (empty kernel cache) and a warm one.")
    ap.add_argument("--big", type=int, default=0,
                    help="Only time one run of this many random requests (.npy trace).")
    ap.add_argument("--big-preset", default="hbm3")
    ap.add_argument("--big-channels", type=int, default=None)
    ap.add_argument("--big-dir", default=None, help="Folder for the big trace file.")
    ap.add_argument("--big-timeout", type=float, default=None, help="Give up after this many s.")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--make-big", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.make_big:
        spec = load_preset(args.big_preset)
        if args.big_channels:
            spec = spec.with_overrides(channels=args.big_channels)
        make_big(args.make_big, args.big, spec)
        return
    console = Console(width=max(shutil.get_terminal_size().columns, 150))  # no cut columns
    meta = {"machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "seed": SEED}
    if args.big:
        result = big_run(args, console)
        out = args.out or ROOT / "bench" / "results" / "dram_speed_big.json"
    else:
        result = speed_table(args, console)
        if args.first_run:
            result.update(first_run(args, console))
        out = args.out or ROOT / "bench" / "results" / "dram_speed.json"
        result["floors"] = floors(result["results"])
        console.print(table(result))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, **result}, indent=2) + "\n")
    print(f"wrote {out}")


def table(result: dict) -> Table:
    rows = result["results"]
    has_base = any("base" in r for r in rows)
    has_ram = any("ramulator" in r for r in rows)
    t = Table(title="psa dram, whole process (wall time, same trace and machine; "
              "RoBaRaCoCh, FR-FCFS, open page, refresh on)", title_justify="left")
    has_jobs = any("psa_jobs" in r for r in rows)
    cols = ["preset", "pattern", "requests", "psa text", "psa .npy", "req/s (.npy)"]
    if has_jobs:
        cols += ["psa .npy --jobs"]
    if has_base:
        cols += ["base", "x base (text)", "x base (.npy)"]
    if has_ram:
        cols += ["Ramulator", "x Ramulator"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("preset", "pattern") else "right",
                     no_wrap=True)
    for r in rows:
        n = r["requests"]
        best = min(r["psa"]["wall_s"], r["psa_npy"]["wall_s"])
        cells = [r["preset"], r["pattern"], f"{n:,}", f"{r['psa']['wall_s']:.2f} s",
                 f"{r['psa_npy']['wall_s']:.2f} s", f"{n / r['psa_npy']['wall_s'] / 1e3:,.0f}k"]
        if has_jobs:
            j = r.get("psa_jobs")
            cells += [f"{j['wall_s']:.2f} s" if j else "-"]
        if has_base:
            b = r.get("base")
            cells += [f"{b['wall_s']:.2f} s" if b else "-",
                      f"{b['wall_s'] / r['psa']['wall_s']:.2f}x" if b else "-",
                      f"{b['wall_s'] / r['psa_npy']['wall_s']:.2f}x" if b else "-"]
        if has_ram:
            m = r.get("ramulator")
            cells += [f"{m['wall_s']:.2f} s" if m else "-",
                      f"{m['wall_s'] / best:.2f}x" if m else "-"]
        t.add_row(*cells)
    notes = [f"floors: {floors(rows)}"]
    if not has_ram:
        notes.append(f"Ramulator 2.1: not run ({result.get('ramulator_note')})")
    t.caption = "; ".join(notes)
    return t


def floors(rows: list[dict]) -> str:
    """Issue 21's floors over the rows: whole-process requests/s >= 2x Ramulator 2.1's (our
    faster input format) and >= 4x the base commit's (the same text trace, and .npy)."""
    out = []
    ram = [m["wall_s"] / min(r["psa"]["wall_s"], r["psa_npy"]["wall_s"])
           for r in rows if (m := r.get("ramulator"))]
    if ram:
        ok = "met" if min(ram) >= 2 else "NOT met"
        out.append(f"x Ramulator min {min(ram):.2f} (>= 2: {ok})")
    for k, what in (("psa", "text"), ("psa_npy", ".npy")):
        base = [b["wall_s"] / r[k]["wall_s"] for r in rows if (b := r.get("base"))]
        if base:
            out.append(f"x base ({what}) min {min(base):.2f} "
                       f"(>= 4: {'met' if min(base) >= 4 else 'NOT met'})")
    return ", ".join(out) or "no comparison run"


if __name__ == "__main__":
    main()
