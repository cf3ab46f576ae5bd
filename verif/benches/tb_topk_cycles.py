"""cocotb cycle measurements of ``topk_engine``: latency of isolated packets and spacing of
back-to-back ones, each output checked against golden.

Environment: the parameters of :mod:`psa.verif.benches.tb_topk` (``PSA_LANES``,
``PSA_MAX_N``, ``PSA_SIGNED``, ``PSA_SEED``) and, all required, ``PSA_BENCH_POINTS``
(``n:k`` or ``n:k:dataset``, comma-separated; the data sets of
:data:`psa.verif.topk_cases.DATASETS`, ``uniform`` when left out), ``PSA_BENCH_PACKETS``
(packets per point and mode) and ``PSA_BENCH_OUT`` (the JSON written).
"""

from __future__ import annotations

import json
import os

import cocotb
import numpy as np

from psa.verif.benches.tb_topk import TopKTB
from psa.verif.topk_cases import TopKCheck, drain_limit


def _required(name: str) -> str:
    if not os.environ.get(name):
        raise ValueError(f"tb_topk_cycles needs the environment variable {name}")
    return os.environ[name]


@cocotb.test()
async def cycles(dut):
    """Latency (one packet in flight) and back-to-back spacing at each ``n:k[:dataset]``
    point, with no input gaps and no back-pressure; full beats. ``run``: the back-to-back
    run's first input beat, then every packet's last output beat (cycles)."""
    points = _required("PSA_BENCH_POINTS")
    out_path = _required("PSA_BENCH_OUT")
    seed = int(os.environ.get("PSA_SEED", "1"))
    packets = int(os.environ.get("PSA_BENCH_PACKETS", "100"))
    tb = TopKTB(dut, seed)
    check = TopKCheck(tb, seed, ragged=0.0)
    await tb.reset()
    results = []
    for point in points.split(","):
        n, k, *rest = point.split(":")
        n, k, dataset = int(n), int(k), (rest or ["uniform"])[0]
        latencies = []
        for i in range(packets):        # one packet in flight at a time
            check.send_packet(check.make_values(n, dataset), k, f"latency {i}", ragged=False)
            await check.drain(drain_limit(tb, 1))
            latencies.append(tb.last_out[-1] - tb.first_in[-1])
        start, start_in = len(tb.last_out), len(tb.first_in)
        for i in range(packets):        # back to back
            check.send_packet(check.make_values(n, dataset), k, f"throughput {i}",
                              ragged=False)
        await check.drain(drain_limit(tb, packets))
        gaps = np.diff(tb.last_out[start:])
        results.append({"n": n, "k": k, "dataset": dataset, "latency": latencies,
                        "interval": gaps.tolist(),
                        "run": [tb.first_in[start_in], *tb.last_out[start:]]})
        check.scoreboard.check()
    assert check.scoreboard.matched == check.queued, f"{check.context}: outputs missing"
    with open(out_path, "w") as f:
        json.dump({"lanes": tb.lanes, "width": tb.width, "max_n": tb.max_n,
                   "signed": tb.signed, "seed": seed, "points": results}, f)
