"""Pruning-unit cycles on Verilator: accumulation against the streaming floor, prune latency
and fetch time per alive count.

For each ``P`` in ``--lanes`` one design with ``max_tokens = max(--n)`` is built; for each
sequence length ``n`` and keep fraction the cocotb ``cycles`` test (verif/benches/tb_pruner.py)
starts a sequence of ``n`` tokens, streams ``--rows`` query rows with no input gaps and no
back-pressure, prunes to ``k = round(keep * n)`` and fetches the next layer's K/V rows.

- ``acc_cycles``: first to last accepted probability beat; the floor is ``probs / P``;
  ``acc_eff = probs / (P * acc_cycles)`` (1.0 = P probabilities per cycle; rows whose length
  is not a multiple of P waste lanes of their last beat).
- ``prune_cycles``: PRUNE accepted to the last token of the new alive list delivered.
- ``fetch_cycles``: FETCH accepted to the last request delivered (``2 * heads * k`` requests).
- ``layer_cycles``: one layer of ``heads * rows`` query rows, then a prune and the next fetch,
  from the measured parts: ``heads * acc_cycles + prune_cycles + fetch_cycles``.

Decode steps (``--decode``, the ``decode_steps`` test of verif/benches/tb_pruner_cycles.py):
for each ``P`` one design with ``max_tokens = max(--context)``; per context (alive tokens) and
selection, one step of one K/V head: APPEND, then one accumulated SELECT of a query row.

- ``append``: APPEND accept to the next command's accept (1 = back to back).
- ``acc``: the row's beats, first to last accepted (``ceil(alive/P)``: accumulation and the
  selector's first pass are the same beats).
- ``select``: last row beat to the first V request delivered (threshold search + the
  emission's way to the first selected token); ``floor`` is the issue's bound
  ``2 ceil(alive/P) + 64``.
- ``fetch``: first to last V request (one per cycle, plus one per row beat without a selected
  token).

Usage: ``python bench/pruner_cycles.py [--lanes 8 16] [--n 256 1024] [--out PATH]``;
``python bench/pruner_cycles.py --decode [--lanes 8 16] [--context 512 2048]``.
Writes JSON (default bench/results/pruner_cycles.json, pruner_decode_cycles.json with
``--decode``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from psa.golden.decode import p_to_fixed
from psa.verif.designs import get_bench
from psa.verif.pruner_cases import PrunerParams

ROOT = Path(__file__).resolve().parents[1]
KEEPS = (0.9, 0.5, 0.1)


def measure(lanes: int, ns: list[int], rows: int, heads: int, build_root: Path) -> list[dict]:
    """Run the ``cycles`` test on one design; returns one record per (n, keep) point."""
    params = PrunerParams(max_tokens=max(ns), n_heads=heads, lanes=lanes)
    points = [[n, rows, max(1, round(keep * n))] for n in ns for keep in KEEPS]
    records = get_bench("pruner").measure_cycles(params.kwargs(), build_root, points)
    for r in records:
        r["heads"] = heads
        r["floor_cycles"] = r["probs"] / lanes
        r["acc_eff"] = r["probs"] / (lanes * r["acc_cycles"])
        r["layer_cycles"] = heads * r["acc_cycles"] + r["prune_cycles"] + r["fetch_cycles"]
        r["layer_floor"] = heads * r["floor_cycles"]
        r["max_tokens"] = params.max_tokens
    return records


def decode_points(context: int, prob_bits: int) -> list[list]:
    """Selections measured per context: kv = alive/2 and alive/8 on peaky rows, top-p 0.9 on
    peaky and on flat rows."""
    p9 = p_to_fixed(0.9, prob_bits)
    return [[context, 0, context // 2, "softmax"], [context, 0, context // 8, "softmax"],
            [context, 1, p9, "softmax"], [context, 1, p9, "uniform"]]


def measure_decode(lanes: int, contexts: list[int], heads: int, build_root: Path) -> list[dict]:
    """Run the ``decode_steps`` test on one design; one record per point."""
    params = PrunerParams(max_tokens=max(contexts), n_heads=heads, lanes=lanes)
    points = [pt for c in contexts for pt in decode_points(c, params.prob_bits)]
    bench = get_bench("pruner")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "decode.json"
        bench.build_and_run(params.kwargs(), build_root, purpose="decode_cycles",
                            env={"PSA_BENCH_POINTS": json.dumps(points),
                                 "PSA_BENCH_OUT": str(out)})
        records = json.loads(out.read_text())
    for r in records:
        r["floor"] = 2 * r["beats"] + 64
        r["step_cycles"] = r["append_cycles"] + r["acc_cycles"] + r["select_cycles"] \
            + r["fetch_cycles"]
        r["max_tokens"] = params.max_tokens
        r["digit_bits"] = params.digit_bits
    return records


def show_decode(result: dict) -> None:
    table = Table(title="pruning unit decode step, one K/V head, one query row "
                        "(APPEND + accumulated SELECT; Verilator)")
    for col in ("P", "alive", "rule", "rows", "kept", "append", "acc", "select", "floor",
                "fetch", "step"):
        table.add_column(col, justify="right")
    for r in result["points"]:
        rule = f"topp {r['target']}" if r["topp"] else f"kv {r['target']}"
        table.add_row(str(r["lanes"]), str(r["alive"]), rule, r["kind"], str(r["selected"]),
                      str(r["append_cycles"]), str(r["acc_cycles"]), str(r["select_cycles"]),
                      str(r["floor"]), str(r["fetch_cycles"]), str(r["step_cycles"]))
    Console(width=140).print(table)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lanes", type=int, nargs="+", default=[8, 16])
    ap.add_argument("--n", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--rows", type=int, default=8, help="query rows per head (default 8)")
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pruner_cycles.json")
    ap.add_argument("--build-root", type=Path, default=ROOT / "sim_build")
    ap.add_argument("--show", action="store_true", help="print the table of --out, no runs")
    ap.add_argument("--decode", action="store_true", help="decode steps instead of layers")
    ap.add_argument("--context", type=int, nargs="+", default=[512, 2048],
                    help="alive tokens of the decode steps (default 512 2048)")
    args = ap.parse_args(argv)

    if args.decode:
        if args.out == ap.get_default("out"):
            args.out = ROOT / "bench" / "results" / "pruner_decode_cycles.json"
        if not args.show:
            records = []
            for lanes in args.lanes:
                records += measure_decode(lanes, args.context, args.heads, args.build_root)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"points": records}, indent=1) + "\n")
            print(f"wrote {args.out}")
        show_decode(json.loads(args.out.read_text()))
        return

    if not args.show:
        records = []
        for lanes in args.lanes:
            records += measure(lanes, args.n, args.rows, args.heads, args.build_root)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows_per_head": args.rows, "heads": args.heads,
                                        "points": records}, indent=1) + "\n")
        print(f"wrote {args.out}")
    show(json.loads(args.out.read_text()))


def show(result: dict) -> None:
    """Print the table of a result JSON."""
    records = result["points"]
    table = Table(title=f"pruning unit cycles ({result['heads']} heads x "
                        f"{result['rows_per_head']} rows per head per layer; Verilator)")
    for col in ("P", "n", "k", "probs/head", "acc cyc", "floor", "acc eff", "prune cyc",
                "fetch req", "fetch cyc", "layer cyc", "layer floor"):
        table.add_column(col, justify="right")
    for r in records:
        table.add_row(str(r["lanes"]), str(r["n"]), str(r["k"]), str(r["probs"]),
                      str(r["acc_cycles"]), f"{r['floor_cycles']:.0f}", f"{r['acc_eff']:.3f}",
                      str(r["prune_cycles"]), str(r["fetch_requests"]), str(r["fetch_cycles"]),
                      str(r["layer_cycles"]), f"{r['layer_floor']:.0f}")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
