"""K/V fetch address generator: (head, plane, token) row requests -> DRAM byte addresses.

The address of a row follows :class:`psa.golden.trace.KVLayout`::

    addr = base[plane] + ((layer * head_pitch + head) * token_pitch + token) * row_bytes[plane]

for the four planes K_MSB, K_LSB, V_MSB, V_LSB, with the layout given at run time on the
``cfg`` port (:data:`kv_config_layout`), so one netlist serves any model whose layout fits the
port widths.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .layouts import (
    PITCH_BITS,
    ROW_BYTES_BITS,
    fetch_request_layout,
    kv_config_layout,
    row_request_layout,
)
from .params import check_int

__all__ = ["kv_config_layout", "row_request_layout", "fetch_request_layout",
           "FetchAddressGenerator", "ROW_BYTES_BITS", "PITCH_BITS"]

class FetchAddressGenerator(wiring.Component):
    """Turns row requests into byte addresses; one register stage, one request per cycle.

    Parameters
    ----------
    addr_bits : int
        Address width in bits (16..64); addresses wrap modulo ``2**addr_bits``.
    head_bits, token_bits : int
        Widths of the head and token ids (1..16 and 1..17).
    layer_bits : int
        Width of the ``layer`` input (1..16).

    Members
    -------
    rows : In(stream.Signature(row_request_layout))
        Row requests. ``layer`` and ``cfg`` must be stable while requests flow.
    requests : Out(stream.Signature(fetch_request_layout))
        Addressed requests, in input order, 1 cycle after the input (throughput 1/cycle;
        ``rows.ready = ~requests.valid | requests.ready``).
    """

    def __init__(self, addr_bits: int = 40, head_bits: int = 4, token_bits: int = 10,
                 layer_bits: int = 8):
        owner = type(self).__name__
        check_int("addr_bits", addr_bits, 16, 64, owner=owner)
        check_int("head_bits", head_bits, 1, 16, owner=owner)
        check_int("token_bits", token_bits, 1, 17, owner=owner)
        check_int("layer_bits", layer_bits, 1, 16, owner=owner)
        self._addr_bits = addr_bits
        super().__init__({
            "cfg": In(kv_config_layout(addr_bits)),
            "layer": In(unsigned(layer_bits)),
            "rows": In(stream.Signature(row_request_layout(head_bits, token_bits))),
            "requests": Out(stream.Signature(
                fetch_request_layout(addr_bits, head_bits, token_bits))),
        })

    @property
    def addr_bits(self) -> int:
        return self._addr_bits

    def elaborate(self, platform) -> Module:
        m = Module()
        cfg, row, req = self.cfg, self.rows.p, self.requests
        is_v, is_lsb = row.plane[0], row.plane[1]
        base = Mux(is_lsb, Mux(is_v, cfg.v_lsb_base, cfg.k_lsb_base),
                   Mux(is_v, cfg.v_base, cfg.k_base))
        row_bytes = Mux(is_lsb, Mux(is_v, cfg.v_lsb_row_bytes, cfg.k_lsb_row_bytes),
                        Mux(is_v, cfg.v_row_bytes, cfg.k_row_bytes))
        row_index = (self.layer * cfg.head_pitch + row.head) * cfg.token_pitch + row.token
        addr = base + row_index * row_bytes

        m.d.comb += self.rows.ready.eq(~req.valid | req.ready)
        with m.If(self.rows.ready):
            m.d.sync += [
                req.valid.eq(self.rows.valid),
                req.p.addr.eq(addr[:self._addr_bits]),
                req.p.size.eq(row_bytes),
                req.p.plane.eq(Cat(is_lsb, is_v)),   # the Plane value
                req.p.head.eq(row.head),
                req.p.token.eq(row.token),
                req.p.last.eq(row.last),
                req.p.empty.eq(row.empty),
            ]
        return m
