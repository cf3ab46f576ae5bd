"""cocotb cycle measurements of ``pruning_unit``: accumulation, prune and fetch cycles.

Environment: ``PSA_PRUNER_PARAMS`` (as :mod:`psa.verif.benches.tb_pruner`) and, required,
``PSA_BENCH_POINTS`` (JSON list of ``[n, rows, k]``) and ``PSA_BENCH_OUT`` (the JSON written).
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np

from psa.hw.pruner import Op
from psa.verif.benches.tb_pruner import PrunerTB
from psa.verif.pruner_cases import kv_layout


def _required(name: str) -> str:
    if not os.environ.get(name):
        raise ValueError(f"this bench needs the environment variable {name}")
    return os.environ[name]


@cocotb.test()
async def cycles(dut):
    """Cycle measurements: per point ``[n, rows, k]``, accumulate ``rows`` full rows over ``n``
    alive tokens with no gaps and no back-pressure, then prune to ``k`` and fetch."""
    points = json.loads(_required("PSA_BENCH_POINTS"))
    out_path = _required("PSA_BENCH_OUT")
    tb = PrunerTB(dut, 1)
    p = tb.params
    layout = kv_layout(p, 2)
    tb.set_layout(layout)
    await tb.reset()
    rng = np.random.default_rng(1)
    out = []
    for n, rows, k in points:
        await tb.command(Op.START.value, n)
        tb.prob_cycles.clear()
        probs = rng.integers(0, 1 << p.prob_bits, size=(rows, n))
        await tb.send_rows(probs)
        first, last = tb.prob_cycles[0], tb.prob_cycles[-1]
        beats = rows * -(-n // p.lanes)
        await tb.command(Op.PRUNE.value, k)
        prune_cycles = tb.last_out["tok"] - tb.cmd_accepted
        await tb.command(Op.FETCH.value, 0)
        fetch_cycles = tb.last_out["fetch"] - tb.cmd_accepted
        out.append({"n": n, "rows": rows, "k": k, "lanes": p.lanes, "beats": beats,
                    "probs": rows * n, "acc_cycles": last - first + 1,
                    "prune_cycles": prune_cycles, "fetch_requests": 2 * p.n_heads * min(k, n),
                    "fetch_cycles": fetch_cycles})
    with open(out_path, "w") as f:
        json.dump(out, f)
