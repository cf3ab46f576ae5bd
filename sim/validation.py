"""Validation against published figures and hand-computed bounds.

Run ``python -m psa.sim.validation`` (``-n`` scales the 1M-request streams down). Anchors:

1. Ramulator 2.1, DDR4_8Gb_x8 at DDR4_2400R, 1 channel, 1 rank, FR-FCFS, open row,
   RoBaRaCoCh, refresh on, 32-entry read queue, 1M sequential 64-byte reads: 5,352,993 memory
   cycles, 11.96 bytes per cycle (75% of peak), 99.1% row hits.
2. The same stream with Ramulator's MOP4CLXOR mapping: 93% of peak (our default mapping; the
   issue asks >= 90%).
3. Uniform random 64-byte reads cannot beat one ACT per read at 4 ACTs per tFAW per rank
   (pseudo-channel), one per tRRD_S, and on HBM2 three row-bus cycles (2-cycle ACT + PRE)
   per read per channel.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psa.golden.trace import AccessTrace

from .memory_system import simulate
from .spec import DramSpec, load_preset

RAMULATOR_CYCLES = 5_352_993
RAMULATOR_BYTES_PER_CYCLE = 11.96
RAMULATOR_ROW_HITS = 0.991
RAMULATOR_MOP4CLXOR_PEAK = 0.93
SEED = 1


@dataclass
class Check:
    name: str
    metric: str
    reference: float
    measured: float
    passed: bool
    note: str


def random_read_bound(spec: DramSpec) -> float:
    """Upper bound on the fraction of peak for uniform random single-burst reads."""
    t, o = spec.timing, spec.org
    acts_per_cycle = o.channels * o.ranks * min(4 / t.nFAW, 1 / t.nRRDS)
    # each read costs 3 command-bus cycles per channel: ACT + PRE + RD on DDR4's single bus,
    # a 2-cycle ACT + PRE on HBM2's row bus
    acts_per_cycle = min(acts_per_cycle, o.channels / 3)
    return acts_per_cycle * o.burst_bytes / spec.peak_bytes_per_cycle


def run_validation(n: int = 1_000_000, progress: bool = False) -> list[Check]:
    ddr4 = load_preset("ddr4-2400")
    seq = AccessTrace(np.arange(n, dtype=np.uint64) * 64, 64)
    scale = n / 1_000_000
    out = []
    s = simulate(seq, ddr4, scheduler="frfcfs-ramulator", mapping="RoBaRaCoCh", read_queue=32,
                 refresh=True, progress=progress)
    ref = RAMULATOR_CYCLES * scale
    out.append(Check("Ramulator 2.1 anchor (RoBaRaCoCh)", "cycles", ref, s.cycles,
                     abs(s.cycles - ref) / ref <= 0.05, f"{100 * (s.cycles / ref - 1):+.2f}%"))
    out.append(Check("", "bytes/cycle", RAMULATOR_BYTES_PER_CYCLE, s.bytes_per_cycle,
                     abs(s.bytes_per_cycle / RAMULATOR_BYTES_PER_CYCLE - 1) <= 0.05,
                     f"{100 * s.bandwidth_fraction:.1f}% of peak"))
    out.append(Check("", "row hit rate", RAMULATOR_ROW_HITS, s.row_hit_rate,
                     abs(s.row_hit_rate - RAMULATOR_ROW_HITS) <= 0.01, ""))
    s = simulate(seq, ddr4, scheduler="frfcfs-ramulator", mapping="MOP4CLXOR", progress=progress)
    out.append(Check("Sequential, MOP4CLXOR (default)", "fraction of peak",
                     RAMULATOR_MOP4CLXOR_PEAK, s.bandwidth_fraction, s.bandwidth_fraction >= 0.90,
                     "issue: >= 0.90; Ramulator 2.1: 0.93"))
    for preset in ("ddr4-2400", "hbm2", "hbm2-legacy"):
        spec = load_preset(preset)
        rng = np.random.default_rng(SEED)
        m = max(n // 4, 10_000)
        trace = AccessTrace(rng.integers(0, spec.org.capacity_bytes // 64, m)
                            .astype(np.uint64) * 64, 64)
        s = simulate(trace, spec, progress=progress)
        bound = random_read_bound(spec)
        out.append(Check(f"Random reads, {preset}", "fraction of peak", bound,
                         s.bandwidth_fraction, s.bandwidth_fraction <= bound + 1e-9,
                         f"hand bound (tFAW{', row bus' if spec.dual_command_bus else ''}); "
                         f"{100 * s.bandwidth_fraction / bound:.0f}% of it"))
        if preset != "ddr4-2400":
            s = simulate(AccessTrace(np.arange(n // 2, dtype=np.uint64) * 64, 64), spec,
                         progress=progress)
            out.append(Check(f"Sequential, {preset}", "fraction of peak", 0.90,
                             s.bandwidth_fraction, s.bandwidth_fraction >= 0.90, ">= 0.90"))
    return out


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description="Validate the DRAM model against its anchors.")
    ap.add_argument("-n", "--requests", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    checks = run_validation(args.requests, progress=True)
    table = Table(title=f"DRAM model validation ({args.requests:,}-request streams)",
                  title_justify="left")
    for col in ("check", "metric", "reference", "measured", "ok", "note"):
        table.add_column(col, justify="right" if col in ("reference", "measured") else "left")
    for c in checks:
        fmt = "{:,.0f}" if c.metric == "cycles" else "{:.3f}"
        table.add_row(c.name, c.metric, fmt.format(c.reference), fmt.format(c.measured),
                      "yes" if c.passed else "NO", c.note)
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps([c.__dict__ for c in checks], indent=2) + "\n")


if __name__ == "__main__":
    main()
