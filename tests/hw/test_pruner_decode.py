"""``pruning_unit``'s decode commands (APPEND, SELECT kv / top-p, LSB-plane requests) on
Verilator against the golden decode state (verif/benches/tb_pruner_decode.py).

Default run: the ``main`` parameter set (N = 64, P = 8; the build of test_pruner_rtl.py) with
10 decode sequences (about 450 APPEND + SELECT + PRUNE steps in all, the last ones filling the
list to its capacity) under random gaps and back-pressure, plus the reset test. ``-m slow``:
the ``decode`` set (N = 1024, P = 16) with single sequences of 600 steps.
"""

from __future__ import annotations

import pytest

from psa.verif.designs import get_bench
from psa.verif.pruner_cases import DECODE_PARAMS, PARAM_SETS, PrunerParams

PRUNER = get_bench("pruner")


def run_decode(params: PrunerParams, root, testcase: str, seed: int, sequences: int,
               steps: int, idle: float = 0.2, stall: float = 0.3) -> None:
    PRUNER.build_and_run(params.kwargs(), root, purpose="decode", tests=testcase,
                         env={**PRUNER.env(params.kwargs(), seed, sequences, idle, stall),
                              "PSA_STEPS": str(steps)})


@pytest.mark.rtl
def test_pruner_decode_matches_golden(sim_build_root):
    run_decode(PARAM_SETS["main"], sim_build_root, "decode_sequences", 201, 10, 60)


@pytest.mark.rtl
def test_pruner_decode_reset_mid_step(sim_build_root):
    run_decode(PARAM_SETS["main"], sim_build_root, "decode_reset_mid_step", 202, 0, 0)


@pytest.mark.rtl
@pytest.mark.slow
@pytest.mark.parametrize("idle,stall", [(0.0, 0.0), (0.3, 0.5)])
def test_pruner_decode_long_sequences(sim_build_root, idle, stall):
    run_decode(DECODE_PARAMS, sim_build_root, "decode_sequences", 203, 5, 600, idle,
               stall)
