"""``pruning_unit`` on Verilator against the golden cascade state, layer by layer.

Default run: the ``main`` parameter set of :data:`PARAM_SETS` (P=8, scores that saturate) with
20 sequences under random gaps/back-pressure, plus the reset test, on one Verilator build (a
build takes minutes on a loaded machine; it is reused while the Verilog is unchanged).
``-m slow`` runs 70 sequences on each of the three sets (210 in all) in three pacing regimes.
"""

from __future__ import annotations

import pytest

from psa.verif.designs import get_bench
from psa.verif.pruner_cases import PARAM_SETS, PrunerParams

PRUNER = get_bench("pruner")


def run_bench(params: PrunerParams, root, testcase: str, seed: int, sequences: int = 10,
              idle: float = 0.2, stall: float = 0.3) -> None:
    PRUNER.build_and_run(params.kwargs(), root, tests=testcase,
                         env=PRUNER.env(params.kwargs(), seed, sequences, idle, stall))


@pytest.mark.rtl
@pytest.mark.parametrize("name,sequences,seed", [("main", 20, 101)])
def test_pruner_matches_golden(sim_build_root, name, sequences, seed):
    run_bench(PARAM_SETS[name], sim_build_root, "golden_sequences", seed, sequences)


@pytest.mark.rtl
def test_pruner_reset_mid_layer_and_errors(sim_build_root):
    run_bench(PARAM_SETS["main"], sim_build_root, "reset_mid_layer", 404)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PARAM_SETS))
@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.3, 0.5), (0.05, 0.1)])
def test_pruner_full_suite(sim_build_root, name, idle, stall):
    """70 sequences per parameter set over the three pacings: 210 sequences in all."""
    seed = 1000 + 10 * sorted(PARAM_SETS).index(name) + int(100 * idle)
    sequences = {0.0: 30, 0.3: 20, 0.05: 20}[idle]
    run_bench(PARAM_SETS[name], sim_build_root, "golden_sequences", seed, sequences, idle,
              stall)
