"""``psa report --model smollm2``: option checks (errors name the option) and the dispatch."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from psa.cli import cli


@pytest.mark.parametrize("args,option", [
    (["--model", "smollm2", "--context", "abc"], "--context"),
    (["--model", "smollm2", "--context", "1"], "--context"),
    (["--model", "smollm2", "--decode", "0"], "--decode"),
    (["--model", "smollm2", "--context", "512", "--decode", "512"], "--context"),
    (["--model", "smollm2", "--texts", "0"], "--texts"),
    (["--model", "minilm", "--texts", "3"], "--texts"),
    (["--model", "minilm", "--dram-check"], "--dram-check"),
    (["--model", "smollm2", "--dram-every", "0"], "--dram-every"),
    (["--model", "smollm2", "--dram", "nope"], "--dram"),
    (["--model", "smollm2", "--policies", "bogus"], "--policies"),
    (["--model", "smollm2", "--n-texts", "5"], "--n-texts"),
    (["--model", "smollm2", "--traces"], "--traces"),
    (["--context", "512"], "--context"),          # decoder option with the default minilm
    (["--model", "minilm", "--decode", "4"], "--decode"),
])
def test_bad_options_name_the_option(tmp_path, args, option):
    r = CliRunner().invoke(cli, ["report", *args, "--out", str(tmp_path / "o")])
    assert r.exit_code == 2, r.output
    assert "Error" in r.output and option in r.output, r.output


def test_decoder_runs_through_the_cli(tmp_path, monkeypatch):
    """The CLI builds the config from the options and prints every policy name whole."""
    import numpy as np

    from psa.models.llama import LlamaConfig, LlamaDecoder
    from psa.reports import decoder as dec

    cfg = LlamaConfig(n_layers=2, hidden=32, n_heads=4, n_kv_heads=2, head_dim=8, ffn=48,
                      vocab=50, rope_base=10000.0, rms_eps=1e-5, max_context=128)
    real = dec.run_decoder_report
    seen = {}

    def tiny(c, stage=None, **_):
        seen["cfg"] = c
        toks = np.random.default_rng(3).integers(0, 50, 2 * 25)
        return real(c, stage, model=LlamaDecoder.random(cfg, seed=3), tokens=toks)

    monkeypatch.setattr(dec, "run_decoder_report", tiny)
    out = tmp_path / "rep"
    r = CliRunner().invoke(cli, ["report", "--model", "smollm2", "--context", "16,24",
                                 "--decode", "4", "--texts", "2", "--dram-every", "2",
                                 "--dram-check", "--policies", "dense,quest=0.25", "--dram",
                                 "ddr4-2400", "--out", str(out)])
    assert r.exit_code == 0, r.output
    c = seen["cfg"]
    assert (c.contexts, c.decode, c.texts, c.dram_every, c.dram_check, c.presets) == \
        ((16, 24), 4, 2, 2, True, ("ddr4-2400",))
    assert "Error of --dram-every 2" in r.output and "peak memory" in r.output
    assert "--context 16,24" in c.command
    assert "quest=0.25" in r.output and "dense=32" in r.output
    assert (out / "report.md").exists() and (out / "pareto_decoder.png").exists()
