"""The psa CLI: help texts, the demo on a small workload, and clean errors."""

import json

from click.testing import CliRunner

from psa.cli import cli
from psa.golden.trace import read_trace


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_help_lists_commands():
    res = run("--help")
    assert res.exit_code == 0
    assert "demo" in res.output and "scores -> top-k" in res.output


def test_demo_small(tmp_path):
    res = run("demo", "--layers", "4", "--heads", "4", "--tokens", "128", "--d-head", "16",
              "--token-keep", "0:0.5,2:10", "--head-keep", "1:2",
              "--trace-dir", str(tmp_path), "--json", str(tmp_path / "demo.json"))
    assert res.exit_code == 0, res.output
    assert "K/V DRAM bytes:" in res.output and "reduction" in res.output
    data = json.loads((tmp_path / "demo.json").read_text())
    assert [row["alive_tokens"] for row in data["layers"]] == [128, 64, 64, 10]
    assert [row["heads"] for row in data["layers"]] == [4, 4, 2, 2]
    pruned = read_trace(tmp_path / "pruned.trace")
    dense = read_trace(tmp_path / "dense_fp32.trace")
    assert pruned.payload_bytes == data["kv_bytes"]["pruned"]
    assert dense.payload_bytes == data["kv_bytes"]["dense_fp32"] == 4 * 4 * 128 * 16 * 4 * 2
    assert data["reduction_vs_fp32"] > 1


def test_bad_arguments_are_clean_errors():
    res = CliRunner().invoke(cli, ["demo", "--tokens", "0"])
    assert res.exit_code == 2 and "--tokens" in res.output and "1<=x<=8192" in res.output
    res = CliRunner().invoke(cli, ["demo", "--token-keep", "2=0.9"])
    assert res.exit_code == 2 and "LAYER:KEEP" in res.output
    res = CliRunner().invoke(cli, ["demo", "--layers", "4", "--token-keep", "9:0.5"])
    assert res.exit_code == 2 and "token_keep: layer must be in 0..3" in res.output
    assert "Traceback" not in res.output


def test_every_subcommand_explains_itself():
    from psa.cli import COMMANDS

    for name in COMMANDS:
        res = CliRunner().invoke(cli, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)
        assert "Usage:" in res.output and "Error" not in res.output, (name, res.output)
