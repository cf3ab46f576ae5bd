"""Long commands with output redirected: start, stage and heartbeat lines; output paths checked
before the run (``psa synth --json``, ``psa verilog -o``, ``psa report --out``)."""

from __future__ import annotations

import functools
import time

import pytest
from click.testing import CliRunner

import psa.cli.synth as synth_cli
from psa.cli import cli
from psa.cli.progress import heartbeat


def test_heartbeat_prints_start_stages_beats_and_end():
    from rich.console import Console

    console = Console(file=None, force_terminal=False, width=120, record=True)
    with heartbeat(console, "job", every_s=0.05) as stage:
        stage("yosys")
        time.sleep(0.2)
    text = console.export_text()
    lines = text.splitlines()
    assert lines[0].endswith("job: started") and lines[1].endswith("job: yosys")
    assert "job: still running (yosys)" in text
    assert lines[-1].split("] ", 1)[1].startswith("job: done")


def test_heartbeat_reports_a_failure():
    from rich.console import Console

    console = Console(force_terminal=False, width=120, record=True)
    with pytest.raises(RuntimeError), heartbeat(console, "job", every_s=10) as _:
        raise RuntimeError("x")
    assert "job: failed" in console.export_text()


class _Stop(Exception):
    pass


def test_synth_prints_progress_when_not_on_a_terminal(monkeypatch):
    def fake(design, params, *, progress, **kw):
        progress("yosys")
        time.sleep(0.2)
        progress("nextpnr")
        raise _Stop  # the table itself is tested with real results in tests/hw/test_synth.py

    monkeypatch.setattr(synth_cli, "synthesize", fake)
    monkeypatch.setattr(synth_cli, "heartbeat", functools.partial(heartbeat, every_s=0.05))
    res = CliRunner().invoke(cli, ["synth", "adder", "--width", "4"])
    assert isinstance(res.exception, _Stop)
    out = res.output
    for text in ("adder: started", "adder: yosys", "adder: still running (yosys)",
                 "adder: nextpnr", "adder: failed"):
        assert text in out, out


@pytest.mark.parametrize("under", ["missing", "file"])
def test_synth_json_is_checked_before_any_tool(tmp_path, monkeypatch, under):
    monkeypatch.setattr(synth_cli, "synthesize", lambda *a, **k: pytest.fail("synthesised"))
    (tmp_path / "file").write_text("x")
    res = CliRunner().invoke(cli, ["synth", "adder", "--json", str(tmp_path / under / "r.json")])
    assert res.exit_code == 2, res.output
    assert "Error: --json: folder" in res.output and "does not exist" in res.output


def test_verilog_output_folder_must_exist(tmp_path):
    res = CliRunner().invoke(cli, ["verilog", "topk", "-o", str(tmp_path / "nope" / "t.v")])
    assert res.exit_code == 2, res.output
    assert "Error:" in res.output and "does not exist" in res.output
    assert not (tmp_path / "nope").exists()


def test_verify_prints_progress_and_checks_json_first(tmp_path, monkeypatch):
    import psa.cli.verify as verify_cli

    monkeypatch.setattr(verify_cli.verif_lib, "verify",
                        lambda *a, **k: pytest.fail("ran before --json was checked"))
    res = CliRunner().invoke(cli, ["verify", "topk", "--json", str(tmp_path / "no" / "v.json")])
    assert res.exit_code == 2 and "Error: --json: folder" in res.output, res.output

    def slow(*a, **k):
        time.sleep(0.2)
        raise _Stop

    monkeypatch.setattr(verify_cli.verif_lib, "verify", slow)
    monkeypatch.setattr(verify_cli, "heartbeat", functools.partial(heartbeat, every_s=0.05))
    res = CliRunner().invoke(cli, ["verify", "topk"])
    assert isinstance(res.exception, _Stop)
    assert "topk: building and simulating on Verilator: started" in res.output, res.output
    assert "still running" in res.output and "failed" in res.output


def test_dram_prints_a_start_line_when_not_on_a_terminal(tmp_path):
    trace = tmp_path / "t.trace"
    trace.write_text("R 0x0 64\nR 0x40 64\n")
    res = CliRunner().invoke(cli, ["dram", str(trace)])
    assert res.exit_code == 0, res.output
    assert "simulating t.trace on ddr4-2400: started" in res.output
    assert "simulating t.trace on ddr4-2400: done" in res.output
