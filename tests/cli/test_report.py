"""``psa report``: files, JSON schema, consistency of the DRAM figures, errors.

Runs MiniLM on a handful of short inputs (and a tiny random BERT via ``--model-dir``), so the
default run stays in seconds after the DRAM model's one-time JIT compile.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from tiny_bert import ids_for, write_tiny

from psa.cli import cli
from psa.golden.cascade import CascadeConfig
from psa.golden.trace import read_trace
from psa.models.minilm import BertEncoder, DensePolicy
from psa.policies.encoder import SpAttenPolicy
from psa.reports.encoder import SCHEMA_VERSION, simulate_dram
from psa.reports.experiment import run_policy
from psa.sim import simulate

KEYS = ("name", "params", "dram_bytes_reduction", "cycles_reduction", "energy_reduction",
        "cosine_mean", "cosine_p5", "top1_agreement", "top5_agreement")
PNGS = ("alive_tokens.png", "dram_bytes_per_layer.png", "pareto.png")
SEED = 2024


def run(args: list[str]):
    # 80 columns, as in a CI log: the table must still tell its rows apart
    result = CliRunner(env={"COLUMNS": "80"}).invoke(cli, ["report", *args])
    return result


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = run(["--n-texts", "5", "--min-tokens", "16", "--max-tokens", "40",
                  "--dram-texts", "1", "--policies", "spatten=default/quant,topk=0.5",
                  "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "report.json").read_text()), result.output


def test_report_files_and_schema(small_report):
    out, doc, output = small_report
    assert doc["schema_version"] == SCHEMA_VERSION
    names = [p["name"] for p in doc["policies"]]
    assert names == ["dense", "spatten=default", "spatten=quant", "topk=0.5"]
    for p in doc["policies"]:
        for key in KEYS:
            assert key in p, key
        assert set(p["dram"]) == {"hbm2", "ddr4-2400"}
        assert len(p["alive_fraction_per_layer"]) == doc["model"]["layers"] == 6
    for png in PNGS:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["plots"] == list(PNGS)
    md = (out / "report.md").read_text()
    assert "| policy | DRAM bytes | cycles | energy | cosine mean |" in md
    assert "| spatten=default |" in md
    assert doc["command"].startswith("psa report --policies spatten=default/quant,topk=0.5")
    assert "--n-texts 5" in doc["command"]
    assert doc["corpus"]["n_texts"] == 5 and doc["dram"]["texts"] == 1
    assert "spatten=d" in output


def test_report_table_keeps_policy_names_whole_at_80_columns(small_report):
    _, doc, output = small_report
    lines = output.splitlines()
    assert max(len(line) for line in lines if "│" in line) <= 80
    for p in doc["policies"]:
        assert any(line.startswith(f"│ {p['name']} ") for line in lines), (p["name"], output)


def test_report_refuses_an_unusable_out_before_the_run(tmp_path):
    (tmp_path / "f").write_text("x")
    result = run(["--out", str(tmp_path / "f" / "sub")])
    assert result.exit_code == 2, result.output
    assert "Error: --out: cannot create folder" in result.output
    assert "Traceback" not in result.output


def test_report_figures(small_report):
    _, doc, _ = small_report
    pol = {p["name"]: p for p in doc["policies"]}
    dense = pol["dense"]
    for key in KEYS[2:]:
        assert dense[key] == pytest.approx(1.0)
    assert dense["alive_fraction_per_layer"] == [1.0] * 6
    sp = pol["spatten=default"]
    # quantization to 8+4 bit planes alone is at least 32/12 fewer bytes
    assert sp["dram"]["hbm2"]["vs_fp32"]["dram_bytes"] >= 32 / 12
    # the same-bits baseline reads every plane at 8+4 bits: 12/32 of fp32 up to burst rounding
    for preset in ("hbm2", "ddr4-2400"):
        d = sp["dram"][preset]
        fp32 = dense["dram"][preset]["dram_bytes"]
        assert d["same_bits_dense_bytes"] == pytest.approx(fp32 * 12 / 32, rel=0.1)
        assert d["vs_same_bits"]["dram_bytes"] > 1.0
        # the baseline depends only on the plane widths and the input lengths
        assert d["same_bits_dense_bytes"] == \
            pol["spatten=quant"]["dram"][preset]["same_bits_dense_bytes"]
        assert d["sim"]["cycles"] > 0 and d["sim"]["energy_nJ"] > 0
    assert pol["spatten=quant"]["alive_fraction_per_layer"] == [1.0] * 6
    assert pol["spatten=quant"]["cosine_mean"] > 0.99
    assert sp["alive_fraction_per_layer"][-1] < 1.0
    assert sp["heads_per_layer"][-1] == 11
    assert 0.0 <= pol["spatten=quant"]["refetch_rate"] <= 1.0
    assert pol["topk=0.5"]["dram_bytes_reduction"] == pytest.approx(1.0, abs=0.05)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random 3-layer, 4-head BERT with d_head 4 and 40 positions."""
    folder = tmp_path_factory.mktemp("tiny_bert_report")
    write_tiny(folder, num_hidden_layers=3)
    return BertEncoder(folder)


def test_simulate_dram_bytes_by_hand(tiny_model):
    """Bytes of the tiny model's dense and quantized traces, worked out by hand.

    Layout: per plane, ``[layer][head][40 tokens]`` rows, planes 4096-aligned; 3 layers x 4
    heads = 12 blocks per plane. Inputs of 9 and 20 tokens read tokens ``0..n-1`` of every
    block: one run of ``n`` rows each. HBM2 bursts are 32 B (64-bit x BL4), DDR4 64 B.

    - fp32 (16 B rows, 640 B blocks, burst-aligned): runs of 144 B and 320 B; HBM2 5 + 10
      bursts, DDR4 3 + 5 bursts; 12 blocks x 2 planes: 24 * 32 * 15 = 11520 B (HBM2),
      24 * 64 * 8 = 12288 B (DDR4).
    - 8-bit MSB planes only (4 B rows, 160 B blocks, aligned to 32): runs of 36 B (2 bursts)
      and 80 B (3 bursts): 24 * 32 * 5 = 3840 B.
    - every plane at 8+4 bits: the MSB planes as above, plus 4-bit LSB planes (2 B rows, 80 B
      blocks, so odd blocks start 16 B into a burst): a run of 18 B is 1 burst in an even
      block, 2 in an odd one; 40 B is 2 bursts either way: 2 planes * (6 * 1 + 6 * 2 + 12 *
      2) * 32 = 2688 B; with the MSB planes 6528 B.
    """
    inputs = [ids_for(tiny_model, n, SEED + n) for n in (9, 20)]
    quant = SpAttenPolicy(CascadeConfig(refetch_threshold=0.0))  # MSB planes, no pruning
    pruned = SpAttenPolicy(CascadeConfig(token_keep={0: 0.5}, head_keep={1: 2},
                                         refetch_threshold=0.0), name="pruned")
    results = [run_policy(tiny_model, inputs, pol) for pol in (DensePolicy(), quant, pruned)]
    dram = simulate_dram(results, ["hbm2", "ddr4-2400"], n_texts=2)
    dense, q = dram["dense"], dram["spatten"]
    assert dense["hbm2"]["dram_bytes"] == dense["hbm2"]["same_bits_dense_bytes"] == 11520
    assert dense["ddr4-2400"]["dram_bytes"] == 12288
    assert q["hbm2"]["dram_bytes"] == 3840
    assert q["hbm2"]["same_bits_dense_bytes"] == 6528
    assert q["hbm2"]["vs_fp32"]["dram_bytes"] == pytest.approx(11520 / 3840)
    assert q["hbm2"]["vs_same_bits"]["dram_bytes"] == pytest.approx(6528 / 3840)
    assert dense["hbm2"]["vs_fp32"] == {"dram_bytes": 1.0, "cycles": 1.0, "energy": 1.0}
    # every input simulated: the simulator's own burst count agrees, also for the scattered
    # rows of a pruned policy (each request pays for the bursts it touches, so scattered
    # 4 B rows cost more than the contiguous runs they came from)
    for name, per in dram.items():
        for preset, d in per.items():
            assert d["sim"]["dram_bytes"] == d["dram_bytes"], (name, preset)
    assert results[2].payload_bytes < results[1].payload_bytes
    # the simulated subset is the first input only: 24 fp32 runs of 5 bursts, 24 MSB runs of 2
    first = simulate_dram(results, ["hbm2"], n_texts=1)
    assert first["dense"]["hbm2"]["sim"]["dram_bytes"] == 24 * 5 * 32
    assert first["spatten"]["hbm2"]["sim"]["dram_bytes"] == 24 * 2 * 32
    assert first["spatten"]["hbm2"]["dram_bytes"] == 3840  # bytes still count every input
    with pytest.raises(ValueError, match="dense fp32"):
        simulate_dram(results[1:], ["hbm2"], 1)


def test_report_model_dir(tmp_path):
    folder = tmp_path / "tiny"
    write_tiny(folder, num_hidden_layers=3)
    out = tmp_path / "out"
    result = run(["--model-dir", str(folder), "--n-texts", "4", "--min-tokens", "10",
                  "--max-tokens", "30", "--dram-texts", "1", "--dram", "ddr4-2400",
                  "--policies", "spatten=aggressive,progressive=0.5,window=0.5", "--out",
                  str(out), "--traces"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "report.json").read_text())
    assert doc["model"]["layers"] == 3 and doc["primary_preset"] == "ddr4-2400"
    assert [p["name"] for p in doc["policies"]] == ["dense", "spatten=aggressive",
                                                     "progressive=0.5", "window=0.5"]
    # --traces writes what was simulated
    for p in doc["policies"]:
        trace = read_trace(out / "traces" / f"{p['name']}.trace")
        assert set(trace.layer.tolist()) == {0, 1, 2}
        sim = simulate(trace, "ddr4-2400")
        assert sim.cycles == p["dram"]["ddr4-2400"]["sim"]["cycles"]
        assert sim.dram_bytes == p["dram"]["ddr4-2400"]["sim"]["dram_bytes"]


@pytest.mark.parametrize("args,match", [
    (["--policies", "dense,bogus"], "unknown policy 'bogus'"),
    (["--policies", "topk=lots"], "keep must be a number"),
    (["--policies", "spatten=huge"], "spatten preset must be one of"),
    (["--dram", "sdram-66"], "unknown preset 'sdram-66'"),
    (["--min-tokens", "300", "--max-tokens", "200"], "--min-tokens"),
    (["--n-texts", "1"], "n-texts"),
])
def test_report_errors(tmp_path, args, match):
    result = run([*args, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2, result.output
    assert match in result.output
    assert not (tmp_path / "x" / "report.json").exists()


@pytest.mark.slow
def test_spatten_floor_on_default_corpus(tmp_path):
    """The issue's floor: SpAtten (token + head pruning + progressive quantization) reads at
    least 3x fewer DRAM bytes than dense fp32 at mean cosine >= 0.95 on the default corpus."""
    result = run(["--policies", "spatten=default", "--dram-texts", "1", "--out",
                  str(tmp_path)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["corpus"]["n_texts"] == 40 and doc["corpus"]["max_tokens"] == 256
    sp = doc["policies"][1]
    assert sp["name"] == "spatten=default"
    assert sp["params"]["token_keep"] and sp["params"]["head_keep"] and sp["bits"]["k_lsb"] > 0
    for preset in ("hbm2", "ddr4-2400"):
        assert sp["dram"][preset]["vs_fp32"]["dram_bytes"] >= 3.0, preset
    assert sp["cosine_mean"] >= 0.95
