"""``pruning_unit``'s decode commands (APPEND, SELECT kv / top-p, LSB-plane requests) on
Verilator against the golden decode state (verif/benches/tb_pruner_decode.py).

Default run: the ``main`` parameter set (N = 64, P = 8; the build of test_pruner_rtl.py) with
10 decode sequences (about 450 APPEND + SELECT + PRUNE steps in all, the last ones filling the
list to its capacity) under random gaps and back-pressure, plus the reset test. ``-m slow``:
``DECODE_PARAMS`` (defaults at N = 2048, P = 16) with 3 sequences of up to 400 steps, and a
replayed SmolLM2 decode stream.
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
    run_decode(DECODE_PARAMS, sim_build_root, "decode_sequences", 203, 3, 400, idle,
               stall)


@pytest.mark.rtl
@pytest.mark.slow
def test_pruner_replays_smollm2_decode_stream(sim_build_root, smollm2, tmp_path):
    """A decode command stream recorded from SmolLM2-135M (layer 3, a 192-token prompt of
    this repository's golden/decode.py, 24 greedy steps, kv = half the alive tokens and top-p
    0.9 alternating, flat rows below 0.1 with LSB requests, prune to 0.8 every 4 steps)
    replayed on the RTL under gaps and back-pressure, equal to golden line for line."""
    import json
    from pathlib import Path

    from psa.verif.pruner_cases import record_decode_stream

    model, tokenizer = smollm2
    text = (Path(__file__).resolve().parents[2] / "golden" / "decode.py").read_text()
    case = record_decode_stream(model, tokenizer.encode(text)[:192], 24, DECODE_PARAMS,
                                layer=3)
    path = tmp_path / "decode_stream.json"
    path.write_text(json.dumps(case))
    PRUNER.build_and_run(DECODE_PARAMS.kwargs(), sim_build_root, purpose="replay_decode",
                         env={"PSA_REPLAY": str(path), "PSA_IDLE": "0.2", "PSA_STALL": "0.3"})
