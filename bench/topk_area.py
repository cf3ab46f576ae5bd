"""Where the top-k engine's ECP5 area goes: LUT4, carry and flip-flops by block.

For each P (W = 16, N = 1024, unsigned) synthesises ``topk_engine`` with ``synth_ecp5
-noflatten -nowidelut`` and classic ``abc -lut 4`` (the LUT4-only mapping of the README's
ECP5 table, see docs/synth.md), keeping the module hierarchy so that each block's cells can be
counted. Blocks are the stages' submodules (``ingest.hist``, ``select.scan_writer``, ...;
numbered copies summed); ``stage (control)`` is a stage's own logic: controllers, counters,
address generators, pipeline and descriptor registers. "Slots" are LUT4 + 2 x CCU2C,
what nextpnr packs into the part's LUT/carry slots. Without flattening Yosys cannot optimise
across block boundaries; on the quick-select engine before issue 22 the totals came within 6%
of the flat ``psa synth`` slot counts. No place and route. Writes
bench/results/topk_area.json.

    python bench/topk_area.py [--lanes 8 16 32]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from psa.flows.synth import run_yosys
from psa.hw.designs import get_design

ROOT = Path(__file__).resolve().parents[1]
WIDTH, MAX_N = 16, 1024
TOP, ENGINE = "topk_engine", "topk_engine.engine"
CONTROL = "(engine control)"
#: The engine's stage components, whose sub-blocks are listed as ``stage.block``.
STAGES = ("ingest", "select", "emit")
_COUNTED = ("LUT4", "CCU2C", "TRELLIS_FF")


def hierarchical_stat(lanes: int) -> dict:
    """``stat -json`` of the engine synthesised for ECP5 with its hierarchy kept."""
    verilog = get_design("topk").verilog(lanes=lanes, width=WIDTH, max_n=MAX_N, signed=False)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "topk.v").write_text(verilog)
        ecp5 = f"synth_ecp5 -nowidelut -noflatten -top {TOP}"
        script = "\n".join([
            "read_verilog topk.v", f"hierarchy -top {TOP}",
            f"{ecp5} -run begin:map_luts",
            "techmap -map +/lattice/latches_map.v; abc -lut 4 -dress; clean",
            f"{ecp5} -run map_cells:",
            "tee -q -o stat.json stat -json",
        ])
        run_yosys(script, tmp)
        return json.loads(Path(tmp, "stat.json").read_text())


def by_block(stat: dict) -> dict[str, dict[str, int]]:
    """Cells (``_COUNTED`` types) of each engine block, submodules folded into their block."""
    modules = {k.lstrip("\\"): v["num_cells_by_type"] for k, v in stat["modules"].items()}
    memo: dict[str, dict[str, int]] = {}

    def flat(name: str) -> dict[str, int]:
        if name not in memo:
            total: dict[str, int] = defaultdict(int)
            for cell, n in modules[name].items():
                cell = cell.lstrip("\\")
                for kind, m in (flat(cell).items() if cell in modules else [(cell, 1)]):
                    total[kind] += n * m
            memo[name] = dict(total)
        return memo[name]

    blocks: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_COUNTED, 0))

    def add(module: str, prefix: str, control: str) -> None:
        for cell, n in modules[module].items():
            cell = cell.lstrip("\\")
            if cell.startswith(module + "."):
                local = cell[len(module) + 1:]
                if local in STAGES:     # a stage: its blocks one level down
                    add(cell, f"{local}.", f"{local} (control)")
                    continue
                # cand_packer0..3 -> cand_packer*, cand_log0_1 -> cand_log*
                name = prefix + re.sub(r"\d+(_\d+)*$", "*", local)
                for kind, m in flat(cell).items():
                    if kind in _COUNTED:
                        blocks[name][kind] += n * m
            elif cell in _COUNTED:
                blocks[control][cell] += n

    add(ENGINE, "", CONTROL)
    return dict(blocks)


def slots(cells: dict[str, int]) -> int:
    return cells["LUT4"] + 2 * cells["CCU2C"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lanes", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "topk_area.json")
    args = ap.parse_args(argv)

    console = Console(width=None if sys.stdout.isatty() else 160)
    results = {}
    for lanes in args.lanes:
        with console.status(f"P = {lanes}: Yosys, hierarchy kept"):
            results[lanes] = by_block(hierarchical_stat(lanes))
    totals = {p: sum(slots(c) for c in b.values()) for p, b in results.items()}

    table = Table(title=f"top-k engine area by block, W = {WIDTH}, N = {MAX_N}, ECP5 LUT4-only "
                        "(slots = LUT4 + 2 CCU2C; share of the engine)")
    table.add_column("block")
    for p in args.lanes:
        table.add_column(f"P = {p} slots", justify="right")
        table.add_column("share", justify="right")
        table.add_column("FF", justify="right")
    last = args.lanes[-1]
    for name in sorted(results[last], key=lambda b: -slots(results[last][b])):
        cells = [results[p].get(name, dict.fromkeys(_COUNTED, 0)) for p in args.lanes]
        table.add_row(name, *(v for c, p in zip(cells, args.lanes, strict=True) for v in (
            f"{slots(c):,}", f"{100 * slots(c) / totals[p]:.1f}%", f"{c['TRELLIS_FF']:,}")))
    table.add_row("total", *(v for p in args.lanes for v in (
        f"{totals[p]:,}", "100%",
        f"{sum(c['TRELLIS_FF'] for c in results[p].values()):,}")), style="bold")
    console.print(table)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "design": "topk", "width": WIDTH, "max_n": MAX_N, "mapping": "synth_ecp5 -nowidelut "
        "-noflatten, abc -lut 4", "blocks": {str(p): b for p, b in results.items()},
        "slots": {str(p): t for p, t in totals.items()}}, indent=1))
    console.print(f"wrote {args.out}", highlight=False)


if __name__ == "__main__":
    main()
