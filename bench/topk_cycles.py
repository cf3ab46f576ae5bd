"""Cycle benchmark of ``topk_engine`` on Verilator: median, p99 and worst case against the
documented bound.

For each P (W = 16, unsigned, N = 1024), n in {256, 1024}, k in {n/2, n/4} and every data
set (uniform random and the adversarial ones of :data:`psa.verif.topk_cases.ADVERSARIAL`:
sorted, reverse, all equal, two values, sawtooth, all sharing the top bits, crafted against
a pivot rule), with the input at full rate and ``out_ready`` high:

- latency: cycles from the first input beat accepted to the last output beat, one packet in
  the engine at a time;
- interval: cycles per packet back to back (spacing of consecutive last output beats);

median, p99 and the worst over ``--packets`` packets per point, beside the floor
F = ceil(n/P) and the worst-case bound of the datasheet (:func:`psa.hw.topk.topk_bound`:
latency <= 4F + 38, interval <= F + 10 at W = 16). Back to back, a single spacing of last
beats also moves with the latencies of neighbouring packets, so the bound checked there is
cumulative: packet i's last beat leaves at most latency + i x interval (bounds) cycles after
the run's first beat ("run slack" is the smallest margin). Writes
bench/results/topk_cycles.json.

    python bench/topk_cycles.py [--lanes 8 16] [--packets 50] [--datasets uniform equal]
                                [--amaranth]

``--amaranth`` runs the same measurement on Amaranth's simulator (no Verilator build; slower
per cycle, for a few packets) with the same stimulus (:class:`psa.verif.topk_cases.TopKCheck`
data sets) and checks every output against golden.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from psa.hw.topk import topk_bound
from psa.verif.designs import get_bench
from psa.verif.topk_cases import ADVERSARIAL

ROOT = Path(__file__).resolve().parents[1]
WIDTH, MAX_N = 16, 1024
SIZES = (256, 1024)
DATASETS = ("uniform", *ADVERSARIAL)


def measure(lanes: int, datasets: list[str], packets: int, seed: int, build_root: Path) -> dict:
    """Run the bench's ``cycles`` test on one build; returns its JSON."""
    params = {"lanes": lanes, "width": WIDTH, "max_n": MAX_N, "signed": False}
    points = [(n, n // d, ds) for ds in datasets for n in SIZES for d in (2, 4)]
    return get_bench("topk").measure_cycles(params, build_root, points, packets=packets,
                                            seed=seed)


def measure_amaranth(lanes: int, datasets: list[str], packets: int, seed: int) -> dict:
    """:func:`measure` on Amaranth's simulator: the same points and JSON, outputs checked
    against golden :func:`psa.golden.topk.topk`."""
    from psa.golden.topk import topk
    from psa.verif.topk_cases import TopKCheck

    class _Values:      # what TopKCheck.make_values needs of a port
        def __init__(self):
            self.lanes, self.width, self.max_n, self.signed = lanes, WIDTH, MAX_N, False
            self.on_packet = None

    maker = TopKCheck(_Values(), seed)
    points = []
    for ds in datasets:
        for n in SIZES:
            for d in (2, 4):
                k = n // d
                runs = {}
                for mode in ("latency", "interval"):
                    pk = [(maker.make_values(n, ds), k) for _ in range(packets)]
                    runs[mode] = _stamp(lanes, pk, back_to_back=mode == "interval")
                    for (values, kk), got in zip(pk, runs[mode][1], strict=True):
                        want = topk(np.asarray(values), kk).indices.tolist()
                        assert got == want, f"P={lanes} {ds} n={n} k={kk}: output != golden"
                lat = [o - i for i, o in runs["latency"][0]]
                outs = [o for _, o in runs["interval"][0]]
                points.append({"n": n, "k": k, "dataset": ds, "latency": lat,
                               "interval": np.diff(outs).tolist(),
                               "run": [runs["interval"][0][0][0], *outs]})
    return {"lanes": lanes, "points": points}


def _stamp(lanes: int, packets: list, back_to_back: bool) -> tuple[list, list]:
    """(first beat accepted, last beat out) cycles and the output indices of each packet."""
    from amaranth.sim import Simulator

    from psa.hw.topk import TopKEngine

    dut = TopKEngine(lanes, WIDTH, MAX_N, False)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    stamps, outputs = [], []

    async def bench(ctx):
        i, o = dut.i_stream, dut.o_stream
        ctx.set(o.ready, 1)
        queue = []
        for p, (values, k) in enumerate(packets):
            chunks = [values[j:j + lanes] for j in range(0, len(values), lanes)]
            queue += [(p, {"data": c + [0] * (lanes - len(c)), "count": len(c),
                           "last": int(b == len(chunks) - 1), "k": k})
                      for b, c in enumerate(chunks)]
        cycle, first_in, got = 0, {}, []
        while len(stamps) < len(packets):
            sending = bool(queue) and (back_to_back or queue[0][0] == len(stamps))
            ctx.set(i.valid, sending)
            if sending:
                ctx.set(i.payload, queue[0][1])
            _, _, ready, valid, beat = await ctx.tick().sample(i.ready, o.valid, o.payload)
            if sending and ready:
                first_in.setdefault(queue[0][0], cycle)
                queue.pop(0)
            if valid:
                got += [beat.index[j] for j in range(beat.count)]
                if beat.last:
                    stamps.append((first_in[len(stamps)], cycle))
                    outputs.append(got)
                    got = []
            cycle += 1

    sim.add_testbench(bench)
    sim.run()
    return stamps, outputs


def summarise(result: dict, lanes: int) -> list[dict]:
    rows = []
    for point in result["points"]:
        n, k = point["n"], point["k"]
        lat, gap = np.asarray(point["latency"]), np.asarray(point["interval"])
        bound = topk_bound(lanes, WIDTH, n)
        row = {"lanes": lanes, "n": n, "k": k, "dataset": point["dataset"],
               "floor": math.ceil(n / lanes), "packets": len(lat),
               "latency_median": float(np.median(lat)),
               "latency_p99": float(np.percentile(lat, 99)), "latency_max": int(lat.max()),
               "interval_median": float(np.median(gap)),
               "interval_p99": float(np.percentile(gap, 99)), "interval_max": int(gap.max()),
               "latency_bound": bound["latency"], "interval_bound": bound["interval"]}
        # Back to back: packet i's last beat within latency + i * interval bound of the run's
        # first beat (single gaps vary with the latency of neighbours; this does not).
        run = point["run"]
        row["run_slack"] = min(bound["latency"] + i * bound["interval"] - (out - run[0])
                               for i, out in enumerate(run[1:]))
        row["within_bound"] = row["latency_max"] <= bound["latency"] and row["run_slack"] >= 0
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lanes", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--packets", type=int, default=50, help="packets per point and mode")
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "topk_cycles.json")
    ap.add_argument("--build-root", type=Path, default=ROOT / "sim_build")
    ap.add_argument("--amaranth", action="store_true",
                    help="Amaranth's simulator instead of Verilator (no build)")
    args = ap.parse_args(argv)
    console = Console(width=160)
    rows: list[dict] = []
    for lanes in args.lanes:
        t0 = time.time()
        if args.amaranth:
            result = measure_amaranth(lanes, args.datasets, args.packets, args.seed)
        else:
            result = measure(lanes, args.datasets, args.packets, args.seed, args.build_root)
        rows += summarise(result, lanes)
        console.log(f"P={lanes}: cycles measured in {time.time() - t0:.0f} s")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"width": WIDTH, "max_n": MAX_N, "signed": False,
                                        "packets": args.packets, "seed": args.seed,
                                        "points": rows}, indent=1))

    table = Table(title=f"topk_engine cycles (W={WIDTH}, N={MAX_N}, {args.packets} packets "
                        "per point and mode)")
    for col in ("P", "data", "n", "k", "F", "lat med", "p99", "max", "bound", "int med", "p99",
                "max", "bound", "int med/F", "run slack", "ok"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["lanes"]), r["dataset"], str(r["n"]), str(r["k"]), str(r["floor"]),
                      f"{r['latency_median']:.0f}", f"{r['latency_p99']:.0f}",
                      str(r["latency_max"]), str(r["latency_bound"]),
                      f"{r['interval_median']:.0f}", f"{r['interval_p99']:.0f}",
                      str(r["interval_max"]), str(r["interval_bound"]),
                      f"{r['interval_median'] / r['floor']:.2f}", str(r["run_slack"]),
                      "ok" if r["within_bound"] else "EXCEEDED")
    console.print(table)
    worst = {}
    for r in rows:
        key = (r["lanes"], r["n"])
        w = worst.setdefault(key, [0, 0, 1 << 30])
        w[0], w[1] = max(w[0], r["latency_max"]), max(w[1], r["interval_median"])
        w[2] = min(w[2], r["run_slack"])
    for (lanes, n), (lat, gap, slack) in worst.items():
        b = topk_bound(lanes, WIDTH, n)
        console.print(f"P={lanes} n={n}: worst latency {lat} (bound {b['latency']}), largest "
                      f"median interval {gap:g} (bound {b['interval']}), back-to-back slack "
                      f"{slack} cycles (>= 0: within L + i I)", highlight=False)
    console.log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
