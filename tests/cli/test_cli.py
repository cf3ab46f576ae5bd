"""The psa CLI: help texts, the demo on a small workload, and clean errors."""

import json

import pytest
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


@pytest.mark.parametrize("args, message", [
    (["--head-keep", "2:20"], "--head-keep: layer 2 keeps 20 heads; a count must be in 1..12"),
    (["--token-keep", "2:2000", "--tokens", "128"],
     "--token-keep: layer 2 keeps 2000 tokens; a count must be in 1..128"),
    (["--token-keep", "2:0"], "--token-keep: layer 2 keeps 0 tokens; a count must be in 1..1024"),
    (["--head-keep", "2:0.0"], "--head-keep: layer 2 keeps 0.0; a fraction must be in (0, 1]"),
    (["--token-keep", "2:1.5"], "--token-keep: layer 2 keeps 1.5; a fraction must be in (0, 1]"),
])
def test_demo_refuses_keep_values_outside_the_workload(args, message):
    res = CliRunner().invoke(cli, ["demo", *args])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()), res.output


def test_demo_refuses_unwritable_outputs_before_running(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = CliRunner().invoke(cli, ["demo", "--trace-dir", str(blocker / "sub")])
    assert res.exit_code == 2, res.output
    assert "--trace-dir: cannot create folder" in res.output, res.output
    res = CliRunner().invoke(cli, ["demo", "--json", str(tmp_path / "no" / "d.json")])
    assert res.exit_code == 2 and "--json: folder" in res.output, res.output
    assert "running the cascade" not in res.output and "Cascade pruning" not in res.output


def test_demo_reports_refetch_by_rows_and_by_bytes(tmp_path):
    out = tmp_path / "demo.json"
    res = CliRunner(env={"COLUMNS": "160"}).invoke(cli, [
        "demo", "--layers", "2", "--heads", "2", "--tokens", "64", "--d-head", "16",
        "--threshold", "1.0", "--token-keep", "none", "--head-keep", "none", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "LSB refetch (query rows)" in res.output and "LSB share of bytes read" in res.output
    rows = json.loads(out.read_text())["layers"]
    # threshold 1.0: every row is flat, every row refetches K and V LSBs (8+4 bits):
    # 4 of every 12 bits read are LSBs
    for row in rows:
        assert row["refetch_rows_share"] == 1.0
        assert row["lsb_bytes_share"] == pytest.approx(4 / 12)
