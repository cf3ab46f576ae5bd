"""Sequential-stream and random bandwidth of every built-in DRAM preset, as a fraction of peak.

For each preset: sequential 64-byte reads (``stream``) and uniform random 64-byte reads over
the whole capacity (``random``) through the default controller (FR-FCFS, open page,
MOP4CLXOR, 32-entry read/write queues per channel, refresh on), plus the stream without
refresh and with 64-entry queues to show what limits it; ``--mappings`` adds the stream under
every address mapping. ``--per-bus N`` sets the bursts per data bus (channel, or
pseudo-channel on HBM): the trace is ``N * data buses`` bursts long.

Writes JSON (default bench/results/dram_presets.json) and prints a table::

    python bench/dram_presets.py [--per-bus 25000] [--presets ddr5-4800,hbm3] [--mappings]
                                 [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from psa.golden.trace import AccessTrace
from psa.sim import list_presets, load_preset, simulate
from psa.sim.addr_map import MAPPINGS

SEED = 20240611


def measure(name: str, per_bus: int, mappings: bool = False) -> dict:
    """Bandwidth fractions of preset ``name`` (see the module docstring)."""
    spec = load_preset(name)
    n = per_bus * spec.data_buses
    seq = AccessTrace(np.arange(n, dtype=np.uint64) * 64, 64)
    rng = np.random.default_rng(SEED)
    rnd = AccessTrace(rng.integers(0, spec.org.capacity_bytes // 64, n).astype(np.uint64) * 64,
                      64)
    t0 = time.perf_counter()
    out = {"preset": name, "standard": spec.standard, "refresh_mode": spec.refresh_mode,
           "peak_GBps": spec.peak_GBps, "requests": n}
    for key, trace, kw in (("stream", seq, {}), ("random", rnd, {}),
                           ("stream_no_refresh", seq, {"refresh": False}),
                           ("stream_queue64", seq, {"read_queue": 64})):
        s = simulate(trace, spec, **kw)
        out[key] = s.bandwidth_fraction
        out[key + "_GBps"] = s.bandwidth_GBps
        if key in ("stream", "random"):
            out[key + "_row_hit_rate"] = s.row_hit_rate
            out[key + "_pJ_per_bit"] = s.energy_nJ * 1000.0 / (s.dram_bytes * 8)
    if mappings:
        out["stream_by_mapping"] = {m: simulate(seq, spec, mapping=m).bandwidth_fraction
                                    for m in MAPPINGS}
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-bus", type=int, default=25_000,
                    help="bursts per data bus (default 25000)")
    ap.add_argument("--presets", default="", help="comma-separated preset names (default all)")
    ap.add_argument("--mappings", action="store_true",
                    help="also the stream under every address mapping")
    ap.add_argument("--json", type=Path, default=Path("bench/results/dram_presets.json"))
    a = ap.parse_args(argv)
    if a.per_bus < 100:
        ap.error(f"--per-bus must be >= 100, got {a.per_bus}")
    names = [p for p in a.presets.split(",") if p] or sorted(list_presets())
    a.json.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    head = (f"{'preset':<16}{'standard':<8}{'refresh':<10}{'peak GB/s':>10}{'stream':>8}"
            f"{'random':>8}{'no ref':>8}{'queue 64':>9}{'pJ/bit':>8}")
    print(head)
    for name in names:
        r = measure(name, a.per_bus, a.mappings)
        rows.append(r)
        print(f"{name:<16}{r['standard']:<8}{r['refresh_mode']:<10}{r['peak_GBps']:>10.1f}"
              f"{r['stream']:>8.3f}{r['random']:>8.3f}{r['stream_no_refresh']:>8.3f}"
              f"{r['stream_queue64']:>9.3f}{r['stream_pJ_per_bit']:>8.2f}", flush=True)
        if a.mappings:
            print("    stream by mapping: " + ", ".join(
                f"{m} {v:.3f}" for m, v in r["stream_by_mapping"].items()), flush=True)
    a.json.write_text(json.dumps({"per_bus": a.per_bus, "results": rows}, indent=1) + "\n")
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
