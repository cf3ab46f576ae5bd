"""Parameter checks shared by every hardware block's constructor.

Each check raises ``ValueError`` naming the block, the parameter, the allowed values and the
value given (``"topk: lanes must be a power of two in 1..64, got 3"``), and returns the value.
``bool`` is refused where an integer is asked for (``True`` is not a width of 1).
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_int", "check_bool"]


def check_int(name: str, value: Any, lo: int, hi: int, *, owner: str,
              power_of_two: bool = False, bounds: str | None = None) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) in ``lo..hi``, else ``ValueError``.

    Parameters
    ----------
    name : str
        Parameter name as the user spells it.
    lo, hi : int
        Inclusive range.
    owner : str
        Block named at the start of the message.
    power_of_two : bool
        Also require a power of two.
    bounds : str, optional
        The range as written for the user when a bound is another parameter (``"lanes..65536"``);
        the numbers follow in parentheses.
    """
    kind = "a power of two" if power_of_two else "an integer"
    allowed = f"{lo}..{hi}" if bounds is None else f"{bounds} ({lo}..{hi})"
    if (isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi
            or (power_of_two and value & (value - 1))):
        raise ValueError(f"{owner}: {name} must be {kind} in {allowed}, got {value!r}")
    return value


def check_bool(name: str, value: Any, *, owner: str) -> bool:
    """``value`` if it is a ``bool``, else ``ValueError`` (``1`` is refused)."""
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be a bool, got {value!r}")
    return value
