"""A registered adder: the toolchain smoke-test component (Amaranth -> Verilog -> Verilator)."""

from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import check_int

__all__ = ["RegisteredAdder"]


class RegisteredAdder(wiring.Component):
    """``o = a + b``, registered: ``o`` shows the sum one cycle after ``a``/``b``.

    Parameters
    ----------
    width : int
        Operand width in bits, 1..64; ``o`` is ``width + 1`` bits wide.
    """

    def __init__(self, width: int = 8):
        self._width = check_int("width", width, 1, 64, owner="RegisteredAdder")
        super().__init__({"a": In(unsigned(width)), "b": In(unsigned(width)),
                          "o": Out(unsigned(width + 1))})

    @property
    def width(self) -> int:
        return self._width

    def elaborate(self, platform) -> Elaboratable:
        m = Module()
        m.d.sync += self.o.eq(self.a + self.b)
        return m


def _register() -> None:
    from .designs import Design, Param, register

    register(Design(
        name="adder", toplevel="adder", summary="registered adder (toolchain smoke test)",
        build=lambda width: RegisteredAdder(width),
        params=(Param("width", int, 8, "operand width in bits (1..64)"),),
    ))


_register()
