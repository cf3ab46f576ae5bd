"""The compiled text-trace parser (``psa.sim.tracefile``) against the golden NumPy parser.

Contract: on every block the compiled parser either gives exactly the golden parser's columns
(values and dtypes, the layer and timed state after the block) or refuses it, and reading a
file through :func:`iter_trace_fast` gives the same pieces and the same errors as
:func:`psa.golden.trace.iter_trace`.
"""

from __future__ import annotations

import numpy as np
import pytest

from psa.golden.trace import TraceFormatError, _parse_fast, _parse_lines, iter_trace
from psa.sim.tracefile import iter_trace_fast, parse_block

COLS = ("addr", "size", "is_write", "layer", "plane")


def same(a, b) -> None:
    """Two (trace, layer, timed) results are identical."""
    ta, tb = a[0], b[0]
    assert a[1:] == b[1:]
    assert len(ta) == len(tb)
    for k in COLS:
        x, y = getattr(ta, k), getattr(tb, k)
        assert x.dtype == y.dtype, k
        assert np.array_equal(x, y), k
    assert (ta.time_ns is None) == (tb.time_ns is None)
    if ta.time_ns is not None:
        assert ta.time_ns.dtype == tb.time_ns.dtype
        assert np.array_equal(ta.time_ns, tb.time_ns)


def golden(data: bytes, layer: int = -1, timed=None):
    out = _parse_fast(data, layer, timed)
    if out is None:
        out = _parse_lines(data.decode(), "<t>", 0, layer, timed)
    return out


def random_text(rng: np.random.Generator, n: int, timed: bool) -> bytes:
    """Well-formed lines in every spelling the grammar allows: R/W/LD/ST in either case, hex
    (0x/0X, any digit case, leading zeros) or decimal addresses, spaces and tabs, blank and
    comment lines, trailing comments, '# layer L' markers, CRLF line ends."""
    lines = []
    for _ in range(n):
        r = rng.random()
        if r < 0.05:
            lines.append(rng.choice(["", "   ", "\t", "# a comment", "  # x # y", "#"]))
            continue
        if r < 0.08:
            sep = rng.choice([" ", "\t", "  "])
            lines.append(f"#{sep}layer{sep}{int(rng.integers(0, 32768))}")
            continue
        op = rng.choice(["R", "W", "r", "w", "LD", "ST", "ld", "St"])
        size = int(rng.choice([1, 2, 63, 64, 128, 4096, 2**32 - 1]))
        top = 2**64 - (size if op.upper() in ("R", "W") else 64)
        a = int(rng.integers(0, 1 << 40)) if rng.random() < 0.8 else int(
            rng.integers(0, top, dtype=np.uint64, endpoint=True))
        if rng.random() < 0.7:
            ad = rng.choice(["0x", "0X"]) + (f"{a:x}" if rng.random() < 0.5 else f"{a:X}")
            if rng.random() < 0.1 and len(ad) < 17:
                ad = ad[:2] + "0" + ad[2:]
        else:
            ad = str(a) if a < 10**19 else f"0x{a:x}"
        toks = [op, ad] + ([str(size)] if op.upper() in ("R", "W") else [])
        if timed:
            t = rng.choice([f"{rng.random() * 1e4:.3f}", f"{rng.random() * 100!r}",
                            str(int(rng.integers(0, 10**6))), f"{rng.random():.17g}",
                            f"{rng.random() * 1e3:e}", ".5", "7.", "1E+03"])
            toks = [t] + toks
        sep = rng.choice([" ", "\t", "  ", " \t "])
        line = rng.choice(["", " ", "\t"]) + sep.join(toks) + rng.choice(["", " ", "\t"])
        if rng.random() < 0.05:
            line += " # trailing comment"
        lines.append(line)
    nl = "\r\n" if rng.random() < 0.3 else "\n"
    return (nl.join(lines) + nl).encode()


@pytest.mark.parametrize("seed", range(12))
def test_random_wellformed_blocks_match_golden(seed):
    rng = np.random.default_rng(seed)
    timed = bool(seed % 3 == 2)
    data = random_text(rng, 3000, timed)
    fast = parse_block(data)
    assert fast is not None  # well-formed text is taken by the fast path
    same(fast, golden(data))


def test_block_state_carried():
    data = b"R 0x40 64\n# layer 3\nW 0x80 32\n"
    for layer, timed in ((-1, None), (7, False)):
        same(parse_block(data, layer, timed), golden(data, layer, timed))
    assert parse_block(data, 7, True) is None  # timed before, untimed now: golden names it
    empty = parse_block(b"# only a comment\n# layer 12\n\n", 4, None)
    assert len(empty[0]) == 0 and empty[1:] == (12, None)


@pytest.mark.parametrize("line", [
    "R 0x0", "R 0x0 64 5", "X 0x0 64", "LD", "LD 0x0 64", "R 0xg 64", "R 0x 64", "R 12a 64",
    "R 0x0 0", "R 0x0 4294967296", "R 0x0 -1", "R 0x0 1.5", "R 0xffffffffffffffff 2",
    "R 0x10000000000000000 64", "R 18446744073709551616 64", "-1 R 0x0 64", "+1 R 0x0 64",
    "1e999 R 0x0 64", "inf R 0x0 64", "1.2.3 R 0x0 64", "R 0x0 64\rW 0x0 64", "R\x01 0x0 64",
    "R 0x0 64 # caf\u00e9", "# layer 99999", "# layer 32768", "R 0x00000000000000001 64",
    "12345678901234567890 R 0x0 64", "R 0x0 00000000064",
])
def test_unusual_lines_same_result_or_error(tmp_path, line):
    """Lines the fast path refuses (or must treat exactly as golden does): reading the file
    gives the golden result, or the golden error message word for word."""
    text = f"R 0x40 64\n{line}\nW 0x80 64\n"
    path = tmp_path / "t.trace"
    path.write_bytes(text.encode())
    try:
        want = list(iter_trace(path, 8))
    except (TraceFormatError, OverflowError) as e:  # golden: '# layer 99999' overflows int16
        with pytest.raises(type(e)) as got:
            list(iter_trace_fast(path, 8))
        assert str(got.value) == str(e)
        return
    got = list(iter_trace_fast(path, 8))
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        same((a, 0, 0), (b, 0, 0))


def test_mixed_timed_untimed_error(tmp_path):
    path = tmp_path / "t.trace"
    path.write_text("1.5 R 0x0 64\nR 0x40 64\n")
    with pytest.raises(TraceFormatError, match=r"t.trace:2: a trace has an issue time"):
        list(iter_trace_fast(path))


@pytest.mark.parametrize("seed", range(3))
def test_files_in_pieces_match_golden(tmp_path, seed):
    """Whole files read a block at a time (small blocks, so state crosses block edges; one
    malformed-free file, one whose bad line sits in a late block)."""
    rng = np.random.default_rng(100 + seed)
    data = random_text(rng, 8000, timed=seed == 1)
    path = tmp_path / "t.trace"
    path.write_bytes(data)
    got, want = list(iter_trace_fast(path, 100)), list(iter_trace(path, 100))
    assert len(got) == len(want) >= 2  # blocks are >= 64 KiB
    for a, b in zip(got, want, strict=True):
        same((a, 0, 0), (b, 0, 0))
    path.write_bytes(data + b"R 0x0 banana\n")
    with pytest.raises(TraceFormatError) as e1:
        list(iter_trace(path, 100))
    with pytest.raises(TraceFormatError) as e2:
        list(iter_trace_fast(path, 100))
    assert str(e1.value) == str(e2.value) and "banana" in str(e2.value)
