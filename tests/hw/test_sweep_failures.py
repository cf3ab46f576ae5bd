"""``psa sweep`` failure reporting: the failing tool's log lines, red crosses for failed points
in the plots, and exit status 2 once every other point has run (no tools are run here)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import psa.cli.sweep as cli_sweep
import psa.flows.sweep as sweep
from psa.cli import cli
from psa.flows.synth import SynthError

LOG = "ERROR: Assert `n->type == AigNode::AND' failed in passes/techmap/abc9.cc:512.\nEnd of log"


def _fail_synth(*_args, **_kwargs):
    raise SynthError("yosys", 1, LOG)


def test_failing_tool_keeps_its_log_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "_synth_fields", _fail_synth)
    row = sweep.evaluate_point("adder", {"width": 4},
                               sweep.SweepOptions(cycles=False, cache_root=str(tmp_path)))
    assert row["status"] == "error"
    assert row["error"] == ("synth: SynthError: yosys failed (exit status 1); "
                            "log tail in error_log")
    assert row["error_log"] == {"synth": LOG}


def test_failing_tool_with_an_empty_log_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "_synth_fields",
                        lambda *a: (_ for _ in ()).throw(SynthError("yosys", 1, "")))
    row = sweep.evaluate_point("adder", {"width": 4},
                               sweep.SweepOptions(cycles=False, cache_root=str(tmp_path)))
    assert row["error"].endswith("yosys failed (exit status 1); its log is empty")


OK_ROW = {"design": "topk", "lanes": 4, "width": 8, "max_n": 64, "status": "ok", "key": "a",
          "n": 64, "interval_cycles": 20.0, "lut4": 900, "fmax_mhz": 44.0,
          "throughput_meps": 150.0, "elements_per_cycle": 3.2}
FAILED_ROW = {"design": "topk", "lanes": 8, "width": 8, "max_n": 64, "status": "error",
              "key": "b", "error": "synth: SynthError: yosys failed", "error_log": {"synth": LOG}}


def test_plots_mark_failed_points_with_a_legend_entry(tmp_path, monkeypatch):
    import matplotlib.axes

    crosses = []
    real_scatter = matplotlib.axes.Axes.scatter

    def spy(ax, x, y, **kw):
        if kw.get("marker") == "x":
            crosses.append((ax.get_title(), list(x), kw.get("color"), kw.get("label")))
        return real_scatter(ax, x, y, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", spy)
    texts = []
    real_text = matplotlib.axes.Axes.text
    monkeypatch.setattr(matplotlib.axes.Axes, "text",
                        lambda ax, *a, **kw: texts.append(a[2]) or real_text(ax, *a, **kw))
    write = sweep.write_outputs(tmp_path, [OK_ROW, FAILED_ROW],
                                {"design": "topk", "axes": {"lanes": [4, 8]}})
    assert set(write) >= {"cycles_vs_luts", "fmax_vs_lanes", "pareto"}
    # Fmax vs lanes: the failed point has its x value (lanes = 8), a red cross there
    assert ([8], "red", "failed point (1; see sweep.json)") in \
        [(x, c, lab) for _, x, c, lab in crosses]
    # LUT4 axes: no x value, listed in a corner with a legend-only cross
    assert sum(c[1] == [] for c in crosses) == 2
    assert texts.count("x failed: P8") == 2
    crosses.clear()
    texts.clear()
    sweep.write_outputs(tmp_path, [OK_ROW], {"design": "topk", "axes": {"lanes": [4]}})
    assert crosses == [] and not any(t.startswith("x failed") for t in texts)


def _fake_evaluate(design, params, options):
    row = {"design": design, **params, "key": sweep.point_key(design, params, options),
           "status": "ok", "error": None, "lut4": 10, "elapsed_s": 0.0}
    if params["width"] == 8:
        row.update(status="error", error="synth: SynthError: yosys failed (exit status 1); "
                   "log tail in error_log", error_log={"synth": LOG})
    return row


def test_cli_shows_the_log_finishes_the_others_and_exits_2(tmp_path, monkeypatch):
    real = sweep.run_sweep
    monkeypatch.setattr(cli_sweep, "run_sweep",
                        lambda *a, **kw: real(*a, **{**kw, "jobs": 1}, evaluate=_fake_evaluate))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["sweep", "adder", "--width", "8,4,12", "--no-cycles",
                                 "--out", str(out)])
    assert r.exit_code == 2, r.output
    text = r.output
    assert "synth: last lines of the tool's log:" in text
    assert "ERROR: Assert `n->type == AigNode::AND' failed" in text and "End of log" in text
    assert "Error: 1 of 3 point(s) failed" in text
    assert "sweep adder: started" in text and "sweep adder: done" in text  # not a terminal
    rows = json.loads((out / "sweep.json").read_text())["points"]
    assert [(row["width"], row["status"]) for row in rows] == [
        (8, "error"), (4, "ok"), (12, "ok")]
    assert (out / "pareto.png").exists()


def test_cli_exits_0_when_every_point_is_ok(tmp_path, monkeypatch):
    real = sweep.run_sweep
    monkeypatch.setattr(cli_sweep, "run_sweep",
                        lambda *a, **kw: real(*a, **{**kw, "jobs": 1}, evaluate=_fake_evaluate))
    r = CliRunner().invoke(cli, ["sweep", "adder", "--width", "4,12", "--no-cycles",
                                 "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_cli_refuses_an_unusable_out_before_any_point(tmp_path, monkeypatch, where):
    monkeypatch.setattr(cli_sweep, "run_sweep", lambda *a, **kw: pytest.fail("sweep ran"))
    blocker = tmp_path / "f"
    blocker.write_text("x")
    out = blocker if where == "file" else blocker / "sub"
    r = CliRunner().invoke(cli, ["sweep", "adder", "--width", "4", "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert "Error" in r.output and ("--out" in r.output or "is a file" in r.output), r.output
