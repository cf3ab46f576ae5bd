"""Trace text format: round trip, Ramulator-style lines, timestamps and clear load errors."""

import numpy as np
import pytest

from psa.golden.trace import AccessTrace, TraceFormatError, parse_trace, read_trace


def test_round_trip(tmp_path):
    tr = AccessTrace(np.array([0x40, 0x1000, 0x2000]), np.array([64, 32, 96]),
                     np.array([False, True, False]), layer=np.array([0, 0, 1]))
    path = tmp_path / "t.trace"
    tr.write(path)
    back = read_trace(path)
    assert back.addr.tolist() == tr.addr.tolist()
    assert back.size.tolist() == [64, 32, 96]
    assert back.is_write.tolist() == [False, True, False]
    assert back.layer.tolist() == [0, 0, 1]
    assert back.time_ns is None


def test_ramulator_lines_and_times():
    tr = parse_trace("# c\n10 LD 0x40\n12.5 ST 128  # trailing\n20 R 0x80 100\n")
    assert tr.addr.tolist() == [0x40, 128, 0x80]
    assert tr.size.tolist() == [64, 64, 100]
    assert tr.is_write.tolist() == [False, True, False]
    assert tr.time_ns.tolist() == [10.0, 12.5, 20.0]
    assert tr.burst_bytes() == 64 * 4  # 0x80+100 spans two bursts


@pytest.mark.parametrize("text, msg", [
    ("R 0x40\n", "t.trace:1: expected 'R ADDR BYTES'"),
    ("R 0x40 64\nX 0x40\n", "t.trace:2: expected an operation R, W, LD or ST"),
    ("R zz 64\n", "expected an address"),
    ("R 0x40 0\n", "size must be in 1"),
    ("1 R 0x40 64\nR 0x80 64\n", "on every request or on none"),
    ("LD 0x40 64\n", "expected 'LD ADDR'"),
    ("R 0x40 64\nR 0xffffffffffffffff 64\n", "t.trace:2: request of 64 bytes at "
     "0xffffffffffffffff runs past the last address 2\\^64-1"),
    ("LD 0xfffffffffffffff0\n", "t.trace:1: request of 64 bytes .* runs past"),
    ("R 0x10000000000000000 64\n", "t.trace:1: expected an address in 0..2\\^64-1"),
    ("-5 R 0x40 64\n", "t.trace:1: issue time must be >= 0 ns, got '-5 R 0x40 64'"),
    ("1 R 0x0 64\n-0.5 R 0x40 64\n", "t.trace:2: issue time must be >= 0 ns"),
])
def test_errors_name_file_and_line(tmp_path, text, msg):
    path = tmp_path / "t.trace"
    path.write_text(text)
    with pytest.raises(TraceFormatError, match=msg):
        read_trace(path)


def test_missing_file(tmp_path):
    with pytest.raises(TraceFormatError, match="cannot read trace"):
        read_trace(tmp_path / "nope.trace")


def test_last_address_is_accepted():
    tr = parse_trace("R 0xffffffffffffffc0 64\nLD 0xffffffffffffffc0\n")
    assert tr.addr.tolist() == [2**64 - 64] * 2
    assert tr.bursts().tolist() == [1, 1]


def test_binary_file_names_file_line_and_expected_format(tmp_path):
    path = tmp_path / "t.trace"
    path.write_bytes(b"R 0x0 64\nR 0x40 64\n\x7fELF\xd0\xff\x00\n")
    with pytest.raises(TraceFormatError, match=r"t\.trace:3: expected a text trace .*0xd0"):
        read_trace(path)
