"""Trace files for the simulator: :func:`psa.golden.trace.iter_trace` with a compiled parser.

Text blocks are parsed first by ``psa_parse_trace`` in the C++ kernel (``controller.cpp``),
which accepts well-formed lines of the trace grammar (``docs/trace_format.md``) and gives the
same columns as the NumPy parser of ``psa.golden.trace``. A block holding anything it does not
accept (a malformed line, a bare carriage return, a '+'/'-' signed time, an over-long digit
string, a ``# layer`` marker above 32767, a byte outside printable ASCII) goes to the golden
parsers unchanged, so their results and error messages (``file:line``, what was expected)
stay exactly as they are. Binary traces (``.npy``/``.npz``) are read by the golden reader.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from psa.golden.trace import AccessTrace, iter_trace

from . import controller as ctl

__all__ = ["parse_block", "iter_trace_fast"]


def parse_block(data: bytes, layer: int = -1,
                timed: bool | None = None) -> tuple[AccessTrace, int, bool | None] | None:
    """Parse whole trace lines ``data`` (UTF-8 bytes) with the compiled parser:
    ``(trace, layer after the block, timed)``, or None when the block holds anything the fast
    path does not accept (the caller then uses the golden parsers). ``layer`` and ``timed``
    carry the state of the text before the block (None: no request yet)."""
    if not isinstance(data, bytes):
        data = bytes(data)
    cap = data.count(b"\n") + 1
    addr = np.empty(cap, np.uint64)
    size = np.empty(cap, np.uint32)
    wr = np.empty(cap, np.uint8)
    tns = np.empty(cap, np.float64)
    lay = np.empty(cap, np.int16)
    state = np.zeros(2, np.int64)
    n = ctl.kernel().psa_parse_trace(
        data, len(data), int(layer), -1 if timed is None else int(timed), addr.ctypes.data,
        size.ctypes.data, wr.ctypes.data, tns.ctypes.data, lay.ctypes.data, state.ctypes.data)
    if n < 0:
        return None
    timed_after = None if state[1] < 0 else bool(state[1])
    trace = AccessTrace(addr[:n], size[:n], wr[:n].view(bool),
                        tns[:n] if timed_after else None, lay[:n])
    return trace, int(state[0]), timed_after


def iter_trace_fast(path: str | os.PathLike, chunk: int = 1 << 20) -> Iterator[AccessTrace]:
    """:func:`psa.golden.trace.iter_trace` (same pieces, same errors) with text blocks parsed
    by the compiled parser where it accepts them."""
    return iter_trace(path, chunk, parser=parse_block)
