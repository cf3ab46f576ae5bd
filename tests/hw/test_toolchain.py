"""Toolchain proof: Amaranth component -> Verilog -> Verilator -> cocotb."""

import pytest

from psa.hw.adder import RegisteredAdder
from psa.hw.export import to_verilog
from psa.verif.runner import run_cocotb


def test_adder_rejects_bad_width():
    with pytest.raises(ValueError, match="width must be an integer in 1..64"):
        RegisteredAdder(0)


@pytest.mark.rtl
def test_registered_adder_on_verilator(sim_build_root):
    verilog = to_verilog(RegisteredAdder(8), "adder")
    assert "module adder" in verilog
    run_cocotb(verilog, "adder", "psa.verif.benches.tb_adder",
               sim_build_root / "adder_w8", extra_env={"PSA_SEED": "7"})
