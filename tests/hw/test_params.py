"""The shared parameter check, and every hardware block refusing bool, non-int and
out-of-range parameters with a message that names the parameter and its range."""

from __future__ import annotations

import pytest
from amaranth.hdl import unsigned

from psa.hw.adder import RegisteredAdder
from psa.hw.fetch import FetchAddressGenerator
from psa.hw.params import check_bool, check_int
from psa.hw.pruner import AliveList, HeadScores, PruningUnit, ScoreMemory
from psa.hw.pruner_top import PrunerTop
from psa.hw.topk import TopKEngine
from psa.hw.topk_blocks import Compactor, Packer, Partition, RankSelect, SideLog, TieFilter
from psa.hw.topk_top import TopKTop


def test_check_int_returns_value_inside_range():
    assert check_int("lanes", 1, 1, 64, owner="x") == 1
    assert check_int("lanes", 64, 1, 64, owner="x", power_of_two=True) == 64


@pytest.mark.parametrize("value", [True, False, 2.0, "4", None, 0, 65])
def test_check_int_message_names_owner_parameter_range_and_value(value):
    with pytest.raises(ValueError) as err:
        check_int("lanes", value, 1, 64, owner="blk")
    assert str(err.value) == f"blk: lanes must be an integer in 1..64, got {value!r}"


def test_check_int_power_of_two_and_named_bound():
    with pytest.raises(ValueError, match=r"^t: lanes must be a power of two in 1\.\.64, got 6$"):
        check_int("lanes", 6, 1, 64, owner="t", power_of_two=True)
    with pytest.raises(ValueError, match=r"^t: max_n must be an integer in lanes\.\.9 "
                                         r"\(4\.\.9\), got 3$"):
        check_int("max_n", 3, 4, 9, owner="t", bounds="lanes..9")


@pytest.mark.parametrize("value", [1, 0, "yes", None])
def test_check_bool_refuses_non_bool(value):
    with pytest.raises(ValueError, match=f"^t: signed must be a bool, got {value!r}$"):
        check_bool("signed", value, owner="t")


# (factory, parameter, what is asked, range as printed, a value outside it); each case is also
# tried with True and a float, which must be refused with the same message.
INT, POW2 = "an integer", "a power of two"
BLOCKS = [
    (lambda v: RegisteredAdder(v), "width", INT, "1..64", 65),
    (lambda v: FetchAddressGenerator(addr_bits=v), "addr_bits", INT, "16..64", 15),
    (lambda v: FetchAddressGenerator(head_bits=v), "head_bits", INT, "1..16", 17),
    (lambda v: FetchAddressGenerator(token_bits=v), "token_bits", INT, "1..17", 0),
    (lambda v: FetchAddressGenerator(layer_bits=v), "layer_bits", INT, "1..16", 17),
    (lambda v: TopKEngine(width=v), "width", INT, "1..32", 33),
    (lambda v: TopKTop(width=v), "width", INT, "1..32", 0),
    (lambda v: TopKEngine(lanes=v), "lanes", POW2, "1..64", 3),
    (lambda v: TopKEngine(lanes=4, max_n=v), "max_n", INT, "lanes..65536 (4..65536)", 2),
    (lambda v: PruningUnit(lanes=v), "lanes", POW2, "1..64", 128),
    (lambda v: PruningUnit(n_heads=v), "n_heads", INT, "1..256", 257),
    (lambda v: PruningUnit(prob_bits=v), "prob_bits", INT, "1..16", 17),
    (lambda v: PruningUnit(mag_bits=v), "mag_bits", INT, "1..48", 49),
    (lambda v: PruningUnit(addr_bits=v), "addr_bits", INT, "16..64", 65),
    (lambda v: PrunerTop(layer_bits=v), "layer_bits", INT, "1..16", 17),
    (lambda v: ScoreMemory(v, 4), "max_tokens", INT, "1..65536", 0),
    (lambda v: AliveList(v), "max_tokens", INT, "1..65536", 65537),
    (lambda v: HeadScores(v), "n_heads", INT, "1..256", 0),
    (lambda v: Compactor(v, unsigned(4)), "lanes", INT, "1..128", 129),
    (lambda v: Packer(v, unsigned(4)), "lanes", INT, "1..64", 65),
    (lambda v: SideLog(4, unsigned(4), v), "depth", INT, "1..1048576", 0),
    (lambda v: Partition(4, unsigned(4), v), "pivots", INT, "1..7", 8),
    (lambda v: RankSelect(4, unsigned(4), v), "ranks", INT, "1..7", 0),
    (lambda v: TieFilter(v), "lanes", INT, "1..64", 65),
]


@pytest.mark.parametrize("factory,name,kind,allowed,outside", BLOCKS,
                         ids=[f"{i}-{b[1]}" for i, b in enumerate(BLOCKS)])
@pytest.mark.parametrize("bad", ["true", "float", "outside"])
def test_every_block_refuses_bool_non_int_and_out_of_range(factory, name, kind, allowed,
                                                            outside, bad):
    value = {"true": True, "float": 8.0, "outside": outside}[bad]
    with pytest.raises(ValueError) as err:
        factory(value)
    message = str(err.value)
    assert message.endswith(f"{name} must be {kind} in {allowed}, got {value!r}"), message


def test_signed_must_be_bool():
    for build in (TopKEngine, TopKTop):
        with pytest.raises(ValueError, match="topk: signed must be a bool, got 1"):
            build(signed=1)


def test_pruner_defaults_have_one_definition():
    """The registered design, the unit's constructor and its properties all use DEFAULTS."""
    from psa.hw.designs import get_design
    from psa.hw.pruner import DEFAULTS

    assert get_design("pruner").defaults() == dict(DEFAULTS)
    unit = PruningUnit()
    assert {name: getattr(unit, name) for name in DEFAULTS} == dict(DEFAULTS)
