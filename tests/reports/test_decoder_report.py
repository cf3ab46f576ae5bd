"""The decoder report on a tiny random Llama: figures against hand-checkable facts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from psa.models.llama import LlamaConfig, LlamaDecoder
from psa.reports.decoder import (
    DecoderReportConfig,
    run_decoder_report,
    sampled_steps,
    write_decoder_report,
)

SEED = 7
CFG = LlamaConfig(n_layers=2, hidden=32, n_heads=4, n_kv_heads=2, head_dim=8, ffn=48,
                  vocab=50, rope_base=10000.0, rms_eps=1e-5, max_context=128)


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    model = LlamaDecoder.random(CFG, seed=SEED)
    tokens = np.random.default_rng(SEED).integers(0, CFG.vocab, 80)
    cfg = DecoderReportConfig(model="tiny", contexts=(16, 48), decode=6,
                              policies="dense,h2o=0.25", presets=("hbm2", "ddr4-2400"),
                              dram_every=1)
    d = run_decoder_report(cfg, model=model, tokens=tokens)
    out = tmp_path_factory.mktemp("rep")
    files = write_decoder_report(d, out)
    return d, out, files


def test_dense_baselines(doc):
    d, _, _ = doc
    for c, pols in d["results"].items():
        names = [p["name"] for p in pols]
        assert sorted(names) == ["dense=16", "dense=32", "h2o=0.25"], names
        assert names[0] == "dense=16"
        fp16, fp32, h2o = (pols[names.index(n)] for n in ("dense=16", "dense=32", "h2o=0.25"))
        assert fp16["ppl_change"] == 0.0 and fp16["top1_agreement"] == 1.0
        # same math (up to batched float32 rounding): fp32 dense logits match fp16 dense
        assert fp32["nll"] == pytest.approx(fp16["nll"], rel=1e-5), f"seed {SEED}"
        for pr in ("hbm2", "ddr4-2400"):
            a, b = fp16["dram"][pr], fp32["dram"][pr]
            # K/V reads of dense: every row of every layer / kv head, 2 bytes per element
            n = int(c)
            rows = sum(n - 1 + t for t in range(6))  # cached rows before each step's new one
            assert a["read_bytes"] >= 2 * 2 * 2 * 8 * 2 * rows, f"seed {SEED}"
            assert b["read_bytes"] == pytest.approx(2 * a["read_bytes"], rel=0.1)
            assert b["vs_fp16"]["dram_bytes"] < 1 < a["vs_fp32"]["dram_bytes"]
            assert a["vs_fp16"]["cycles"] == 1.0
        assert all(x == pytest.approx(1.0) for x in fp16["alive_fraction_per_layer"])
        # h2o keeps a quarter of the tokens (plus rounding): fewer alive, fewer bytes read
        assert h2o["alive_fraction_mean"] < 0.5
        assert h2o["dram"]["hbm2"]["read_bytes"] < fp16["dram"]["hbm2"]["read_bytes"]


def test_files_and_json(doc):
    d, out, files = doc
    for f in files:
        assert f.exists() and f.stat().st_size > 0, f
    j = json.loads((out / "report.json").read_text())
    assert j["kind"] == "decoder" and j["dram"]["every"] == 1
    md = (out / "report.md").read_text()
    assert "h2o=0.25" in md and "all steps" in md
    assert {"alive_ctx16.png", "alive_ctx48.png", "pareto_decoder.png"} <= set(j["plots"])


def test_sampled_steps_and_checks():
    assert sampled_steps(16, 8) == [4, 12]
    assert sampled_steps(3, 8) == [2]
    assert sampled_steps(4, 1) == [0, 1, 2, 3]
    for kw, opt in (({"contexts": (1,)}, "--context"), ({"decode": 0}, "--decode"),
                    ({"dram_every": 0}, "--dram-every"), ({"presets": ("nope",)}, "--dram"),
                    ({"policies": "bogus"}, "--policies")):
        with pytest.raises(ValueError, match=opt):
            DecoderReportConfig(**{"contexts": (16,), **kw}).check(128)
    with pytest.raises(ValueError, match="max_context"):
        DecoderReportConfig(contexts=(120,), decode=16).check(128)
