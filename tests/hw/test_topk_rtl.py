"""``topk_engine`` Verilog on Verilator with the cocotb bench (verif/benches/tb_topk.py).

Default run (one Verilator build, about a minute): a signed 4-lane engine with N = 64, 400
random packets of every dataset with overflows, input gaps and 30% output back-pressure, the
mid-packet reset test, and a Verilator lint of the exported Verilog. ``-m slow``: the full
suite, 10,000 packets over six parameter sets (P in {1, 4, 16, 32}, W in {8, 16}, signed and
unsigned, N up to 4096) plus an unsigned 16-lane N = 128 set. Each parameter set is built
once in ``sim_build/topk_*`` and reused by later runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from psa.hw.designs import get_design
from psa.verif.designs import get_bench

TOPK = get_bench("topk")


@dataclass(frozen=True)
class Case:
    lanes: int
    width: int
    max_n: int
    signed: bool
    packets: int
    seed: int

    @property
    def params(self) -> dict:
        return {"lanes": self.lanes, "width": self.width, "max_n": self.max_n,
                "signed": self.signed}

    @property
    def id(self) -> str:
        return TOPK.tag(self.params)


DEFAULT = [Case(4, 8, 64, True, 400, 1)]
FULL = [
    Case(16, 16, 128, False, 250, 2),
    Case(1, 8, 64, False, 1500, 11),
    Case(4, 8, 256, True, 2000, 12),
    Case(16, 16, 4096, False, 1000, 13),
    Case(16, 8, 1000, True, 2000, 14),
    Case(32, 16, 2048, True, 1500, 15),
    Case(32, 8, 512, False, 2000, 16),
]
assert sum(c.packets for c in FULL) >= 10_000


def run_case(case: Case, root) -> None:
    try:
        TOPK.build_and_run(case.params, root,
                           env=TOPK.env(case.params, case.seed, case.packets, 0.2, 0.3))
    except AssertionError as e:
        raise AssertionError(f"{case} (seed {case.seed}): {e}") from None


@pytest.mark.rtl
@pytest.mark.parametrize("case", DEFAULT, ids=lambda c: c.id)
def test_topk_rtl_default(case, sim_build_root):
    run_case(case, sim_build_root)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("case", FULL, ids=lambda c: c.id)
def test_topk_rtl_full(case, sim_build_root):
    run_case(case, sim_build_root)


@pytest.mark.rtl
def test_topk_verilog_lints_without_errors(tmp_path):
    """Verilator --lint-only -Wall finds no error; the warning kinds are the known benign
    ones of Yosys-written Verilog (docs/topk.md, "Lint")."""
    from psa.flows.lint import lint_verilog

    path = tmp_path / "topk.v"
    path.write_text(get_design("topk").verilog(lanes=4, width=8, max_n=64, signed=True))
    warnings = lint_verilog(path, "topk_engine")
    kinds = {w.split(":", 1)[0].removeprefix("%Warning-") for w in warnings}
    benign = {"DECLFILENAME", "UNUSEDSIGNAL", "WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE",
              "CASEOVERLAP", "PROCASSINIT", "ALWNEVER", "UNDRIVEN", "CMPCONST"}
    assert kinds <= benign, f"new lint warning kinds: {sorted(kinds - benign)}"
    undriven = [w for w in warnings if "UNDRIVEN" in w]
    assert not undriven, undriven[:5]
