"""``pruning_unit``: the flat Verilog top of :class:`psa.hw.pruner.PruningUnit`.

Every stream ``S`` becomes ``S_valid``, ``S_ready`` and one port per payload field
(``S_<field>``); vectors of lanes are packed, lane ``j`` at bits ``[j*w +: w]``. Full contract
in docs/pruner.md.

=========== === ============================ ================================================
stream/port dir fields                       meaning
=========== === ============================ ================================================
cmd         in  op[3], arg[32]               command (START 0, PRUNE 1, PRUNE_HEADS 2,
                                             FETCH 3, READ_TOKENS 4, READ_HEADS 5,
                                             APPEND 6, SELECT 7)
prob        in  data[P*prob_bits], last      P probabilities of one query row; last ends it
mag         in  head, value                  head output magnitude to accumulate
tok         out id, score, last, empty       alive list (PRUNE, READ_TOKENS)
head        out id, score, last, empty       kept heads (PRUNE_HEADS, READ_HEADS)
fetch       out addr, size, plane, head,     K/V row reads (FETCH, SELECT); plane 0 = K_MSB,
                token, last, empty           1 = K_LSB, 2 = V_MSB, 3 = V_LSB
cfg_*       in  k_base, v_base, k_row_bytes, K/V layout of the FETCH / SELECT addresses
                v_row_bytes, token_pitch,
                head_pitch, k_lsb_base,
                v_lsb_base, k_lsb_row_bytes,
                v_lsb_row_bytes
cfg_lsb_    in  prob_bits + 1                SELECT: rows with max probability below it
threshold                                    are flat (LSB-plane requests); 0 = never
busy        out                              a command, accumulation or fetch is in flight
error       out                              sticky error (cleared by START)
alive_count out                              alive tokens
head_count  out                              kept heads
=========== === ============================ ================================================
"""

from __future__ import annotations

from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .pruner import DEFAULTS, PruningUnit

__all__ = ["PrunerTop", "STREAMS"]

#: flat prefix -> PruningUnit stream member
STREAMS = {"cmd": "cmd", "prob": "probs", "mag": "mags", "tok": "tokens", "head": "heads",
           "fetch": "fetch"}


def _fields(view):
    """(name, bits of the view) per field of a struct view, enums as plain bits."""
    raw = view.as_value()
    return [(name, raw[f.offset:f.offset + f.width]) for name, f in view.shape()]


class PrunerTop(wiring.Component):
    """Flat-port wrapper of :class:`PruningUnit` (same parameters, defaults
    :data:`psa.hw.pruner.DEFAULTS`)."""

    def __init__(self, **params):
        self._params = params
        self._unit = unit = PruningUnit(**params)
        members = {}
        for prefix, name in STREAMS.items():
            port = getattr(unit, name)
            incoming = unit.signature.members[name].flow == In
            fwd, bwd = (In, Out) if incoming else (Out, In)
            members[f"{prefix}_valid"] = fwd(1)
            members[f"{prefix}_ready"] = bwd(1)
            for field, f in port.p.shape():
                members[f"{prefix}_{field}"] = fwd(f.width)
        for field, f in unit.cfg.shape():
            members[f"cfg_{field}"] = In(f.width)
        members["cfg_lsb_threshold"] = In(len(unit.lsb_threshold))
        for name in ("busy", "error", "alive_count", "head_count"):
            members[name] = Out(len(getattr(unit, name)))
        super().__init__(members)

    @property
    def params(self) -> dict:
        return dict(self._params)

    @property
    def unit(self) -> PruningUnit:
        return self._unit

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        m.submodules.unit = unit = self._unit
        for prefix, name in STREAMS.items():
            port = getattr(unit, name)
            valid, ready = getattr(self, f"{prefix}_valid"), getattr(self, f"{prefix}_ready")
            if unit.signature.members[name].flow == In:
                m.d.comb += [port.valid.eq(valid), ready.eq(port.ready)]
                m.d.comb += [bits.eq(getattr(self, f"{prefix}_{f}"))
                             for f, bits in _fields(port.p)]
            else:
                m.d.comb += [valid.eq(port.valid), port.ready.eq(ready)]
                m.d.comb += [getattr(self, f"{prefix}_{f}").eq(bits)
                             for f, bits in _fields(port.p)]
        m.d.comb += [bits.eq(getattr(self, f"cfg_{f}")) for f, bits in _fields(unit.cfg)]
        m.d.comb += unit.lsb_threshold.eq(self.cfg_lsb_threshold)
        for name in ("busy", "error", "alive_count", "head_count"):
            m.d.comb += getattr(self, name).eq(getattr(unit, name))
        return m


def _register() -> None:
    from .designs import Design, Param, register

    register(Design(
        name="pruner", toplevel="pruning_unit",
        summary="cascade token/head pruning unit: score accumulation, top-k, alive list, K/V "
                "fetch addresses, decode APPEND and per-query SELECT (kv / top-p)",
        build=lambda **params: PrunerTop(**params),
        params=tuple(Param(name, int, DEFAULTS[name], help) for name, help in (
            ("max_tokens", "N, largest sequence (max(lanes,2)..65536)"),
            ("n_heads", "H, heads per layer (1..256)"),
            ("lanes", "P, probabilities per cycle (power of two, 1..64)"),
            ("prob_bits", "UQ0.prob_bits probability lanes (1..16)"),
            ("score_bits", "saturating token score width (prob_bits..32)"),
            ("mag_bits", "head magnitude input width (1..48)"),
            ("head_score_bits", "saturating head score width (1..32)"),
            ("addr_bits", "fetch address width (16..64)"),
            ("layer_bits", "FETCH layer field width (1..16)"),
            ("digit_bits", "SELECT threshold bits per pass over the row (1..prob_bits)"),
        )),
    ))


_register()
