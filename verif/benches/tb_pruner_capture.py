"""cocotb bench: one pruning-unit sequence checked against golden, its fetch trace captured.

Environment: ``PSA_PRUNER_PARAMS`` (as :mod:`psa.verif.benches.tb_pruner`), ``PSA_IDLE``,
``PSA_STALL`` and, required, ``PSA_SEQUENCE`` (JSON :class:`SequenceSpec`), ``PSA_LAYOUT``
(JSON layout) and ``PSA_TRACE_OUT`` (the trace file written).
"""

from __future__ import annotations

import os

import cocotb

from psa.golden.trace import AccessTrace
from psa.verif.benches.tb_pruner import PrunerTB
from psa.verif.pruner_cases import SequenceSpec, layout_from_json, run_sequence


def _required(name: str) -> str:
    if not os.environ.get(name):
        raise ValueError(f"this bench needs the environment variable {name}")
    return os.environ[name]


@cocotb.test()
async def capture_trace(dut):
    """Run the sequence ``PSA_SEQUENCE`` (JSON) with the layout ``PSA_LAYOUT`` (JSON), checked
    against golden, and write the captured fetch trace to ``PSA_TRACE_OUT``."""
    spec = SequenceSpec.from_json(_required("PSA_SEQUENCE"))
    layout = layout_from_json(_required("PSA_LAYOUT"))
    out = _required("PSA_TRACE_OUT")
    tb = PrunerTB(dut, spec.seed, float(os.environ.get("PSA_IDLE", "0")),
                  float(os.environ.get("PSA_STALL", "0")))
    tb.set_layout(layout)
    await tb.reset()
    result = await run_sequence(tb, spec, tb.params, layout)
    AccessTrace.concat(result.traces).write(out)
