"""``capture_fetch_trace`` (psa.verif.benches.tb_pruner_capture): the hardware's fetch trace
of a sequence, checked against golden layer by layer inside the bench, does not depend on
input gaps or back-pressure."""

from __future__ import annotations

import pytest

from psa.verif.pruner_cases import PARAM_SETS, capture_fetch_trace, kv_layout, make_sequences


@pytest.mark.rtl
def test_captured_trace_is_independent_of_pacing(sim_build_root):
    params = PARAM_SETS["main"]
    spec = make_sequences(params, 1, 7)[0]
    layout = kv_layout(params, spec.n_layers)
    calm = capture_fetch_trace(params, spec, layout, sim_build_root)
    busy = capture_fetch_trace(params, spec, layout, sim_build_root, idle=0.3, stall=0.5)
    lines = list(calm.lines())
    assert lines, f"seed {spec.seed}: empty trace"
    assert lines == list(busy.lines()), f"seed {spec.seed}: trace depends on pacing"
