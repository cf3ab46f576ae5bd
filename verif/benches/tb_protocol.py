"""cocotb bench of the stream helpers themselves (:mod:`psa.verif.streams`) on a toy DUT.

:data:`TOY_VERILOG` is a one-entry register stage from ``in_*`` to ``out_*`` whose ``mode``
input breaks the output protocol on purpose while ``out_ready`` is low: ``1`` drops
``out_valid``, ``2`` flips bit 0 of ``out_data``. The tests show that the sink's checker
passes a correct stream, reports each violation with cycle, signal and values, fails the test
by default, and that source and sink flush on reset.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from psa.verif.streams import PacketCollector, ProtocolViolation, StreamSink, StreamSource

TOY_VERILOG = """\
module toy_stream(input clk, input rst, input [1:0] mode,
                  input in_valid, output in_ready, input [7:0] in_data, input in_last,
                  output reg out_valid, input out_ready, output reg [7:0] out_data,
                  output reg out_last);
  assign in_ready = !out_valid || out_ready;
  always @(posedge clk) begin
    if (rst) out_valid <= 1'b0;
    else if (in_ready) begin
      out_valid <= in_valid; out_data <= in_data; out_last <= in_last;
    end else if (mode == 2'd1) out_valid <= 1'b0;
    else if (mode == 2'd2) out_data <= out_data ^ 8'h01;
  end
endmodule
"""


class ToyTB:
    def __init__(self, dut, mode: int, stall: float = 0.5, record: bool = True):
        self.dut = dut
        self.violations: list[ProtocolViolation] = []
        self.packets: list[list[int]] = []
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rst.value = 1
        dut.mode.value = mode
        self.source = StreamSource(dut, "in_", ("data", "last"), idle=0.2,
                                   rng=random.Random(1), reset=dut.rst)
        self.collector = PacketCollector(
            lambda beats: self.packets.append([b["data"] for b in beats]))
        self.sink = StreamSink(dut, "out_", ("data", "last"), stall=stall,
                               rng=random.Random(2), callback=self.collector, reset=dut.rst,
                               on_violation=self.violations.append if record else None)

    async def reset(self, cycles: int = 2) -> None:
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, cycles)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    def send_packets(self, count: int, length: int, first: int = 0) -> list[list[int]]:
        packets = [[(first + p * length + i) & 0xFF for i in range(length)]
                   for p in range(count)]
        for packet in packets:
            for i, v in enumerate(packet):
                self.source.send({"data": v, "last": int(i == length - 1)})
        return packets

    async def wait_idle(self, cycles: int = 400) -> None:
        for _ in range(cycles):
            if self.source.idle_now() and not int(self.dut.out_valid.value):
                break
            await RisingEdge(self.dut.clk)
        await ClockCycles(self.dut.clk, 4)


@cocotb.test()
async def correct_stream_passes(dut):
    """Mode 0 under 50% back-pressure: no violation, every packet through unchanged."""
    tb = ToyTB(dut, 0)
    await tb.reset()
    sent = tb.send_packets(20, 5)
    await tb.wait_idle()
    assert not tb.violations, tb.violations[:3]
    assert tb.packets == sent


@cocotb.test()
async def dropped_valid_is_caught(dut):
    """Mode 1: ``out_valid`` falls while stalled; each drop is reported with its cycle."""
    tb = ToyTB(dut, 1)
    await tb.reset()
    tb.send_packets(10, 4)
    await tb.wait_idle()
    assert tb.violations, "a dropped out_valid went unnoticed"
    text = str(tb.violations[0])
    assert text.startswith("cycle ") and "out_valid dropped before the transfer" in text \
        and "(was 1, now 0)" in text, text


@cocotb.test()
async def changed_payload_is_caught(dut):
    """Mode 2: ``out_data`` changes while stalled; reported with the old and new value."""
    tb = ToyTB(dut, 2)
    await tb.reset()
    tb.send_packets(10, 4, first=16)
    await tb.wait_idle()
    assert tb.violations, "a payload change under back-pressure went unnoticed"
    text = str(tb.violations[0])
    assert "out_data changed while valid and not ready" in text, text
    old, new = (int(x) for x in text.split("(was ")[1].rstrip(")").split(", now "))
    assert old ^ new == 1, text
    assert all("out_last" not in str(v) for v in tb.violations), "out_last never changes"


@cocotb.test(expect_fail=True)
async def violation_fails_the_test(dut):
    """Without ``on_violation`` the checker raises: this test must fail (expect_fail)."""
    tb = ToyTB(dut, 2, record=False)
    await tb.reset()
    tb.send_packets(10, 4)
    await tb.wait_idle()


@cocotb.test()
async def reset_flushes_source_and_sink(dut):
    """A reset mid-stream: the source abandons its beats, the sink drops the partial packet
    (no violation for the valid the reset clears); afterwards exactly the new packets come."""
    tb = ToyTB(dut, 0, stall=0.3)
    await tb.reset()
    tb.send_packets(5, 8)
    while tb.source.sent < 12:
        await RisingEdge(dut.clk)
    done = len(tb.packets)
    await tb.reset(3)
    assert tb.source.idle_now() and tb.source.flushed > 0, "source kept beats over reset"
    assert tb.collector.dropped == 1 and not tb.collector.partial, "partial packet kept"
    assert int(dut.in_valid.value) == 0
    sent = tb.send_packets(3, 6, first=100)
    await tb.wait_idle()
    assert not tb.violations, tb.violations[:3]
    assert tb.packets[done:] == sent, tb.packets[done:]
