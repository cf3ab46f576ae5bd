"""The decoder report on a tiny random Llama: figures against hand-checkable facts and
independent recomputations (separate runs with every trace kept)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from psa.models.llama import LlamaConfig, LlamaDecoder
from psa.reports.decoder import (
    DecoderReportConfig,
    pooled_ppl,
    run_decoder_report,
    sampled_steps,
    spread,
    write_decoder_report,
)
from psa.sim import load_preset

SEED = 7
CFG = LlamaConfig(n_layers=2, hidden=32, n_heads=4, n_kv_heads=2, head_dim=8, ffn=48,
                  vocab=50, rope_base=10000.0, rms_eps=1e-5, max_context=128)
D = 6
TEXTS = 3
WIDTH = 49  # max(contexts) + 1


@pytest.fixture(scope="module")
def model():
    return LlamaDecoder.random(CFG, seed=SEED)


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(SEED).integers(0, CFG.vocab, TEXTS * WIDTH)


@pytest.fixture(scope="module")
def doc(model, tokens, tmp_path_factory):
    cfg = DecoderReportConfig(model="tiny", contexts=(16, 48), decode=D, texts=TEXTS,
                              policies="dense,h2o=0.25", presets=("hbm2", "ddr4-2400"),
                              dram_every=1, prefill_chunk=8)
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
        assert np.allclose(fp32["nll"], fp16["nll"], rtol=1e-5), f"seed {SEED}"
        for pr in ("hbm2", "ddr4-2400"):
            a, b = fp16["dram"][pr], fp32["dram"][pr]
            bb = load_preset(pr).org.burst_bytes
            # dense per text, exact: at step t every cached row but the new one (C - D + t
            # rows, contiguous from an aligned base) of each layer, kv head and of K and V is
            # read, rounded up to bursts; the new K and V rows are written (one burst each)
            for dd, width in ((a, 2), (b, 4)):
                row = CFG.head_dim * width
                runs = sum(-(-(int(c) - D + t) * row // bb) * bb for t in range(D))
                assert dd["read_bytes"] == 2 * 2 * 2 * runs, (c, pr, width)
                assert dd["write_bytes"] == 2 * 2 * 2 * D * -(-row // bb) * bb
            assert b["vs_fp16"]["dram_bytes"] < 1 < a["vs_fp32"]["dram_bytes"]
            assert a["vs_fp16"]["cycles"] == 1.0
        assert all(x == pytest.approx(1.0) for x in fp16["alive_fraction_per_layer"])
        # h2o keeps a quarter of the tokens (plus rounding): fewer alive, fewer bytes read
        assert h2o["alive_fraction_mean"] < 0.5
        assert h2o["dram"]["hbm2"]["read_bytes"] < fp16["dram"]["hbm2"]["read_bytes"]


def test_texts_pooling_and_spread(doc):
    """ppl pools every text's tokens (token-weighted); per-text figures and their min/max."""
    d, _, _ = doc
    for pols in d["results"].values():
        dense = pols[0]
        for p in pols:
            nll = np.asarray(p["nll"])
            assert nll.shape == (TEXTS, D)
            assert p["ppl"] == pytest.approx(float(np.exp(nll.mean())), rel=1e-12)
            assert len(p["per_text"]) == TEXTS
            for w, t in enumerate(p["per_text"]):
                base = np.exp(np.mean(dense["nll"][w]))
                assert t["ppl"] == pytest.approx(float(np.exp(nll[w].mean())), rel=1e-12)
                assert t["ppl_change"] == pytest.approx(t["ppl"] / base - 1.0, abs=1e-12)
                agree = np.mean(np.asarray(p["top1"][w]) == np.asarray(dense["top1"][w]))
                assert t["top1_agreement"] == pytest.approx(agree)
            for k in ("ppl_change", "top1_agreement", "bytes_vs_fp16"):
                vals = [t[k] for t in p["per_text"]]
                assert p["spread"][k] == {"min": min(vals), "max": max(vals)}
            db = p["dram"]["hbm2"]
            assert db["dram_bytes"] == pytest.approx(np.mean(db["per_text_dram_bytes"]))
            tops = np.asarray(p["top1"]) == np.asarray(dense["top1"])
            assert p["top1_agreement"] == pytest.approx(tops.mean())
        assert dense["spread"]["ppl_change"] == {"min": 0.0, "max": 0.0}


def test_pooled_ppl_is_token_weighted():
    a, b = np.array([1.0, 1.0, 1.0]), np.array([4.0])
    assert pooled_ppl([a, b]) == pytest.approx(np.exp(7 / 4))  # not exp((1 + 4) / 2)
    assert pooled_ppl(np.array([[2.0, 2.0]])) == pytest.approx(np.exp(2.0))
    assert spread([3, -1, 2]) == {"min": -1.0, "max": 3.0}
    with pytest.raises(ValueError, match="no tokens"):
        pooled_ppl(np.zeros(0))


def test_one_text_of_many_equals_its_own_run(doc, model, tokens):
    """Text 2 of the 3-text run equals a 1-text run on that window alone, and its bytes equal
    the bytes of every step's trace kept by a policy run on its own (no shared prefill, no
    sink): the streaming path drops nothing."""
    from psa.policies.decode import make_decode_policy
    from psa.reports.experiment import coalesce
    from psa.sim import load_preset

    d, _, _ = doc
    win = tokens[2 * WIDTH:3 * WIDTH]
    one = run_decoder_report(DecoderReportConfig(model="tiny", contexts=(16,), decode=D,
                                                 texts=1, policies="dense,h2o=0.25",
                                                 presets=("hbm2",), dram_every=1),
                             model=model, tokens=win[WIDTH - 17:])  # its last 17
    for p1, p3 in zip(one["results"]["16"], d["results"]["16"], strict=True):
        assert np.allclose(p1["nll"][0], p3["nll"][2], rtol=1e-6, atol=1e-6), p1["name"]
        assert p1["dram"]["hbm2"]["dram_bytes"] == p3["dram"]["hbm2"]["per_text_dram_bytes"][2]
    # the same text through model.prefill with the policy's own hook, traces kept
    c = 16
    ids = win[WIDTH - c - 1:]
    pol = make_decode_policy("h2o", "0.25", CFG, c)
    cache = model.new_cache(1, c)
    model.prefill(ids[None, :c - D], cache, attention=[pol])
    for t in range(D):
        model.step(ids[c - D + t:c - D + t + 1], cache, attention=[pol])
    assert len(pol.traces) == D
    bb = load_preset("hbm2").org.burst_bytes
    total = sum(int(coalesce(tr).bursts(bb).sum()) * bb for tr in pol.traces)
    h2o = next(p for p in d["results"]["16"] if p["name"] == "h2o=0.25")
    assert h2o["dram"]["hbm2"]["per_text_dram_bytes"][2] == total


def test_dram_check_measures_sampling_error(model, tokens):
    """--dram-check: with every step sampled the estimate is exact; every 2nd step gives a
    stated, small error; bytes do not depend on sampling."""
    base = dict(model="tiny", contexts=(24,), decode=8, texts=2, policies="dense,quest=0.25",
                presets=("ddr4-2400",), dram_check=True)
    exact = run_decoder_report(DecoderReportConfig(**base, dram_every=1), model=model,
                               tokens=tokens)
    half = run_decoder_report(DecoderReportConfig(**base, dram_every=2), model=model,
                              tokens=tokens)
    for pe, ph in zip(exact["results"]["24"], half["results"]["24"], strict=True):
        de, dh = pe["dram"]["ddr4-2400"], ph["dram"]["ddr4-2400"]
        assert de["sampling_error"] == {"cycles": 0.0, "energy_nJ": 0.0}
        assert dh["cycles_all_steps"] == de["cycles_all_steps"] == de["cycles"]
        assert dh["dram_bytes"] == de["dram_bytes"]
        assert dh["sampling_error"]["cycles"] == pytest.approx(
            dh["cycles"] / dh["cycles_all_steps"] - 1)
        assert abs(dh["sampling_error"]["cycles"]) < 0.25
    summ = half["dram"]["sampling_error"]["24"]["ddr4-2400"]
    assert summ["cycles"] == max(abs(p["dram"]["ddr4-2400"]["sampling_error"]["cycles"])
                                 for p in half["results"]["24"])
    assert exact["dram"]["sampling_error"]["24"]["ddr4-2400"] == {"cycles": 0.0,
                                                                  "energy_nJ": 0.0}


def test_files_and_json(doc):
    d, out, files = doc
    for f in files:
        assert f.exists() and f.stat().st_size > 0, f
    j = json.loads((out / "report.json").read_text())
    assert j["kind"] == "decoder" and j["dram"]["every"] == 1 and j["texts"] == TEXTS
    assert set(j["timing"]["contexts"]) == {"16", "48"}
    assert j["timing"]["peak_rss_MB"] > 0
    md = (out / "report.md").read_text()
    assert "h2o=0.25" in md and "all steps" in md and "peak RSS" in md
    assert {"alive_ctx16.png", "alive_ctx48.png", "pareto_decoder.png"} <= set(j["plots"])


def test_sampled_steps_and_checks():
    assert sampled_steps(16, 8) == [4, 12]
    assert sampled_steps(3, 8) == [2]
    assert sampled_steps(4, 1) == [0, 1, 2, 3]
    for kw, opt in (({"contexts": (1,)}, "--context"), ({"decode": 0}, "--decode"),
                    ({"dram_every": 0}, "--dram-every"), ({"presets": ("nope",)}, "--dram"),
                    ({"policies": "bogus"}, "--policies"), ({"texts": 0}, "--texts")):
        with pytest.raises(ValueError, match=opt):
            DecoderReportConfig(**{"contexts": (40,), **kw}).check(128)


def test_context_bounds():
    """The cache holds C tokens at the last step: C <= max_context, and C > --decode."""
    DecoderReportConfig(contexts=(128,), decode=16).check(128)  # exactly max_context: fine
    with pytest.raises(ValueError, match=r"--context.*<= 128.*max_context.*got 129"):
        DecoderReportConfig(contexts=(40, 129), decode=16).check(128)
    with pytest.raises(ValueError, match=r"--context.*> --decode \(16\).*got 16"):
        DecoderReportConfig(contexts=(16,), decode=16).check(128)


def test_too_few_tokens_named(model):
    cfg = DecoderReportConfig(model="tiny", contexts=(16,), decode=4, texts=3,
                              policies="dense")
    with pytest.raises(ValueError, match=r"tokens: need 51 \(3 texts of 17\)"):
        run_decoder_report(cfg, model=model, tokens=np.zeros(50, np.int64))


def test_report_streams_traces_and_keeps_none(model, tokens, monkeypatch):
    """Every policy the report makes has a sink: each step's trace is consumed at the end of
    the step and none is kept (memory does not grow with steps x context)."""
    import psa.policies.decode as pd

    made = []
    real = pd.make_decode_policy

    def spy(*a, **kw):
        made.append(real(*a, **kw))
        return made[-1]

    monkeypatch.setattr(pd, "make_decode_policy", spy)
    cfg = DecoderReportConfig(model="tiny", contexts=(20,), decode=5, texts=2,
                              policies="dense,spatten=0.5,topp=0.9", presets=("hbm2",))
    ticks = []
    run_decoder_report(cfg, lambda _d, n: (ticks.append(n), lambda: ticks.append(0))[1],
                       model=model, tokens=tokens)
    assert len(made) == 2 * 4  # 2 texts x (3 policies + dense=32)
    for pol in made:
        assert pol.sink is not None and pol.traces == [] and pol.steps == 5
    # progress: one stage per context, one tick per prefill chunk and decode step
    assert ticks[0] == 2 * (1 + 5) and ticks.count(0) == ticks[0]


def test_text_windows_are_disjoint_slices_of_the_stream(smollm2_tokenizer):
    from psa.models.prose import text_windows, token_stream

    tok = smollm2_tokenizer
    w = text_windows(tok, 3, 100, seed=1)
    assert w.shape == (3, 100) and w.dtype == np.int64
    assert np.array_equal(w.ravel(), token_stream(tok, 300, seed=1))
    assert np.array_equal(text_windows(tok, 1, 100, seed=1)[0], w[0])
    with pytest.raises(ValueError, match=r"at most \d+ windows of that length"):
        text_windows(tok, 1000, 8192)


@pytest.mark.slow
def test_smollm2_report_end_to_end(smollm2):
    """Real SmolLM2 and corpus through the report's own loading path (2 texts, context 1024):
    sane perplexity, fp32 dense = fp16 dense, h2o=0.2 reads about 5x fewer bytes, and the
    every-4th-step cycles estimate within 5 % of all steps."""
    cfg = DecoderReportConfig(contexts=(1024,), decode=8, texts=2, policies="dense,h2o=0.2",
                              presets=("hbm2",), dram_every=4, dram_check=True)
    d = run_decoder_report(cfg)
    by = {p["name"]: p for p in d["results"]["1024"]}
    assert list(by) == ["dense=16", "dense=32", "h2o=0.2"]
    fp16, fp32, h2o = by["dense=16"], by["dense=32"], by["h2o=0.2"]
    assert 2 < fp16["ppl"] < 60, fp16["ppl"]
    assert np.allclose(fp32["nll"], fp16["nll"], rtol=1e-4)
    assert 4.5 < h2o["dram"]["hbm2"]["vs_fp16"]["dram_bytes"] < 5.5
    assert d["dram"]["sampling_error"]["1024"]["hbm2"]["cycles"] < 0.05
    assert d["corpus"]["source"].startswith("pydoc_data.topics")
