"""DRAM model speed: simulated requests per second on one core.

For each preset (ddr4-2400, hbm2) and pattern (sequential / uniform random 64-byte reads),
simulates an N-request trace (default 1M) once to warm the numba cache, then times it.
Reports wall-clock and process CPU time (the machine may be shared: CPU time is the fairer
single-core figure), simulated cycles and achieved bandwidth.

Writes JSON (default bench/results/dram_speed.json) and prints a table.
Reference: Ramulator 2.1 (C++) runs about 250k requests/s sequential and 160k random on a
DDR4 stream on this machine class.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from psa.golden.trace import AccessTrace
from psa.sim import load_preset, simulate

ROOT = Path(__file__).resolve().parents[1]
SEED = 7


def make_trace(pattern: str, n: int, capacity: int) -> AccessTrace:
    if pattern == "sequential":
        return AccessTrace(np.arange(n, dtype=np.uint64) * 64, 64)
    rng = np.random.default_rng(SEED)
    return AccessTrace(rng.integers(0, capacity // 64, n).astype(np.uint64) * 64, 64)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--requests", type=int, default=1_000_000)
    ap.add_argument("--presets", default="ddr4-2400,hbm2")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dram_speed.json")
    args = ap.parse_args(argv)

    simulate(make_trace("random", 2000, 1 << 30), "ddr4-2400")  # load/compile the kernel
    rows = []
    for preset in args.presets.split(","):
        spec = load_preset(preset)
        for pattern in ("sequential", "random"):
            trace = make_trace(pattern, args.requests, spec.org.capacity_bytes)
            w0, c0 = time.perf_counter(), time.process_time()
            s = simulate(trace, spec)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            rows.append({
                "preset": preset, "pattern": pattern, "requests": args.requests,
                "wall_s": wall, "cpu_s": cpu, "requests_per_s_wall": args.requests / wall,
                "requests_per_s_cpu": args.requests / cpu, "cycles": s.cycles,
                "bandwidth_fraction": s.bandwidth_fraction, "row_hit_rate": s.row_hit_rate,
            })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                    "python": platform.python_version(), "seed": SEED,
                                    "results": rows}, indent=2) + "\n")
    table = Table(title=f"DRAM model speed, {args.requests:,} 64 B reads per run "
                  "(default mapping MOP4CLXOR, FR-FCFS, refresh on)", title_justify="left")
    for col in ("preset", "pattern", "req/s (CPU)", "req/s (wall)", "cycles", "% of peak",
                "row hits"):
        table.add_column(col, justify="right" if col not in ("preset", "pattern") else "left",
                         no_wrap=True)
    for r in rows:
        table.add_row(r["preset"], r["pattern"], f"{r['requests_per_s_cpu'] / 1e3:,.0f}k",
                      f"{r['requests_per_s_wall'] / 1e3:,.0f}k", f"{r['cycles']:,}",
                      f"{100 * r['bandwidth_fraction']:.1f}%", f"{100 * r['row_hit_rate']:.1f}%")
    Console().print(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
