"""The cocotb stream checker and reset handling of :mod:`psa.verif.streams` on a toy DUT
(:mod:`psa.verif.benches.tb_protocol`): it catches a dropped ``valid`` and a payload change
under back-pressure, fails a test by default, and flushes source and sink on reset."""

from __future__ import annotations

import pytest

from psa.verif.benches.tb_protocol import TOY_VERILOG
from psa.verif.runner import run_cocotb


@pytest.mark.rtl
def test_stream_checker_catches_protocol_violations(sim_build_root):
    results = run_cocotb(TOY_VERILOG, "toy_stream", "psa.verif.benches.tb_protocol",
                         sim_build_root / "toy_stream", quiet=True)   # raises on failure
    text = results.read_text()
    for test in ("correct_stream_passes", "dropped_valid_is_caught",
                 "changed_payload_is_caught", "violation_fails_the_test",
                 "reset_flushes_source_and_sink"):
        assert test in text, f"{test} did not run"
