"""Binary traces (.npy records, .npz columns), the vectorised text parser and chunked reading.

The array-operation parser must give exactly what the line-by-line parser gives, on every
accepted spelling (hex/decimal, LD/ST, upper/lower case, times, comments, layer markers), and
hand anything else to the line parser so errors keep naming ``file:line``.
"""

from __future__ import annotations

import numpy as np
import pytest

from psa.golden.trace import (
    TRACE_DTYPE,
    AccessTrace,
    TraceFormatError,
    _parse_fast,
    _parse_lines,
    iter_trace,
    open_binary_trace,
    parse_trace,
    read_trace,
)


def _same(a: AccessTrace, b: AccessTrace) -> None:
    assert a.addr.tolist() == b.addr.tolist()
    assert a.size.tolist() == b.size.tolist()
    assert a.is_write.tolist() == b.is_write.tolist()
    assert a.layer.tolist() == b.layer.tolist()
    assert (a.time_ns is None) == (b.time_ns is None)
    if a.time_ns is not None:
        assert a.time_ns.tolist() == b.time_ns.tolist()


def _random_text(rng, n: int, timed: bool) -> str:
    lines = ["# psa access trace v1"]
    for _ in range(n):
        if rng.random() < 0.05:
            lines.append(f"# layer {int(rng.integers(0, 40))}")
        if rng.random() < 0.03:
            lines.append("")
        a = int(rng.integers(0, 2**62))
        addr = f"0x{a:x}" if rng.random() < 0.7 else (f"0X{a:X}" if rng.random() < 0.5
                                                      else str(a))
        op = ["R", "W", "LD", "ST", "r", "w", "ld", "st"][int(rng.integers(0, 8))]
        body = f"{op} {addr}" + (f" {int(rng.integers(1, 5000))}" if op in "RWrw" else "")
        if timed:
            body = f"{rng.random() * 1e4:.3f}{' ' * int(rng.integers(1, 3))}{body}"
        if rng.random() < 0.05:
            body += "   # trailing comment"
        if rng.random() < 0.05:
            body = "\t" + body + " "
        lines.append(body)
    return "\r\n".join(lines) + "\n" if rng.random() < 0.5 else "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(6))
def test_fast_parser_equals_line_parser(seed):
    rng = np.random.default_rng(seed)
    text = _random_text(rng, 3000, timed=seed % 2 == 1)
    fast = _parse_fast(text.encode())
    assert fast is not None, "the fast path must accept well-formed text"
    _same(fast[0], _parse_lines(text, "x")[0])


@pytest.mark.parametrize("text", [
    "R 0x40\n", "R 0x40 64\nX 0x40\n", "R zz 64\n", "R 0x40 0\n", "1 R 0x40 64\nR 0x80 64\n",
    "LD 0x40 64\n", "R 0xffffffffffffffff 64\n", "R 0x10000000000000000 64\n", "-5 R 0x40 64\n",
    "R 0x40 4294967296\n", "R 0x 64\n",
])
def test_fast_parser_leaves_bad_lines_to_the_line_parser(text):
    assert _parse_fast(text.encode()) is None
    with pytest.raises(TraceFormatError, match="<trace>:"):
        parse_trace(text)


@pytest.mark.parametrize("text", ["# layer 1\rR 0x0 64\n", "R 0x0 64\x0bR 0x40 64\n"])
def test_unusual_line_breaks_go_to_the_line_parser(text):
    # a bare CR or a vertical tab ends a line / separates fields for str.splitlines and split
    assert _parse_fast(text.encode()) is None
    _same(parse_trace(text), _parse_lines(text, "x")[0])


def test_edge_values_agree():
    text = "R 0xffffffffffffffc0 64\nLD 18446744073709551552\nW 0 4294967295\n"
    _same(parse_trace(text), _parse_lines(text, "x")[0])
    assert parse_trace(text).addr.tolist() == [2**64 - 64] * 2 + [0]


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".trace"])
@pytest.mark.parametrize("timed", [False, True])
def test_round_trip_every_format(tmp_path, suffix, timed):
    rng = np.random.default_rng(3)
    n = 5000
    tr = AccessTrace(rng.integers(0, 2**40, n).astype(np.uint64) & ~np.uint64(63),
                     rng.integers(1, 300, n), rng.random(n) < 0.3,
                     np.sort(rng.random(n)).round(3) * 1e3 if timed else None,
                     layer=np.repeat(np.arange(5), n // 5))
    path = tmp_path / f"t{suffix}"
    tr.write(path)
    _same(read_trace(path), tr)
    pieces = list(iter_trace(path, 700))
    assert max(len(p) for p in pieces) <= 700 or suffix == ".trace"
    assert len(pieces) > 1
    _same(AccessTrace.concat(pieces), tr)


def test_text_chunks_keep_layer_and_line_numbers(tmp_path):
    lines = ["# layer 3"] + [f"R 0x{64 * i:x} 64" for i in range(20000)]
    lines[15001] = "R 0x40 0"  # bad size, far into the file
    path = tmp_path / "big.trace"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TraceFormatError, match=r"big.trace:15002: size must be in 1"):
        for _ in iter_trace(path, 1000):
            pass
    lines[15001] = "R 0x40 64"
    path.write_text("\n".join(lines) + "\n")
    got = AccessTrace.concat(iter_trace(path, 1000))
    assert len(got) == 20000 and set(got.layer.tolist()) == {3}


def test_memory_mapped_writer_and_reader(tmp_path):
    path = tmp_path / "big.npy"
    rec = open_binary_trace(path, 10_000)
    rec["addr"] = np.arange(10_000, dtype=np.uint64) * 64
    rec["size"] = 64
    rec["write"] = np.arange(10_000) % 4 == 0
    rec["layer"] = -1
    rec["plane"] = 255
    rec.flush()
    del rec
    tr = read_trace(path)
    assert len(tr) == 10_000 and tr.is_write.sum() == 2500 and tr.payload_bytes == 640_000


def test_binary_errors_name_file_and_record(tmp_path):
    rec = np.zeros(10, TRACE_DTYPE)
    rec["size"] = 64
    rec["size"][7] = 0
    np.save(tmp_path / "a.npy", rec)
    with pytest.raises(TraceFormatError, match=r"a.npy: record 7: size must be in 1..2\^32-1"):
        read_trace(tmp_path / "a.npy")
    rec["size"][7] = 64
    rec["addr"][2] = 2**64 - 32
    np.save(tmp_path / "b.npy", rec)
    with pytest.raises(TraceFormatError, match=r"b.npy: record 2: request runs past"):
        read_trace(tmp_path / "b.npy")
    np.savez(tmp_path / "c.npz", addr=np.zeros(3, np.uint64))
    with pytest.raises(TraceFormatError, match=r"c.npz: a binary trace needs columns addr and "
                                               r"size .* missing size"):
        read_trace(tmp_path / "c.npz")
    np.savez(tmp_path / "d.npz", addr=np.zeros(3, np.uint64), size=np.ones(3),
             time_ns=np.array([0.0, np.nan, 1.0]))
    with pytest.raises(TraceFormatError, match=r"d.npz: columns addr and size must be integers"):
        read_trace(tmp_path / "d.npz")
    np.savez(tmp_path / "e.npz", addr=np.zeros(3, np.uint64), size=np.ones(3, np.uint32),
             time_ns=np.array([0.0, np.nan, 1.0]))
    with pytest.raises(TraceFormatError, match=r"e.npz: record 1: time_ns must be a finite"):
        read_trace(tmp_path / "e.npz")
    np.save(tmp_path / "f.npy", np.zeros(4, np.uint64))
    with pytest.raises(TraceFormatError, match=r"f.npy: a .npy trace is a 1-D array of records"):
        read_trace(tmp_path / "f.npy")
