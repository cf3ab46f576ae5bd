"""cocotb bench: replay a real-model policy's pruning-unit commands on ``pruning_unit``.

``PSA_REPLAY`` names a JSON file written by ``test_policies.py::test_rtl_replays_policies``:
sequences of per-layer commands recorded by :class:`psa.policies.encoder.SpAttenPolicy` (and
its subclasses) on MiniLM, with the golden fetch lines (the policy's own ``K_MSB``/``V_MSB``
reads as trace lines), kept heads and alive tokens. Per layer the bench issues ``FETCH`` and
compares the captured stream line for line, sends every head's probability rows and
magnitude, then ``PRUNE_HEADS`` / ``PRUNE`` and compares their outputs.

``replay_decode`` replays a decode-mode stream recorded from SmolLM2 by
:func:`psa.verif.pruner_cases.record_decode_stream` (APPEND, FETCH, SELECT, PRUNE).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np

from psa.golden.trace import KVLayout
from psa.hw.pruner import Op
from psa.verif.benches.tb_pruner import PrunerTB
from psa.verif.pruner_cases import requests_to_trace


@cocotb.test()
async def replay_policy(dut):
    case = json.loads(Path(os.environ["PSA_REPLAY"]).read_text())
    tb = PrunerTB(dut, case["seed"], case["idle"], case["stall"])
    await tb.reset()
    for seq in case["sequences"]:
        who = f"{seq['policy']} input {seq['input']}"
        tb.set_layout(KVLayout(**seq["layout"]))
        await tb.command(Op.START.value, seq["n"])
        for layer in seq["layers"]:
            li = layer["layer"]
            got = requests_to_trace(await tb.command(Op.FETCH.value, li), li)
            lines = list(got.lines())
            if lines != layer["fetch_lines"]:
                first = next((i for i, (a, b) in enumerate(
                    zip(lines, layer["fetch_lines"], strict=False)) if a != b),
                    min(len(lines), len(layer["fetch_lines"])))
                raise AssertionError(
                    f"{who} layer {li}: hardware fetch stream has {len(lines)} lines, golden "
                    f"{len(layer['fetch_lines'])}; first difference at line {first}: "
                    f"{lines[first:first + 2]} vs {layer['fetch_lines'][first:first + 2]}")
            assert got.plane.tolist() == layer["fetch_planes"], f"{who} layer {li}: planes"
            for rows in layer["probs"]:
                await tb.send_rows(np.asarray(rows, dtype=np.int64))
            for head, mag in zip(layer["heads"], layer["mags"], strict=False):
                await tb.send_magnitude(head, mag)
            if layer["prune_heads"] is not None:
                out = await tb.command(Op.PRUNE_HEADS.value, layer["prune_heads"])
                assert [int(b["id"]) for b in out] == layer["heads_after"], \
                    f"{who} layer {li}: prune_heads"
            if layer["prune"] is not None:
                out = await tb.command(Op.PRUNE.value, layer["prune"])
                assert [int(b["id"]) for b in out] == layer["alive_after"], \
                    f"{who} layer {li}: prune"
        assert not int(dut.error.value), f"{who}: error flag raised"
    dut._log.info("%d policy sequences replayed, fetch streams equal to golden",
                  len(case["sequences"]))


@cocotb.test()
async def replay_decode(dut):
    """Replay a decode command stream recorded from a real decoder
    (:func:`psa.verif.pruner_cases.record_decode_stream`, JSON file ``PSA_REPLAY``): every
    FETCH and SELECT request stream equal to golden's line for line, the alive list after
    every step and every PRUNE equal."""
    case = json.loads(Path(os.environ["PSA_REPLAY"]).read_text())
    tb = PrunerTB(dut, int(os.environ.get("PSA_SEED", "1")),
                  float(os.environ.get("PSA_IDLE", "0")), float(os.environ.get("PSA_STALL", "0")))
    tb.set_layout(KVLayout(**case["layout"]), case["lsb_threshold"])
    await tb.reset()
    layer, lines = case["layer"], 0
    for i, c in enumerate(case["commands"]):
        where = f"command {i} (op {c['op']})"
        if c["op"] == "rows":
            await tb.send_rows(np.asarray(c["rows"], dtype=np.int64))
            continue
        if c["op"] == Op.SELECT.value:
            out = await tb.select(c["arg"], np.asarray(c["row"], dtype=np.int64))
        else:
            out = await tb.command(c["op"], c.get("arg", 0))
        if "lines" in c:
            got = requests_to_trace(out, layer)
            assert list(got.lines()) == c["lines"], f"{where}: request stream differs"
            assert got.plane.tolist() == c["planes"], f"{where}: planes differ"
            lines += len(c["lines"])
        if "heads" in c:
            assert [int(b["id"]) for b in out] == c["heads"], f"{where}: kept heads differ"
        if "tokens" in c:
            assert [[int(b["id"]), int(b["score"])] for b in out] == c["tokens"], \
                f"{where}: alive list differs"
        assert not int(dut.error.value), f"{where}: error flag raised"
    dut._log.info("decode stream of %d commands replayed (%d steps), %d request lines equal "
                  "to golden", len(case["commands"]), case["steps"], lines)
