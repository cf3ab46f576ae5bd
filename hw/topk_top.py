"""``topk_engine``: the flat Verilog top of :class:`psa.hw.topk.TopKEngine`.

Ports (lane ``j`` of a vector occupies bits ``[j*w +: w]``; full contract in docs/topk.md):

========== === ================ ==========================================================
port       dir width            meaning
========== === ================ ==========================================================
clk        in  1                clock
rst        in  1                synchronous reset, active high
in_valid   in  1                input beat valid
in_ready   out 1                input beat accepted when valid & ready
in_data    in  P*W              P values
in_count   in  $clog2(P+1)      valid lanes 0..count-1 (0 only on a last beat)
in_last    in  1                last beat of the packet
in_k       in  $clog2(N+1)      k, sampled on the first beat of a packet
out_valid  out 1                output beat valid
out_ready  in  1                output beat taken when valid & ready
out_data   out P*W              kept values
out_index  out P*$clog2(N)      their 0-based positions in the input packet
out_count  out $clog2(P+1)      valid lanes of the beat
out_last   out 1                last beat of the packet
overflow   out 1                one-cycle pulse: packet longer than N (excess dropped)
========== === ================ ==========================================================
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import count_shape, index_shape, k_shape
from .topk import TopKEngine, validate_topk_params

__all__ = ["TopKTop"]


class TopKTop(wiring.Component):
    """Flat-port wrapper of :class:`TopKEngine` for Verilog users (same parameters)."""

    def __init__(self, lanes: int = 16, width: int = 16, max_n: int = 1024,
                 signed: bool = False):
        validate_topk_params(lanes, width, max_n, signed)
        self._params = dict(lanes=lanes, width=width, max_n=max_n, signed=signed)
        super().__init__({
            "in_valid": In(1),
            "in_ready": Out(1),
            "in_data": In(lanes * width),
            "in_count": In(count_shape(lanes)),
            "in_last": In(1),
            "in_k": In(k_shape(max_n)),
            "out_valid": Out(1),
            "out_ready": In(1),
            "out_data": Out(lanes * width),
            "out_index": Out(lanes * index_shape(max_n).width),
            "out_count": Out(count_shape(lanes)),
            "out_last": Out(1),
            "overflow": Out(1),
        })

    @property
    def params(self) -> dict:
        return dict(self._params)

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        m.submodules.engine = engine = TopKEngine(**self._params)
        i, o = engine.i_stream, engine.o_stream
        m.d.comb += [
            i.valid.eq(self.in_valid), self.in_ready.eq(i.ready),
            i.payload.data.eq(self.in_data), i.payload.count.eq(self.in_count),
            i.payload.last.eq(self.in_last), i.payload.k.eq(self.in_k),
            self.out_valid.eq(o.valid), o.ready.eq(self.out_ready),
            self.out_data.eq(o.payload.data), self.out_index.eq(o.payload.index),
            self.out_count.eq(o.payload.count), self.out_last.eq(o.payload.last),
            self.overflow.eq(engine.overflow),
        ]
        return m


def _register() -> None:
    from .designs import Design, Param, register

    register(Design(
        name="topk", toplevel="topk_engine",
        summary="high-parallel radix-select top-k engine (P lanes, exact k, ties to lowest index)",
        build=lambda lanes, width, max_n, signed: TopKTop(lanes, width, max_n, signed),
        params=(
            Param("lanes", int, 16, "P, elements per beat: a power of two in 1..64"),
            Param("width", int, 16, "W, bits per value (1..32)"),
            Param("max_n", int, 1024, "N, most elements per packet (lanes..65536)"),
            Param("signed", bool, False, "values are two's-complement signed"),
        ),
    ))


_register()
