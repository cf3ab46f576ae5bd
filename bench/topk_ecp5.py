"""Area, Fmax and throughput of the top-k engine on an ECP5-85k beside the quick-select
engine it replaced (``BEFORE``): the README's table and plot.

For P in {4, 8, 16, 32} (W = 16, N = 1024, unsigned) runs one ``psa sweep`` point each
(:func:`psa.flows.sweep.evaluate_point`): cycles on Verilator (back-to-back packets of
n = 1024, k = 256, median of ``--packets``), ``psa synth`` for the LFE5U-85F and, with
``--verify``, the cocotb bench. One flow for every P: classic ABC mapping to LUT4 only
(``--no-abc9 --no-widelut``), nextpnr's static placer and router1, seed 1, and a clock
target near what the configuration reaches (``TARGET_MHZ``; it only weighs timing in
placement and routing, the figure reported is what was achieved). On HeAP's denser
placement neither router finished from P = 8 on (router1 stalled, router2 kept thousands of
overused wires); on the static placer's, router2 still circles around a few dozen overused
wires but router1 completes (docs/synth.md). ``--timeout`` bounds each tool run; a point whose
routing is cut short keeps nextpnr's post-placement estimate (``fmax_placed_mhz``), cached
for reruns with the same timeout. Results come from the synthesis cache when present, and
the cycles from ``cycles_cache.json`` beside the outputs (keyed by P, packets, seed and the
SHA-256 of the engine's Verilog, so an RTL change measures again): a rerun after the
measurements takes seconds per point; from scratch it takes hours on two cores.

Writes ``sweep.json``, ``sweep.csv``, ``cycles_vs_luts.png``, ``fmax_vs_lanes.png`` and
``pareto.png`` to ``bench/results/topk_ecp5/`` (the README's plot is its ``pareto.png``).

    python bench/topk_ecp5.py [--lanes 4 8 16 32] [--verify] [--timeout 6000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from psa.flows.sweep import SweepOptions, evaluate_point, measure_cycles, write_outputs
from psa.hw.designs import get_design

ROOT = Path(__file__).resolve().parents[1]
WIDTH, MAX_N = 16, 1024
PLACER, ROUTER = "static", "router1"
#: nextpnr clock target per P (MHz): the issue's targets (it only weighs timing in placement).
TARGET_MHZ = {4: 120.0, 8: 120.0, 16: 100.0, 32: 100.0}
#: The quick-select engine this one replaced (README before issue 22, same flow; targets
#: 50/35/25 MHz): cycles per packet (n = 1024, k = 256, median of 20), LUT4, FF, DP16KD,
#: LUT/carry slots placed, post-route Fmax (MHz).
BEFORE = {4: (262, 7388, 5700, 16, 9794, 41.9), 8: (163, 13969, 8493, 28, 17399, 34.9),
          16: (82, 35388, 15765, 56, 47268, 27.4), 32: (51, 95383, 30456, 105, 134621, None)}


def cached_cycles(path: Path, params: dict, options: SweepOptions) -> dict:
    """The Verilator cycle fields of one point (:func:`psa.flows.sweep.measure_cycles`),
    from ``path`` when the same P, packets, seed and Verilog were measured before."""
    verilog = get_design("topk").verilog(**params)
    key = (f"{params['lanes']}:{options.packets}:{options.seed}:"
           f"{hashlib.sha256(verilog.encode()).hexdigest()[:20]}")
    cache = json.loads(path.read_text()) if path.exists() else {}
    if key not in cache:
        cache[key] = measure_cycles("topk", params, options)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cache, indent=1))
    return cache[key]


def _fmt(value, spec: str = ",") -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lanes", type=int, nargs="+", default=sorted(TARGET_MHZ),
                    choices=sorted(TARGET_MHZ))
    ap.add_argument("--packets", type=int, default=20, help="cycle-test packets (default 20)")
    ap.add_argument("--verify", action="store_true", help="also run psa verify per point")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per synthesis tool run (default: none)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "topk_ecp5")
    ap.add_argument("--build-root", type=Path, default=ROOT / "sim_build")
    args = ap.parse_args(argv)

    console = Console(width=None if sys.stdout.isatty() else 160)  # whole table in logs
    rows = []
    for lanes in args.lanes:
        params = {"lanes": lanes, "width": WIDTH, "max_n": MAX_N, "signed": False}
        options = SweepOptions(verify=args.verify, abc9=False, widelut=False, placer=PLACER,
                               router=ROUTER, target_mhz=TARGET_MHZ[lanes],
                               device="ecp5-85k", packets=args.packets,
                               synth_timeout_s=args.timeout, build_root=str(args.build_root))
        with console.status(f"P = {lanes}: cycles, synthesis"
                            f"{', verification' if args.verify else ''}"):
            cycles = cached_cycles(args.out / "cycles_cache.json", params, options)
            row = evaluate_point("topk", params, replace(options, cycles=False)) | cycles
            if row.get("fmax_mhz"):
                row["throughput_meps"] = lanes * row["fmax_mhz"] / row["cycles_per_beat"]
            elif row.get("fmax_placed_mhz"):
                row["throughput_est_meps"] = (lanes * row["fmax_placed_mhz"]
                                              / row["cycles_per_beat"])
        rows.append(row | {"target_mhz": TARGET_MHZ[lanes]})
        console.print(f"P = {lanes}: {row['status']} in {row['elapsed_s']} s"
                      + (f" ({row['error']})" if row.get("error") else ""))

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"design": "topk", "axes": {"lanes": args.lanes}, "width": WIDTH, "max_n": MAX_N,
            "device": "ecp5-85k", "abc9": False, "widelut": False, "placer": PLACER,
            "router": ROUTER, "target_mhz": {p: TARGET_MHZ[p] for p in args.lanes}}
    files = write_outputs(args.out, rows, meta)

    table = Table(title=f"top-k engine, W = {WIDTH}, N = {MAX_N}, LFE5U-85F speed 6")
    for name in ("P", "engine", "cycles/packet", "elements/cycle", "LUT4", "FF", "DP16KD",
                 "slots", "fits", "target MHz", "Fmax MHz", "placed est. MHz", "M elements/s",
                 "per 1k slots", "verified"):
        table.add_column(name, justify="right")
    for r in rows:
        before = BEFORE[r["lanes"]]
        meps_b = None if before[5] is None else MAX_N * before[5] / before[0]
        table.add_row(str(r["lanes"]), "before", str(before[0]), f"{MAX_N / before[0]:.1f}",
                      _fmt(before[1]), _fmt(before[2]), str(before[3]), _fmt(before[4]),
                      str(before[4] <= 83640), "-", _fmt(before[5], ".1f"), "-",
                      _fmt(meps_b, ".0f"),
                      _fmt(None if meps_b is None else 1000 * meps_b / before[4], ".1f"), "-")
        # Post-route figures; "~" marks the post-placement estimate of an unfinished route.
        slots = r.get("placed_comb")
        meps, mark = r.get("throughput_meps"), ""
        if meps is None and r.get("throughput_est_meps"):
            meps, mark = r["throughput_est_meps"], "~"
        table.add_row(str(r["lanes"]), "radix", _fmt(r.get("interval_cycles"), "g"),
                      _fmt(r.get("elements_per_cycle"), ".1f"), _fmt(r.get("lut4")),
                      _fmt(r.get("ff")), _fmt(r.get("bram")),
                      _fmt(slots), str(r.get("fits")), _fmt(r["target_mhz"], "g"),
                      _fmt(r.get("fmax_mhz"), ".1f"),
                      _fmt(r.get("fmax_placed_mhz"), ".1f"),
                      mark + _fmt(meps, ".0f"),
                      mark + _fmt(1000 * meps / slots if meps and slots else None, ".1f"),
                      str(r.get("verified", "-")))
    console.print(table)
    console.print(f"wrote {json.dumps(files)}", highlight=False)


if __name__ == "__main__":
    main()
