"""cocotb cycle measurements of ``pruning_unit``: accumulation, prune and fetch cycles
(``cycles``), and decode steps (``decode_steps``: APPEND, one SELECT row's accumulation,
selection and V fetches).

Environment: ``PSA_PRUNER_PARAMS`` (as :mod:`psa.verif.benches.tb_pruner`) and, required,
``PSA_BENCH_POINTS`` (JSON list of ``[n, rows, k]``; for ``decode_steps`` of
``[alive, topp, target, kind]``) and ``PSA_BENCH_OUT`` (the JSON written).
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np

from psa.golden.decode import select_kv, select_topp
from psa.hw.layouts import select_arg
from psa.hw.pruner import Op
from psa.verif.benches.tb_pruner import PrunerTB
from psa.verif.pruner_cases import _rows, kv_layout


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


@cocotb.test()
async def decode_steps(dut):
    """Per point ``[alive, topp, target, kind]``: START ``alive - 1`` tokens, APPEND one, then
    one accumulated SELECT of a ``kind`` row (no gaps, no back-pressure). Records APPEND
    (accept to the next accept), accumulation (first to last row beat), selection (last beat
    to the first V request delivered) and fetch (first to last request)."""
    points = json.loads(_required("PSA_BENCH_POINTS"))
    out_path = _required("PSA_BENCH_OUT")
    tb = PrunerTB(dut, 1)
    p = tb.params
    tb.set_layout(kv_layout(p, 2))
    await tb.reset()
    rng = np.random.default_rng(1)
    out = []
    for alive, topp, target, kind in points:
        await tb.command(Op.START.value, alive - 1)
        accepts = []
        tb.cmd.on_transfer = lambda beat, accepts=accepts: accepts.append(tb.cycle)
        tb.cmd.send({"op": Op.APPEND.value, "arg": 0})       # APPEND, READ_TOKENS back to back
        await tb.command(Op.READ_TOKENS.value)
        tb.cmd.on_transfer = lambda beat: setattr(tb, "cmd_accepted", tb.cycle)
        row = _rows(rng, kind, 1, alive, p.prob_bits)[0]
        tb.prob_cycles.clear()
        got = await tb.select(select_arg(target, 0, bool(topp), accumulate=True), row)
        sel = select_topp(row, target) if topp else select_kv(row, target)
        assert [int(b["token"]) for b in got] == sel.tolist(), (alive, topp, target, kind)
        first, last = tb.prob_cycles[0], tb.prob_cycles[-1]
        out.append({"alive": alive, "topp": int(topp), "target": target, "kind": kind,
                    "lanes": p.lanes, "beats": -(-alive // p.lanes), "selected": len(sel),
                    "append_cycles": accepts[1] - accepts[0],
                    "acc_cycles": last - first + 1,
                    "select_cycles": tb.first_out["fetch"] - last,
                    "fetch_cycles": tb.last_out["fetch"] - tb.first_out["fetch"] + 1})
    with open(out_path, "w") as f:
        json.dump(out, f)
