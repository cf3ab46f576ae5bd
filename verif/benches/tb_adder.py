"""cocotb bench of :class:`psa.hw.adder.RegisteredAdder`: random operands vs the Python sum."""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge


@cocotb.test()
async def random_sums(dut):
    seed = int(os.environ.get("PSA_SEED", "1"))
    rng = random.Random(seed)
    width = len(dut.a)
    assert len(dut.o) == width + 1, "o must be one bit wider than a"
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    for i in range(200):
        await FallingEdge(dut.clk)
        a, b = rng.getrandbits(width), rng.getrandbits(width)
        dut.a.value, dut.b.value = a, b
        await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        got = int(dut.o.value)
        assert got == a + b, f"seed {seed} step {i}: {a} + {b} gave {got}"
