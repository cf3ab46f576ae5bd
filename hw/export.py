"""Verilog export of Amaranth components through Amaranth's pinned Yosys."""

from __future__ import annotations

from amaranth.back import verilog
from amaranth.lib import wiring

__all__ = ["to_verilog"]


def to_verilog(component: wiring.Component, name: str) -> str:
    """Verilog text for ``component`` as module ``name`` with ``clk`` and ``rst`` ports.

    Ports keep the flattened Amaranth names (``in_valid``, ``out_data``...); the reset is
    synchronous and active high.
    """
    return verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)
