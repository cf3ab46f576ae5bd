"""Sequential-stream and random bandwidth of every built-in DRAM preset, as a fraction of peak.

For each preset: sequential 64-byte reads (``stream``) and uniform random 64-byte reads over
the whole capacity (``random``) through the default controller (FR-FCFS, open page,
MOP4CLXOR, 32-entry read/write queues per channel, refresh on), plus the stream without
refresh and with 64-entry queues to show what limits it; ``--mappings`` adds the stream under
every address mapping. ``--per-bus N`` sets the 64-byte reads per data bus (channel, or
pseudo-channel on HBM): the trace is ``N * data buses`` requests long.

``--ramulator SRC`` (Ramulator 2.1's ``src`` folder, its Python package in ``SRC/python``)
also runs Ramulator 2.1 on one DDR5-4800 sub-channel (DDR5_16Gb_x8 + DDR5_4800AN, all-bank
refresh) and one HBM3 channel (HBM3_4Gb + HBM3_6400Mbps, per-bank refresh), FR-FCFS, open
page, 32-entry queues, against ours (``ddr5-4800-ab`` with Ramulator's tFAW of 49 cycles, and
``hbm3``, one channel, ``frfcfs-ramulator``) on the same sequential and random traces.

Writes JSON (default bench/results/dram_presets.json) and prints a table::

    python bench/dram_presets.py [--per-bus 25000] [--presets ddr5-4800,hbm3] [--mappings]
                                 [--ramulator /path/to/ramulator2] [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
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


_RAMULATOR_CONFIG = """
import ramulator
fe = ramulator.frontend.LoadStoreTrace(clock_ratio=1, path={trace!r})
dram = ramulator.dram.{std}(org_preset={org!r}, timing_preset={timing!r}{extra})
ctrl = ramulator.controller.{ctrl}(dram=dram, scheduler=ramulator.scheduler.FRFCFS(),
    refresh_manager=ramulator.refresh_manager.{refresh}(), row_policy=ramulator.row_policy.Open(),
    addr_mapper=ramulator.addr_mapper.{mapping}())
mem = ramulator.memory_system.GenericDRAM(clock_ratio=1, controllers=[ctrl],
    channel_mapper=ramulator.channel_mapper.CacheLineInterleave())
sim = ramulator.Simulation(fe, mem)
sim.run()
c = sim.stats["memory_system"]["controller"]
print("RESULT", c["cycles"], c["avg_read_latency"], c["total_throughput_MBps"])
"""

# (our preset, Ramulator standard, org, timing, extra args, controller, refresh manager,
#  Ramulator ticks per memory cycle, access bytes)
_RAMULATOR_CASES = {
    "ddr5-4800": ("ddr5-4800-ab", "DDR5", "DDR5_16Gb_x8", "DDR5_4800AN", ", rank=1",
                  "GenericDDR", "AllBank", 1, 64),
    "hbm3": ("hbm3", "HBM3", "HBM3_4Gb", "HBM3_6400Mbps", "", "HBM34", "HBM34PerBankRefresh",
             2, 32),
}


def ramulator_side_by_side(src: Path, n: int) -> list[dict]:
    """Ramulator 2.1 and ours on one channel, sequential and random reads (``n`` accesses)."""
    rows = []
    env = dict(os.environ, PYTHONPATH=str(src / "python"))
    with tempfile.TemporaryDirectory() as work:
        for case, (ours, std, org, timing, extra, ctrl, refresh, ticks, size) in \
                _RAMULATOR_CASES.items():
            spec = load_preset(ours).with_overrides(channels=1)
            if case == "ddr5-4800":  # Ramulator 2 uses tFAW = 20 ns
                spec = dataclasses.replace(spec, timing=dataclasses.replace(spec.timing,
                                                                            nFAW=49))
            cap = spec.org.capacity_bytes
            rng = np.random.default_rng(SEED)
            for pattern in ("sequential", "random"):
                if pattern == "sequential":
                    addr = np.arange(n, dtype=np.uint64) * np.uint64(size)
                else:
                    addr = rng.integers(0, cap // size, n).astype(np.uint64) * np.uint64(size)
                for mapping in ("MOP4CLXOR", "RoBaRaCoCh"):
                    trace = Path(work) / f"{case}-{pattern}.trace"
                    trace.write_text("".join(f"LD 0x{int(a):x}\n" for a in addr))
                    cfg = Path(work) / "cfg.py"
                    cfg.write_text(_RAMULATOR_CONFIG.format(
                        trace=str(trace), std=std, org=org, timing=timing, extra=extra,
                        ctrl=ctrl, refresh=refresh, mapping=mapping))
                    res = subprocess.run([sys.executable, str(cfg)], env=env, text=True,
                                         capture_output=True, timeout=600)
                    line = [x for x in res.stdout.splitlines() if x.startswith("RESULT")]
                    if res.returncode or not line:
                        raise SystemExit(f"ramulator failed ({case}, {pattern}):\n"
                                         f"{res.stderr[-2000:]}")
                    _, cyc, lat, _ = line[0].split()
                    s = simulate(AccessTrace(addr, size), spec, mapping=mapping,
                                 scheduler="frfcfs-ramulator")
                    rows.append({"case": case, "ours": ours, "pattern": pattern,
                                 "mapping": mapping, "ramulator_cycles": int(cyc) / ticks,
                                 "ours_cycles": s.cycles,
                                 "ramulator_fraction": n * size / (int(cyc) / ticks)
                                 / spec.peak_bytes_per_cycle,
                                 "ours_fraction": s.bandwidth_fraction,
                                 "ramulator_latency": float(lat) / ticks,
                                 "ours_latency": s.read_latency_cycles["mean"]})
                    r = rows[-1]
                    print(f"{case:<10}{pattern:<11}{mapping:<11} ramulator "
                          f"{r['ramulator_fraction']:.3f} ours {r['ours_fraction']:.3f} "
                          f"(cycles {r['ours_cycles'] / r['ramulator_cycles'] - 1:+.2%}, "
                          f"mean read latency {r['ramulator_latency']:.1f} / "
                          f"{r['ours_latency']:.1f})", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-bus", type=int, default=25_000,
                    help="64-byte reads per data bus (default 25000)")
    ap.add_argument("--presets", default="", help="comma-separated preset names (default all)")
    ap.add_argument("--mappings", action="store_true",
                    help="also the stream under every address mapping")
    ap.add_argument("--ramulator", type=Path, default=None,
                    help="Ramulator 2.1 src folder: also run it side by side (one channel)")
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
    side = ramulator_side_by_side(a.ramulator, 64_000) if a.ramulator else []
    a.json.write_text(json.dumps({"per_bus": a.per_bus, "results": rows, "ramulator": side},
                                 indent=1) + "\n")
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
