"""Unit tests of the cocotb stream helpers in :mod:`psa.verif.streams` that need no simulator."""

from __future__ import annotations

import pytest

from psa.verif.streams import Scoreboard
from psa.verif.verify import parse_mismatch


def test_scoreboard_counts_every_mismatch_and_keeps_the_first_few():
    sb = Scoreboard("seed=3", max_failures=2)
    for i in range(9):
        sb.expect([i], f"packet {i}")
    for i in range(9):
        sb.receive([i] if i % 3 == 0 else [i + 100])    # 6 mismatches, 3 matches
    assert sb.mismatches == 6 and sb.matched == 3 and len(sb.failures) == 2
    with pytest.raises(AssertionError, match=r"seed=3: 6 mismatch\(es\) \(2 shown\)") as e:
        sb.check()
    m = parse_mismatch(str(e.value))
    assert m is not None and m.tag == "packet 1" and m.expected == [1] and m.actual == [101]


def test_scoreboard_unexpected_and_missing_outputs_fail():
    sb = Scoreboard("ctx")
    sb.receive(1)
    with pytest.raises(AssertionError, match="1 mismatch"):
        sb.check()
    sb = Scoreboard("ctx")
    sb.expect(1, "late")
    with pytest.raises(AssertionError, match="never came; next: late"):
        sb.check()
