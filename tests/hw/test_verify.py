"""``psa verify``: the test suite's bench for one configuration, pass and clear failure.

Default run: the RTL suite's own top-k build (P=4, W=8, N=64, signed; reused from
``sim_build``) passes; the same build checked against unsigned expectations (a deliberately
wrong golden) fails with the first mismatching packet, expected and actual values shown.
``-m slow``: a netlist with a corrupted output bit (its own build) and the pruner.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner
from rich.console import Console

from psa.cli import cli
from psa.cli.verify import print_result
from psa.hw.designs import get_design
from psa.verif.designs import BENCH_DESIGNS, get_bench
from psa.verif.verify import Mismatch, parse_mismatch, read_outcomes, verify

TOPK = dict(lanes=4, width=8, max_n=64, signed=True)  # the RTL suite's default build


def test_parse_mismatch_of_a_scoreboard_message():
    msg = ("seed=5 P=2 W=4 N=8 signed=0: 2 mismatch(es); first: packet 1 equal n=3 k=3: "
           "expected [(0, 3), (1, 3), (2, 3)], got [(0, 3), (1, 2)] | packet 2 x: expected "
           "[(0, 1)], got [(0, 2)]")
    m = parse_mismatch(msg)
    assert m == Mismatch("packet 1 equal n=3 k=3", [(0, 3), (1, 3), (2, 3)], [(0, 3), (1, 2)], 1)
    text = m.describe()
    assert "first difference at item 1" in text and "[(1, 3), (2, 3)]" in text
    assert parse_mismatch("seed 3 layer 2 fetch trace: hardware has 4 entries") is None


def test_read_outcomes_of_a_results_file(tmp_path):
    xml = tmp_path / "results.xml"
    xml.write_text('<?xml version="1.0"?><testsuites><testsuite name="t">'
                   '<testcase name="a" classname="m"/>'
                   '<testcase name="b" classname="m"><failure message="boom: expected 1"/>'
                   '</testcase></testsuite></testsuites>')
    got = read_outcomes(xml)
    assert [(t.name, t.passed, t.message) for t in got] == \
        [("a", True, None), ("b", False, "boom: expected 1")]


def test_every_parameter_of_a_bench_design_names_its_build_folder(tmp_path):
    """Two parameter sets never share a build folder: changing any one parameter changes the
    tag; defaults are filled in from the registered design."""
    for name, bench in BENCH_DESIGNS.items():
        design = get_design(name)
        base = design.defaults()
        assert bench.tag({}) == bench.tag(base)
        assert bench.build_dir({}, tmp_path) == tmp_path / f"{name}_{bench.tag(base)}"
        for p in design.params:
            other = (not p.default) if p.type is bool else p.default + 1
            assert bench.tag({p.name: other}) != bench.tag(base), (name, p.name)
    assert BENCH_DESIGNS["topk"].tag(TOPK) == "p4_w8_n64_s"


def test_bench_environment_and_custom_verilog_folder(tmp_path):
    topk = get_bench("topk")
    assert topk.env(TOPK, 3, 25, 0.1, 0.2) == {
        "PSA_LANES": "4", "PSA_MAX_N": "64", "PSA_SIGNED": "1", "PSA_SEED": "3",
        "PSA_PACKETS": "25", "PSA_IDLE": "0.1", "PSA_STALL": "0.2"}
    pruner = get_bench("pruner")
    env = pruner.env({"lanes": 4}, 9, 2, 0.0, 0.5)
    assert json.loads(env.pop("PSA_PRUNER_PARAMS")) == \
        {**get_design("pruner").defaults(), "lanes": 4}
    assert env == {"PSA_SEED": "9", "PSA_SEQUENCES": "2", "PSA_IDLE": "0.0", "PSA_STALL": "0.5"}
    small = dict(lanes=2, width=4, max_n=8, signed=False)
    text = get_design("topk").verilog(**small)
    assert topk.build_dir(small, tmp_path, text) == topk.build_dir(small, tmp_path)
    custom = topk.build_dir(small, tmp_path, text + "// edited\n")
    assert custom.name.startswith("topk_p2_w4_n8_u_custom_")
    with pytest.raises(ValueError, match="no cocotb bench for design 'adder'; choose one of"):
        get_bench("adder")
    with pytest.raises(ValueError, match="topk: no 'capture' bench"):
        topk.build_and_run(small, tmp_path, purpose="capture")


def test_pruner_params_defaults_are_the_hardware_defaults():
    from psa.verif.pruner_cases import PrunerParams

    assert PrunerParams().kwargs() == get_design("pruner").defaults()


def test_bad_parameter_is_a_clean_cli_error():
    res = CliRunner().invoke(cli, ["verify", "topk", "--lanes", "3"])
    assert res.exit_code == 2 and "lanes must be a power of two" in res.output
    res = CliRunner().invoke(cli, ["verify", "adder"])
    assert res.exit_code == 2 and "no bench for design 'adder'" in res.output


@pytest.mark.rtl
def test_verify_topk_passes_from_the_cli(sim_build_root, tmp_path):
    out = tmp_path / "v.json"
    res = CliRunner().invoke(cli, ["verify", "topk", "--lanes", "4", "--width", "8", "--max-n",
                                   "64", "--signed", "--packets", "25", "--seed", "7",
                                   "--build-root", str(sim_build_root), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert re.search(r"PASS topk \(lanes=4 width=8 max_n=64 signed=True\): 25 packets, "
                     r"seed 7", res.output), res.output
    assert "random_packets: passed" in res.output and "reset_mid_packet: passed" in res.output
    data = json.loads(out.read_text())
    assert data["passed"] and data["seed"] == 7 and data["count"] == 25


@pytest.mark.rtl
def test_verify_reports_the_first_mismatching_packet(sim_build_root):
    """A signed engine checked against unsigned golden expectations: values >= 128 rank
    differently, so packets mismatch; the report names the packet and both values."""
    r = verify("topk", TOPK, count=15, seed=3, build_root=sim_build_root,
               tests=["random_packets"], extra_env={"PSA_SIGNED": "0"})
    assert not r.passed and r.error is None
    assert [t.name for t in r.tests] == ["random_packets"] and not r.tests[0].passed
    m = r.mismatch
    assert m is not None and m.tag.startswith("packet ")
    assert isinstance(m.expected, list) and isinstance(m.actual, list)
    assert m.expected != m.actual and m.expected[m.position:] != m.actual[m.position:]
    console = Console(record=True, width=200)
    print_result(r, console)
    text = console.export_text()
    assert "FAIL topk" in text and "seed 3" in text
    assert "First mismatching packet: packet" in text and "expected [" in text
    assert "--packets 15 --seed 3" in text


@pytest.mark.rtl
@pytest.mark.slow
def test_verify_catches_a_corrupted_netlist(sim_build_root):
    """The output data's LSB flipped in the Verilog: every non-empty packet mismatches."""
    params = dict(lanes=2, width=4, max_n=8, signed=False)
    text = get_design("topk").verilog(**params)
    bad, n = re.subn(r"(assign out_data = )([^;]+);", r"\1(\2) ^ 1;", text)
    assert n == 1
    r = verify("topk", params, count=20, seed=5, build_root=sim_build_root, verilog=bad)
    assert not r.passed and r.mismatch is not None
    assert r.mismatch.expected[r.mismatch.position][1] ^ 1 == \
        r.mismatch.actual[r.mismatch.position][1]
    assert "_custom_" in r.build_dir


@pytest.mark.rtl
@pytest.mark.slow
def test_verify_pruner_passes(sim_build_root):
    from psa.verif.pruner_cases import PARAM_SETS

    r = verify("pruner", PARAM_SETS["main"].kwargs(), count=3, seed=11,
               build_root=sim_build_root)
    assert r.passed, r.first_failure
    assert r.unit == "sequences" and [t.name for t in r.tests] == \
        ["golden_sequences", "reset_mid_layer"]
