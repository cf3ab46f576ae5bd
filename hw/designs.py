"""Registry of exportable hardware designs, shared by ``psa verilog|synth|verify|sweep``.

A :class:`Design` names a flat Verilog top, the parameters a user sets (one definition, reused
as CLI options and sweep axes) and the factory that builds the Amaranth component.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from amaranth.hdl import Elaboratable
from amaranth.lib import wiring

__all__ = ["Param", "Design", "DESIGNS", "register", "get_design"]


@dataclass(frozen=True)
class Param:
    """One hardware parameter: ``name`` is the Python keyword and ``--name-with-dashes`` flag."""

    name: str
    type: type
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Design:
    """An exportable block: ``build(**params)`` returns the flat top component."""

    name: str
    toplevel: str
    summary: str
    build: Callable[..., wiring.Component]
    params: tuple[Param, ...] = field(default_factory=tuple)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def component(self, **params: Any) -> wiring.Component:
        """Build with defaults filled in; unknown names raise ValueError."""
        unknown = set(params) - {p.name for p in self.params}
        if unknown:
            raise ValueError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; "
                             f"allowed: {[p.name for p in self.params]}")
        return self.build(**{**self.defaults(), **params})

    def validate(self, **params: Any) -> None:
        """Raise ValueError for a bad parameter set, as elaboration would; builds nothing."""
        # Constructing the component runs its parameter checks; it is then dropped on purpose,
        # so neither it nor the blocks its constructor made may warn of being unused.
        _silence_unused(self.component(**params))

    def verilog(self, **params: Any) -> str:
        from .export import to_verilog

        return to_verilog(self.component(**params), self.toplevel)


def _silence_unused(obj: Any) -> None:
    if isinstance(obj, Elaboratable) and not obj._MustUse__silence:
        obj._MustUse__silence = True
        for value in vars(obj).values():
            _silence_unused(value)


DESIGNS: dict[str, Design] = {}


def register(design: Design) -> Design:
    DESIGNS[design.name] = design
    return design


def get_design(name: str) -> Design:
    _load_all()
    if name not in DESIGNS:
        raise ValueError(f"unknown design {name!r}; choose one of {sorted(DESIGNS)}")
    return DESIGNS[name]


def all_designs() -> Mapping[str, Design]:
    _load_all()
    return DESIGNS


def _load_all() -> None:
    # Importing a block's module registers it; a module that is not there yet is skipped.
    import importlib

    for module in ("psa.hw.adder", "psa.hw.topk_top", "psa.hw.pruner_top"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
