"""``psa sweep``: grid parsing, outputs, per-point errors, resume, local pool and Dask.

Default run: unit tests of parsing, keys, Pareto front and the output files; real sweeps of the
adder (Yosys only, seconds per point) on a local process pool and on a
``dask.distributed.LocalCluster`` (loopback), with an invalid point and a failing stage that do
not stop the sweep, and an interrupted sweep that resumes; the top-k cycle stage on the RTL
suite's build. ``-m slow``: a 2-point top-k grid with cycles, synthesis and verification.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
from click.testing import CliRunner

from psa.cli import cli
from psa.flows.sweep import (
    CSV_COLUMNS,
    SweepOptions,
    evaluate_point,
    grid,
    load_done,
    pareto_front,
    parse_axis,
    point_key,
    run_sweep,
    write_outputs,
)

QUICK = SweepOptions(cycles=False, place=False)  # Yosys only: seconds per adder point


@pytest.fixture(scope="module")
def synth_cache(tmp_path_factory):
    """One synthesis cache for this module's sweeps (workers find it through the env)."""
    root = tmp_path_factory.mktemp("psa_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("PSA_CACHE_DIR", str(root))
    yield root
    mp.undo()


# -- parsing and keys


def test_parse_axis():
    assert parse_axis("4,8,16", int, "--lanes") == [4, 8, 16]
    assert parse_axis(" 8, 4 ,8", int) == [8, 4]
    assert parse_axis("true,0,no,YES", bool) == [True, False]
    for bad, kind, msg in (("4,x", int, "'x' is not a valid int"), ("4,,8", int, "comma"),
                           ("maybe", bool, "not a boolean")):
        with pytest.raises(ValueError, match=msg):
            parse_axis(bad, kind, "--lanes")


def test_grid_order_and_keys():
    g = grid({"lanes": [4, 8], "width": [8, 16]})
    assert g == [{"lanes": 4, "width": 8}, {"lanes": 4, "width": 16},
                 {"lanes": 8, "width": 8}, {"lanes": 8, "width": 16}]
    o = SweepOptions()
    k = point_key("topk", g[0], o)
    assert k == point_key("topk", dict(reversed(list(g[0].items()))), o)
    assert k == point_key("topk", g[0], SweepOptions(build_root="/elsewhere", cache_root="/c"))
    assert k != point_key("topk", g[0], SweepOptions(place=False))
    assert k != point_key("topk", g[1], o) != point_key("pruner", g[0], o)


def test_pareto_front():
    pts = [(10, 1.0), (20, 3.0), (15, 0.5), (30, 3.0), (40, 5.0), (20, 2.0)]
    assert pareto_front(pts) == [0, 1, 4]
    assert pareto_front([]) == []


def test_outputs_json_csv_and_plots(tmp_path):
    rows = [
        {"design": "topk", "lanes": 8, "width": 16, "status": "ok", "error": None, "key": "a",
         "n": 1024, "interval_cycles": 300.0, "cycles_per_beat": 2.34, "lut4": 1000,
         "fmax_mhz": 50.0, "throughput_meps": 170.9, "elements_per_cycle": 3.4},
        {"design": "topk", "lanes": 16, "width": 16, "status": "ok", "error": None, "key": "b",
         "n": 1024, "interval_cycles": 160.0, "cycles_per_beat": 2.5, "lut4": 2000,
         "fmax_mhz": 40.0, "throughput_meps": 256.0, "elements_per_cycle": 6.4},
        {"design": "topk", "lanes": 3, "width": 16, "status": "invalid", "key": "c",
         "error": "topk: lanes must be a power of two in 1..64, got 3"},
    ]
    meta = {"design": "topk", "axes": {"lanes": [8, 16, 3], "width": [16]}, "options": {}}
    files = write_outputs(tmp_path, rows, meta)
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["axes"] == meta["axes"] and data["points"] == rows
    with open(tmp_path / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["lanes", "width", *CSV_COLUMNS]
    assert [r["status"] for r in table] == ["ok", "ok", "invalid"]
    assert table[1]["fmax_mhz"] == "40.0" and table[2]["lut4"] == ""
    assert "power of two" in table[2]["error"]
    for name in ("cycles_vs_luts", "fmax_vs_lanes", "pareto"):
        assert files[name].endswith(f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



def test_pareto_plot_marks_a_point_that_does_not_fit(tmp_path, monkeypatch):
    """Area but no Fmax: a dashed line at its LUT4, labelled, instead of nothing."""
    import matplotlib.axes

    fitting = {"design": "topk", "lanes": 8, "status": "ok", "key": "a", "n": 1024,
               "interval_cycles": 163.0, "lut4": 14000, "fmax_mhz": 35.0, "fits": True,
               "throughput_meps": 219.0, "elements_per_cycle": 6.3}
    too_big = {"design": "topk", "lanes": 32, "status": "ok", "key": "b", "n": 1024,
               "interval_cycles": 51.0, "lut4": 95000, "fmax_mhz": None, "fits": False,
               "elements_per_cycle": 20.1}
    lines = []
    real_axvline = matplotlib.axes.Axes.axvline
    monkeypatch.setattr(matplotlib.axes.Axes, "axvline",
                        lambda ax, x, **kw: lines.append((x, kw.get("label")))
                        or real_axvline(ax, x, **kw))
    write_outputs(tmp_path, [fitting, too_big], {"design": "topk", "axes": {"lanes": [8, 32]}})
    assert lines == [(95000, "does not fit the part (area only)")]
    lines.clear()
    write_outputs(tmp_path, [fitting], {"design": "topk", "axes": {"lanes": [8]}})
    assert lines == []

def test_unrouted_point_gets_an_estimated_throughput_apart(tmp_path, monkeypatch):
    """Routing cut short: throughput from the placement estimate, in its own field and drawn."""
    import psa.flows.sweep as sweep

    monkeypatch.setattr(sweep, "measure_cycles", lambda *a: {
        "n": 1024, "interval_cycles": 160.0, "cycles_per_beat": 1.25})
    monkeypatch.setattr(sweep, "_synth_fields", lambda *a: {
        "lut4": 2000, "fmax_mhz": None, "fmax_placed_mhz": 30.0, "routed": False,
        "fits": True})
    row = evaluate_point("topk", {"lanes": 8, "width": 16, "max_n": 1024},
                         SweepOptions(cache_root=str(tmp_path)))
    assert row["status"] == "ok", row
    assert "throughput_meps" not in row
    assert row["throughput_est_meps"] == pytest.approx(8 * 30.0 / 1.25)
    routed = {"design": "topk", "lanes": 4, "width": 16, "max_n": 1024, "status": "ok",
              "key": "r", "n": 1024, "interval_cycles": 262.0, "lut4": 900,
              "fmax_mhz": 44.0, "throughput_meps": 172.0, "elements_per_cycle": 3.9}
    meta = {"design": "topk", "axes": {"lanes": [4, 8]}, "options": {}}
    write_outputs(tmp_path, [routed, row], meta)
    with open(tmp_path / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert table[1]["throughput_meps"] == "" and float(table[1]["throughput_est_meps"]) == 192.0
    assert (tmp_path / "pareto.png").stat().st_size > 1000


def test_table_marks_unrouted_points_and_their_estimate():
    from rich.console import Console

    from psa.cli.sweep import render

    rows = [{"lanes": 8, "status": "ok", "lut4": 1000, "fits": True, "routed": True,
             "fmax_mhz": 50.0, "fmax_placed_mhz": 52.5},
            {"lanes": 16, "status": "ok", "lut4": 2000, "fits": True, "routed": False,
             "fmax_mhz": None, "fmax_placed_mhz": 31.25}]
    console = Console(width=200, record=True)
    console.print(render(rows, ["lanes"]))
    lines = console.export_text().splitlines()
    row8 = next(line for line in lines if "1000" in line)
    row16 = next(line for line in lines if "2000" in line)
    assert "50.0" in row8 and "52.5" in row8 and "unfinished" not in row8
    assert "31.2" in row16 and "ok (routing unfinished)" in row16


def test_cli_rejects_bad_lists_and_both_executors(tmp_path):
    r = CliRunner().invoke(cli, ["sweep", "topk", "--lanes", "4,x", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--lanes: 'x' is not a valid int" in r.output
    r = CliRunner().invoke(cli, ["sweep", "topk", "--jobs", "2", "--dask", "tcp://127.0.0.1:1",
                                 "--out", str(tmp_path)])
    assert r.exit_code == 2 and "either --jobs" in r.output


# -- real sweeps of the adder (Yosys only)


def test_local_pool_grid_with_an_invalid_point(tmp_path, synth_cache):
    """Two good widths and one out of range, on two processes: the bad one is reported."""
    r = CliRunner().invoke(cli, ["sweep", "adder", "--width", "4,0,8", "--no-place", "--jobs",
                                 "2", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "width=0 invalid: RegisteredAdder: width must be an integer in 1..64, got 0" \
        in r.output
    data = json.loads((tmp_path / "sweep.json").read_text())
    rows = data["points"]
    assert [(p["width"], p["status"]) for p in rows] == [(4, "ok"), (0, "invalid"), (8, "ok")]
    ok = [p for p in rows if p["status"] == "ok"]
    assert all(p["ff"] > 0 and p["generic_cells"] > 0 and p["fits"] is None for p in ok)
    assert ok[1]["ff"] > ok[0]["ff"]  # a wider adder has more registers
    assert len(load_done(tmp_path / "points.jsonl")) == 3
    assert (tmp_path / "pareto.png").exists()


def test_dask_local_cluster(tmp_path, synth_cache):
    """The same grid on a LocalCluster (loopback, two worker processes) via --dask."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        r = CliRunner().invoke(cli, ["sweep", "adder", "--width", "4,8", "--no-place",
                                     "--dask", cluster.scheduler_address,
                                     "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert f"running on Dask {cluster.scheduler_address}" in r.output
    rows = json.loads((tmp_path / "sweep.json").read_text())["points"]
    assert [(p["width"], p["status"]) for p in rows] == [(4, "ok"), (8, "ok")]
    direct = evaluate_point("adder", {"width": 8}, QUICK)
    assert {k: rows[1][k] for k in ("lut4", "ff", "ccu2c", "generic_cells")} == \
        {k: direct[k] for k in ("lut4", "ff", "ccu2c", "generic_cells")}


def test_unreachable_dask_scheduler_is_a_clean_error(tmp_path):
    with pytest.raises(RuntimeError, match="cannot reach the Dask scheduler at tcp://127"):
        run_sweep("adder", {"width": [4]}, tmp_path, QUICK, dask_address="tcp://127.0.0.1:9",
                  dask_timeout_s=1.0)


def test_failing_stage_is_reported_and_the_sweep_goes_on(tmp_path):
    """A synthesis timeout (fresh cache, so the tools really run) is an error of that point."""
    options = SweepOptions(cycles=False, place=False, synth_timeout_s=0.01,
                           cache_root=str(tmp_path / "cache"))
    run = run_sweep("adder", {"width": [4, 0]}, tmp_path / "out", options, plots=False)
    assert [r["status"] for r in run.rows] == ["error", "invalid"]
    assert run.rows[0]["error"].startswith("synth: SynthError: yosys timed out: after 0.01 s")
    assert "Traceback" in run.rows[0]["error_detail"]["synth"]


def test_interrupted_sweep_resumes(tmp_path, synth_cache):
    calls = []

    def interrupt_second(design, params, options):
        calls.append(params["width"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return evaluate_point(design, params, options)

    axes = {"width": [4, 8]}
    with pytest.raises(KeyboardInterrupt):
        run_sweep("adder", axes, tmp_path, QUICK, evaluate=interrupt_second)
    partial = json.loads((tmp_path / "sweep.json").read_text())
    assert partial["interrupted"] and [p["width"] for p in partial["points"]] == [4]

    resumed = []

    def count(design, params, options):
        resumed.append(params["width"])
        return evaluate_point(design, params, options)

    run = run_sweep("adder", axes, tmp_path, QUICK, evaluate=count)
    assert resumed == [8] and (run.reused, run.evaluated) == (1, 1)
    assert [r["width"] for r in run.rows] == [4, 8]
    assert all(r["status"] == "ok" for r in run.rows)
    assert "interrupted" not in json.loads((tmp_path / "sweep.json").read_text())
    # Everything is done: nothing runs again unless --restart.
    assert run_sweep("adder", axes, tmp_path, QUICK, evaluate=count).evaluated == 0
    assert run_sweep("adder", axes, tmp_path, QUICK, restart=True).evaluated == 2


def test_error_points_are_retried_on_resume(tmp_path, synth_cache):
    def broken(design, params, options):
        row = evaluate_point(design, params, options)
        return row | {"status": "error", "error": "synth: boom"}

    run_sweep("adder", {"width": [4]}, tmp_path, QUICK, evaluate=broken, plots=False)
    run = run_sweep("adder", {"width": [4]}, tmp_path, QUICK, plots=False)
    assert run.evaluated == 1 and run.rows[0]["status"] == "ok"


# -- top-k cycles


def cycle_row(design: str, params: dict, out, build_root) -> dict:
    """The row of a one-point sweep with the cycle stage only (4 packets / rows)."""
    run = run_sweep(design, {k: [v] for k, v in params.items()}, out,
                    SweepOptions(synth=False, packets=4, build_root=str(build_root)),
                    plots=False)
    (row,) = run.rows
    assert row["status"] == "ok", row["error"]
    return row


@pytest.mark.rtl
def test_topk_cycle_stage(tmp_path, sim_build_root):
    """The bench's cycles test on the RTL suite's build: one pass over the input at least."""
    row = cycle_row("topk", {"lanes": 4, "width": 8, "max_n": 64, "signed": True}, tmp_path,
                    sim_build_root)
    assert (row["n"], row["k"]) == (64, 16)
    beats = math.ceil(64 / 4)
    assert row["interval_cycles"] >= beats and row["cycles_per_beat"] >= 1.0
    assert row["latency_cycles"] > beats
    assert [s["n"] for s in row["cycles_by_size"]] == [16, 64]
    assert row["elements_per_cycle"] == pytest.approx(4 / row["cycles_per_beat"])
    assert "lut4" not in row and "throughput_meps" not in row


@pytest.mark.rtl
@pytest.mark.slow
def test_topk_two_point_grid_with_synthesis_and_verification(tmp_path, sim_build_root):
    r = CliRunner().invoke(cli, [
        "sweep", "topk", "--lanes", "2,4", "--width", "4", "--max-n", "16", "--no-abc9",
        "--device", "ecp5-25k", "--packets", "5", "--verify", "--verify-packets", "20",
        "--jobs", "2", "--build-root", str(sim_build_root), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "sweep.json").read_text())["points"]
    assert [p["status"] for p in rows] == ["ok", "ok"], [p["error"] for p in rows]
    for p in rows:
        assert p["verified"] and p["lut4"] > 0 and p["fits"] is True and p["fmax_mhz"] > 0
        assert p["throughput_meps"] == pytest.approx(
            p["lanes"] * p["fmax_mhz"] / p["cycles_per_beat"])
    assert rows[1]["lut4"] > rows[0]["lut4"]
    assert rows[1]["interval_cycles"] < rows[0]["interval_cycles"]


@pytest.mark.rtl
@pytest.mark.slow
def test_pruner_cycle_stage(tmp_path, sim_build_root):
    """The pruner's cycles test through the generic sweep: P probabilities per cycle."""
    from psa.verif.pruner_cases import PARAM_SETS

    row = cycle_row("pruner", PARAM_SETS["main"].kwargs(), tmp_path, sim_build_root)
    assert (row["n"], row["k"]) == (64, 32)
    assert row["interval_cycles"] >= 4 * 64 // 8 and row["cycles_per_beat"] >= 1.0
    assert row["latency_cycles"] == row["prune_cycles"] + row["fetch_cycles"] > 0
