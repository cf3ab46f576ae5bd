"""``psa dram`` end to end: tables, JSON schema, plots, comparisons and clean errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from psa.cli import cli
from psa.golden.trace import AccessTrace
from psa.sim.frontend import SPATTEN_HEADER
from psa.sim.spec import CMDS


@pytest.fixture
def traces(tmp_path):
    rng = np.random.default_rng(11)
    dense = tmp_path / "dense.trace"
    pruned = tmp_path / "pruned.trace"
    AccessTrace(np.arange(6000, dtype=np.uint64) * 64, 64).write(dense)
    keep = np.sort(rng.choice(6000, 1500, replace=False)).astype(np.uint64)
    AccessTrace(keep * 64, 64).write(pruned)
    return dense, pruned


def invoke(*args):
    return CliRunner().invoke(cli, ["dram", *map(str, args)], catch_exceptions=False)


def test_single_trace_json_schema(traces, tmp_path):
    out = tmp_path / "o.json"
    r = invoke(traces[0], "--preset", "hbm2", "--json", out)
    assert r.exit_code == 0, r.output
    assert "row hit rate" in r.output
    d = json.loads(out.read_text())
    for key in ("schema_version", "preset", "requests", "payload_bytes", "dram_bytes", "cycles",
                "ns", "bandwidth_GBps", "peak_GBps", "row_hits", "row_misses", "row_conflicts",
                "read_latency_cycles", "commands", "energy_nJ"):
        assert key in d, key
    assert d["schema_version"] == 1 and d["preset"] == "hbm2" and d["requests"] == 6000
    assert set(d["read_latency_cycles"]) >= {"mean", "p50", "p99"}
    assert set(d["commands"]) == set(CMDS)  # every command of the model, counted


def test_compare_reports_reductions_and_plots(traces, tmp_path):
    out, png = tmp_path / "o.json", tmp_path / "o.png"
    dense, pruned = traces
    r = invoke(pruned, "--compare", dense, "--json", out, "--plot", png, "--mapping",
               "RoBaRaCoCh", "--scheduler", "frfcfs-ramulator", "--refresh", "off")
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["baseline"]["requests"] == 6000 and d["requests"] == 1500
    assert d["reduction"]["dram_bytes"] == pytest.approx(4.0)
    assert d["reduction"]["cycles"] > 1 and d["reduction"]["energy"] > 1
    assert png.read_bytes()[:4] == b"\x89PNG"
    # two traces without --compare: the first is the baseline
    r2 = invoke(dense, pruned, "--json", out)
    assert r2.exit_code == 0 and "reduction" in json.loads(out.read_text())


def test_spatten_csv_through_cli(tmp_path):
    p = tmp_path / "wl.csv"
    p.write_text(",".join(SPATTEN_HEADER) + "\n0,0,0,64,32,32,-1,12,0.1,0,4,8,8,1,0,1,8\n"
                 "configs/gpt2.yaml\n")
    out = tmp_path / "o.json"
    r = invoke(p, "--full-bits", "16", "--json", out)
    assert r.exit_code == 0, r.output
    d = json.loads(out.read_text())
    assert d["payload_bytes"] == (32 * 64 * 16 + 8 * 64 * 8) / 8


def test_list_presets():
    r = invoke("--list-presets")
    assert r.exit_code == 0 and "ddr4-2400" in r.output and "hbm2" in r.output


@pytest.mark.parametrize("content,args,match", [
    ("R 0x0 64\nR 0x40\n", [], "bad.trace:2: expected 'R ADDR BYTES'"),
    ("R 0x0 64\n", ["--preset", "ddr9"], "unknown preset 'ddr9'; known presets"),
    ("R 0x400000000000 64\n", [], "beyond the capacity"),
    ("R 0x0 4294967295\n", [], "bad.trace: the trace expands to 67,108,864 bursts of 64 B; "
     "the DRAM model takes at most 8,388,608 bursts"),
    ("R 0x0 64\nR 0xffffffffffffffff 64\n", [], "bad.trace:2: request of 64 bytes at "
     "0xffffffffffffffff runs past the last address"),
    ("R 0x0 64\n-3 R 0x40 64\n", [], "bad.trace:2: issue time must be >= 0 ns"),
])
def test_errors_are_clean(tmp_path, content, args, match):
    p = tmp_path / "bad.trace"
    p.write_text(content)
    r = CliRunner().invoke(cli, ["dram", str(p), *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert match in r.output


def test_binary_trace_names_file_and_line(tmp_path):
    p = tmp_path / "bad.trace"
    p.write_bytes(bytes(range(256)) * 4)
    r = CliRunner().invoke(cli, ["dram", str(p)])
    assert r.exit_code == 2, r.output
    assert "bad.trace:" in r.output and "expected a text trace" in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("value", ["0", "-1"])
def test_max_rows_below_one_is_refused(tmp_path, value):
    p = tmp_path / "wl.csv"
    p.write_text(",".join(SPATTEN_HEADER) + "\n0,0,0,64,10,10,-1,12,0.1,0,4,3,8,1,0,1,3\n")
    r = CliRunner().invoke(cli, ["dram", str(p), "--max-rows", value])
    assert r.exit_code == 2, r.output
    assert "--max-rows" in r.output and "x>=1" in r.output


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_unwritable_outputs_are_refused_before_the_run(tmp_path, option):
    # the trace does not exist: the output path must be refused before anything is read
    r = CliRunner().invoke(cli, ["dram", str(tmp_path / "missing.trace"),
                                 option, str(tmp_path / "no" / "such" / "out.x")])
    assert r.exit_code == 2, r.output
    assert f"Error: {option}: folder" in r.output and "does not exist" in r.output
    assert not (tmp_path / "no").exists()


def test_binary_trace_and_parallel_channels(traces, tmp_path):
    dense = traces[0]
    npy = tmp_path / "dense.npy"
    from psa.golden.trace import read_trace
    read_trace(dense).write(npy)
    outs = {}
    for name, args in (("text", [dense]), ("npy", [npy]), ("j1", [npy, "--jobs", "1"]),
                       ("j2", [npy, "--jobs", "2"])):
        out = tmp_path / f"{name}.json"
        r = invoke(*args, "--preset", "hbm2", "--json", out)
        assert r.exit_code == 0, r.output
        outs[name] = json.loads(out.read_text())
        outs[name].pop("source")
    assert outs["npy"] == outs["text"]
    assert outs["j2"] == outs["j1"]  # per-channel mode: any number of processes
    assert outs["j1"]["bursts"] == outs["text"]["bursts"]


@pytest.mark.parametrize("args,match", [
    (["--jobs", "2", "--dask", "tcp://127.0.0.1:9"], "either --jobs"),
    (["--jobs", "2", "--max-outstanding", "4"], "--max-outstanding bounds requests"),
    (["--jobs", "0"], "--jobs"),
])
def test_parallel_options_are_checked(traces, args, match):
    r = CliRunner().invoke(cli, ["dram", str(traces[0]), *args])
    assert r.exit_code == 2, r.output
    assert match in r.output


def test_compile_says_what_it_does():
    r = CliRunner().invoke(cli, ["dram", "--compile"])
    assert r.exit_code == 0, r.output
    assert "compiling the DRAM kernel" in r.output or "DRAM kernel" in r.output
