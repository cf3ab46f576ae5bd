"""Area, Fmax and throughput of the top-k engine on an ECP5-85k: the README's table and plot.

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
for reruns with the same timeout. Results come from the synthesis cache when present, so a
rerun after the measurements takes minutes; from scratch it takes hours on two cores.

Writes ``sweep.json``, ``sweep.csv``, ``cycles_vs_luts.png``, ``fmax_vs_lanes.png`` and
``pareto.png`` to ``bench/results/topk_ecp5/`` (the README's plot is its ``pareto.png``).

    python bench/topk_ecp5.py [--lanes 4 8 16 32] [--verify] [--timeout 6000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from psa.flows.sweep import SweepOptions, evaluate_point, write_outputs

ROOT = Path(__file__).resolve().parents[1]
WIDTH, MAX_N = 16, 1024
PLACER, ROUTER = "static", "router1"
#: nextpnr clock target per P (MHz): a little above the post-placement estimate.
TARGET_MHZ = {4: 50.0, 8: 35.0, 16: 25.0, 32: 25.0}


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
            row = evaluate_point("topk", params, options)
        rows.append(row | {"target_mhz": TARGET_MHZ[lanes]})
        console.print(f"P = {lanes}: {row['status']} in {row['elapsed_s']} s"
                      + (f" ({row['error']})" if row.get("error") else ""))

    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"design": "topk", "axes": {"lanes": args.lanes}, "width": WIDTH, "max_n": MAX_N,
            "device": "ecp5-85k", "abc9": False, "widelut": False, "placer": PLACER,
            "router": ROUTER, "target_mhz": {p: TARGET_MHZ[p] for p in args.lanes}}
    files = write_outputs(args.out, rows, meta)

    table = Table(title=f"top-k engine, W = {WIDTH}, N = {MAX_N}, LFE5U-85F speed 6")
    for name in ("P", "cycles/packet", "elements/cycle", "LUT4", "FF", "DP16KD", "DSP",
                 "slots", "fits", "target MHz", "Fmax MHz", "placed est. MHz", "M elements/s",
                 "verified"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(str(r["lanes"]), _fmt(r.get("interval_cycles"), "g"),
                      _fmt(r.get("elements_per_cycle"), ".1f"), _fmt(r.get("lut4")),
                      _fmt(r.get("ff")), _fmt(r.get("bram")), _fmt(r.get("dsp")),
                      _fmt(r.get("placed_comb")), str(r.get("fits")), _fmt(r["target_mhz"], "g"),
                      _fmt(r.get("fmax_mhz"), ".1f"),
                      _fmt(r.get("fmax_placed_mhz"), ".1f"),
                      _fmt(r.get("throughput_meps"), ".0f"), str(r.get("verified", "-")))
    console.print(table)
    console.print(f"wrote {json.dumps(files)}", highlight=False)


if __name__ == "__main__":
    main()
