"""DRAM access traces: K/V memory layout, the trace text format, and traffic formulas.

Layout (``KVLayout``): each of up to four *planes* (K MSBs, K LSBs, V MSBs, V LSBs) is an
array ``[layer][head][token]`` of rows of ``d_head`` elements at the plane's bit width, so a
row is ``d_head * bits / 8`` bytes. Plane bases are configurable; by default planes follow one
another, each aligned to 4 KiB. A plane with 0 bits does not exist. Progressive quantization
keeps MSBs and LSBs in separate planes so that an MSB-only fetch is one contiguous read.

Text format (one request a line, documented in ``docs/trace_format.md``)::

    # comment            (anywhere; '#' also starts a trailing comment)
    [TIME] R ADDR BYTES  read BYTES bytes at ADDR
    [TIME] W ADDR BYTES  write
    [TIME] LD ADDR       Ramulator-style load of one 64-byte line
    [TIME] ST ADDR       Ramulator-style store of one 64-byte line

``ADDR`` is hex with ``0x`` (or decimal), ``BYTES`` a positive decimal integer, ``TIME`` an
optional non-negative decimal issue time in nanoseconds. A trace either has a time on every
request or on none.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np

__all__ = [
    "Plane",
    "KVLayout",
    "AccessTrace",
    "TraceFormatError",
    "read_trace",
    "parse_trace",
    "iter_trace",
    "records",
    "open_binary_trace",
    "TRACE_DTYPE",
    "TIMED_TRACE_DTYPE",
    "BURST_BYTES",
]

BURST_BYTES = 64
LINE_BYTES = 64  # size of an LD/ST request


class Plane(IntEnum):
    """Which K/V bit plane a request reads. ``OTHER`` tags requests read from files."""

    K_MSB = 0
    K_LSB = 1
    V_MSB = 2
    V_LSB = 3
    OTHER = 255


class TraceFormatError(ValueError):
    """A malformed trace line: the message names file, line and what was expected."""


@dataclass(frozen=True)
class KVLayout:
    """Byte layout of K and V in DRAM: planes of ``[layer][head][token]`` rows.

    Parameters
    ----------
    n_layers, n_heads, max_tokens, d_head:
        Array extents; ``max_tokens`` is the row pitch in tokens.
    k_msb_bits, k_lsb_bits, v_msb_bits, v_lsb_bits:
        Bits per element of each plane (0: the plane does not exist). Unquantized fp32 is
        ``k_msb_bits=32, k_lsb_bits=0``.
    bases:
        Optional byte base address per plane (``K_MSB, K_LSB, V_MSB, V_LSB``); default packs
        planes one after another, each aligned to ``align`` bytes.
    """

    n_layers: int
    n_heads: int
    max_tokens: int
    d_head: int
    k_msb_bits: int = 8
    k_lsb_bits: int = 4
    v_msb_bits: int = 8
    v_lsb_bits: int = 4
    bases: tuple[int, int, int, int] | None = None
    align: int = 4096
    _base: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_heads", "max_tokens", "d_head"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"KVLayout: {name} must be an integer >= 1, got {v!r}")
        for plane in Plane:
            if plane is Plane.OTHER:
                continue
            bits = self.bits(plane)
            if not 0 <= bits <= 64:
                raise ValueError(
                    f"KVLayout: {plane.name.lower()}_bits must be in 0..64, got {bits}")
            if (self.d_head * bits) % 8:
                raise ValueError(
                    f"KVLayout: d_head * {plane.name.lower()}_bits must be a multiple of 8 "
                    f"(whole bytes per row), got {self.d_head} * {bits}"
                )
        if self.bases is not None:
            if len(self.bases) != 4 or any(b < 0 for b in self.bases):
                raise ValueError(
                    f"KVLayout: bases must be 4 non-negative addresses, got {self.bases!r}")
            base = tuple(int(b) for b in self.bases)
        else:
            base, nxt = [], 0
            for plane in (Plane.K_MSB, Plane.K_LSB, Plane.V_MSB, Plane.V_LSB):
                base.append(nxt)
                nxt += -(-self.plane_bytes(plane) // self.align) * self.align
            base = tuple(base)
        object.__setattr__(self, "_base", base)

    def bits(self, plane: Plane) -> int:
        return (self.k_msb_bits, self.k_lsb_bits, self.v_msb_bits, self.v_lsb_bits)[plane]

    def row_bytes(self, plane: Plane) -> int:
        """Bytes of one token's row in ``plane``."""
        return self.d_head * self.bits(plane) // 8

    def plane_bytes(self, plane: Plane) -> int:
        return self.n_layers * self.n_heads * self.max_tokens * self.row_bytes(plane)

    def base(self, plane: Plane) -> int:
        return self._base[plane]

    def address(self, plane: Plane, layer, head, token):
        """Byte address of a row; broadcasts over NumPy arrays of layer/head/token."""
        row = (np.asarray(layer, dtype=np.uint64) * np.uint64(self.n_heads)
               + np.asarray(head, dtype=np.uint64)) * np.uint64(self.max_tokens) \
            + np.asarray(token, dtype=np.uint64)
        return np.uint64(self.base(plane)) + row * np.uint64(self.row_bytes(plane))


class AccessTrace:
    """A sequence of DRAM requests, as parallel NumPy arrays.

    ``is_write`` (bool), ``addr`` (uint64 bytes), ``size`` (uint32 bytes), ``time_ns``
    (float64 issue times, or ``None`` for as-fast-as-possible), and tags for reports:
    ``layer`` (int16, -1 unknown), ``plane`` (uint8 :class:`Plane`).
    """

    def __init__(self, addr, size, is_write=None, time_ns=None, layer=None, plane=None):
        self.addr = np.asarray(addr, dtype=np.uint64).ravel()
        n = len(self.addr)
        self.size = np.broadcast_to(np.asarray(size, dtype=np.uint32), (n,)).copy()
        self.is_write = (np.zeros(n, bool) if is_write is None
                         else np.broadcast_to(np.asarray(is_write, bool), (n,)).copy())
        self.time_ns = None if time_ns is None else np.asarray(time_ns, np.float64).ravel()
        self.layer = (np.full(n, -1, np.int16) if layer is None
                      else np.broadcast_to(np.asarray(layer, np.int16), (n,)).copy())
        self.plane = (np.full(n, Plane.OTHER, np.uint8) if plane is None
                      else np.broadcast_to(np.asarray(plane, np.uint8), (n,)).copy())
        if self.time_ns is not None and len(self.time_ns) != n:
            raise ValueError("AccessTrace: time_ns must have one entry per request")

    def __len__(self) -> int:
        return len(self.addr)

    def __repr__(self) -> str:
        return (f"AccessTrace({len(self)} requests, {self.payload_bytes} payload bytes, "
                f"{self.burst_bytes()} burst bytes)")

    @classmethod
    def empty(cls) -> AccessTrace:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint32))

    @classmethod
    def concat(cls, traces) -> AccessTrace:
        traces = list(traces)
        if not traces:
            return cls.empty()
        timed = [t.time_ns is not None for t in traces]
        if any(timed) and not all(timed):
            raise ValueError("AccessTrace.concat: cannot mix timed and untimed traces")
        return cls(
            np.concatenate([t.addr for t in traces]),
            np.concatenate([t.size for t in traces]),
            np.concatenate([t.is_write for t in traces]),
            np.concatenate([t.time_ns for t in traces]) if all(timed) else None,
            np.concatenate([t.layer for t in traces]),
            np.concatenate([t.plane for t in traces]),
        )

    @property
    def payload_bytes(self) -> int:
        """Sum of request sizes."""
        return int(self.size.sum(dtype=np.uint64))

    def bursts(self, burst: int = BURST_BYTES) -> np.ndarray:
        """Bursts each request touches (a misaligned request may touch one more)."""
        first = self.addr // np.uint64(burst)
        last = (self.addr + self.size.astype(np.uint64) - np.uint64(1)) // np.uint64(burst)
        return np.where(self.size > 0, last - first + np.uint64(1), np.uint64(0)).astype(np.int64)

    def burst_bytes(self, burst: int = BURST_BYTES) -> int:
        """DRAM bytes moved when every request is rounded out to whole bursts."""
        return int(self.bursts(burst).sum()) * burst

    def bytes_by(self, key: str = "layer") -> dict[int, int]:
        """Payload bytes grouped by a tag (``layer`` or ``plane``)."""
        tags = getattr(self, key)
        out: dict[int, int] = {}
        for t in np.unique(tags):
            out[int(t)] = int(self.size[tags == t].sum(dtype=np.uint64))
        return out

    # text I/O -------------------------------------------------------------------------
    def lines(self):
        """Yield the trace as text lines (no newline), with ``# layer L`` markers."""
        cur = None
        ops = np.where(self.is_write, "W", "R")
        for i in range(len(self)):
            layer = int(self.layer[i])
            if layer != cur and layer >= 0:
                yield f"# layer {layer}"
                cur = layer
            head = "" if self.time_ns is None else f"{self.time_ns[i]:.3f} "
            yield f"{head}{ops[i]} 0x{int(self.addr[i]):x} {int(self.size[i])}"

    def write(self, path: str | os.PathLike | io.TextIOBase) -> None:
        """Write the text format (see module docstring), or binary by suffix: ``.npy``
        (records of :data:`TRACE_DTYPE`) or ``.npz`` (one array per column)."""
        if not isinstance(path, io.TextIOBase) and Path(path).suffix.lower() in (".npy",
                                                                                  ".npz"):
            if Path(path).suffix.lower() == ".npy":
                np.save(Path(path), records(self), allow_pickle=False)
            else:
                cols = {"addr": self.addr, "size": self.size, "write": self.is_write,
                        "layer": self.layer, "plane": self.plane}
                if self.time_ns is not None:
                    cols["time_ns"] = self.time_ns
                np.savez(Path(path), **cols)
            return
        header = "# psa access trace v1: [time_ns] R|W addr bytes\n"
        text = header + "\n".join(self.lines()) + "\n"
        if isinstance(path, io.TextIOBase):
            path.write(text)
        else:
            Path(path).write_text(text)


def _parse_int(tok: str) -> int:
    return int(tok, 16) if tok[:2].lower() == "0x" else int(tok, 10)


def parse_trace(text: str, source: str = "<trace>") -> AccessTrace:
    """Parse trace text. Raises :class:`TraceFormatError` naming ``source:line``.

    Well-formed text is parsed with NumPy array operations (no loop per line); text the fast
    path does not accept is handed to the line-by-line parser, which names the bad line.
    """
    data = text.encode("utf-8")
    fast = _parse_fast(data)
    if fast is not None:
        return fast[0]
    return _parse_lines(text, source)[0]


def _parse_lines(text: str, source: str, line0: int = 0, layer: int = -1,
                 timed: bool | None = None) -> tuple[AccessTrace, int, bool | None]:
    """The line-by-line parser (exact error messages). ``line0`` lines precede ``text``;
    ``layer`` and ``timed`` carry the state of the text before it. Returns the trace, the
    current layer and whether the trace is timed (None: no request yet)."""
    addr, size, wr, times, layers = [], [], [], [], []
    for lineno, raw in enumerate(text.splitlines(), line0 + 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            marker = raw.strip().split()
            if len(marker) == 3 and marker[:2] == ["#", "layer"] and marker[2].isdigit():
                layer = int(marker[2])
            continue
        toks = line.split()

        def fail(what: str, lineno: int = lineno, raw: str = raw) -> None:
            raise TraceFormatError(f"{source}:{lineno}: {what}, got {raw.strip()!r}")

        t = None
        if toks[0][0].isdigit() or toks[0][0] in ".+-":
            try:
                t = float(toks[0])
            except ValueError:
                fail("expected an issue time in ns or an operation R/W/LD/ST")
            if t < 0:
                fail("issue time must be >= 0 ns")
            toks = toks[1:]
        if timed is None:
            timed = t is not None
        elif timed != (t is not None):
            fail("a trace has an issue time on every request or on none")
        if not toks:
            fail("expected an operation R/W/LD/ST after the time")
        op = toks[0].upper()
        if op in ("R", "W"):
            if len(toks) != 3:
                fail(f"expected '{op} ADDR BYTES'")
        elif op in ("LD", "ST"):
            if len(toks) != 2:
                fail(f"expected '{op} ADDR'")
        else:
            fail("expected an operation R, W, LD or ST")
        try:
            a = _parse_int(toks[1])
        except ValueError:
            fail("expected an address (hex with 0x, or decimal)")
        if not 0 <= a < 2**64:
            fail("expected an address in 0..2^64-1")
        if op in ("R", "W"):
            try:
                s = int(toks[2])
            except ValueError:
                fail("expected a size in bytes (decimal integer)")
            if not 1 <= s < 2**32:
                fail("size must be in 1..2^32-1 bytes")
        else:
            s = LINE_BYTES
        if a + s > 2**64:
            fail(f"request of {s} bytes at 0x{a:x} runs past the last address 2^64-1")
        addr.append(a)
        size.append(s)
        wr.append(op in ("W", "ST"))
        times.append(t)
        layers.append(layer)
    return AccessTrace(
        np.array(addr, dtype=np.uint64), np.array(size, dtype=np.uint32), np.array(wr, bool),
        np.array(times, np.float64) if timed else None, np.array(layers, np.int16),
    ), layer, timed


# fast text parsing -----------------------------------------------------------------------
_HEX = np.full(256, 255, np.uint8)
_HEX[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_HEX[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)
_HEX[np.frombuffer(b"ABCDEF", np.uint8)] = np.arange(10, 16)
_WS = np.zeros(256, bool)
_WS[[9, 10, 13, 32]] = True
_BAD = np.zeros(256, bool)  # bytes the fast path leaves to the line parser
_BAD[:32] = True
_BAD[[9, 10, 13]] = False
_BAD[128:] = True


def _digits(buf: np.ndarray, start: np.ndarray, end: np.ndarray, width: int,
            base: int) -> np.ndarray | None:
    """Integer values of the digit strings ``buf[start:end]`` (at most ``width`` digits each);
    None if any token is longer or holds a non-digit."""
    n = end - start
    if len(n) and (n.min() < 1 or n.max() > width):
        return None
    value = np.zeros(len(n), np.uint64)
    b = np.uint64(base)
    last = len(buf) - 1
    for k in range(int(n.max()) if len(n) else 0, 0, -1):  # k-th digit from the right
        pos = end - k
        valid = pos >= start
        d = _HEX[buf[np.clip(pos, 0, last)]]
        if np.any(valid & (d >= base)):
            return None
        value = np.where(valid, value * b + d, value)
    return value


def _parse_fast(data: bytes, layer0: int = -1, timed0: bool | None = None):
    """Parse well-formed trace text with array operations: ``(trace, layer, timed)``, or None
    when any line is not plainly well formed (the caller then uses the line parser, which
    names the offending line)."""
    buf = np.frombuffer(data, np.uint8)
    if len(buf) == 0:
        return AccessTrace.empty(), layer0, timed0
    if _BAD[buf].any():
        return None
    cr = np.flatnonzero(buf == 13)
    if len(cr) and np.any(buf[np.minimum(cr + 1, len(buf) - 1)] != 10) or (len(cr) and
                                                                          cr[-1] == len(buf) - 1):
        return None  # a bare carriage return ends a line for the line parser
    nl = np.flatnonzero(buf == 10)
    line_start = np.concatenate([[0], nl + 1])
    # comment lines and trailing comments: few in practice, handled per line in Python
    markers_at, markers_val = [], []
    hashes = np.flatnonzero(buf == 35)
    if len(hashes):
        buf = buf.copy()
        lines = np.unique(np.searchsorted(nl, hashes))
        line_end = np.concatenate([nl, [len(buf)]])
        for li in lines.tolist():
            a, b = int(line_start[li]), int(line_end[li])
            raw = data[a:b].decode("ascii")
            h = raw.index("#")
            if not raw[:h].strip():
                marker = raw.strip().split()
                if len(marker) == 3 and marker[:2] == ["#", "layer"] and marker[2].isdigit():
                    markers_at.append(li)
                    markers_val.append(int(marker[2]))
            buf[a + h:b] = 32
    ws = _WS[buf]
    edge = np.diff(np.concatenate([[1], ws.view(np.int8), [1]]).astype(np.int8))
    t_start = np.flatnonzero(edge == -1)
    t_end = np.flatnonzero(edge == 1)
    t_line = np.searchsorted(nl, t_start)
    if len(t_start) == 0:
        return AccessTrace.empty(), markers_val[-1] if markers_val else layer0, timed0
    first = np.flatnonzero(np.diff(np.concatenate([[-1], t_line])) != 0)  # first token of a line
    req_line = t_line[first]
    ntok = np.diff(np.concatenate([first, [len(t_start)]]))
    c0 = buf[t_start[first]]
    is_time = ((c0 >= 48) & (c0 <= 57)) | (c0 == 46) | (c0 == 43) | (c0 == 45)
    timed = bool(is_time[0])
    if np.any(is_time != timed) or (timed0 is not None and timed != timed0):
        return None
    op = first + int(timed)
    if np.any(ntok < 2 + int(timed)):
        return None
    op_len = t_end[op] - t_start[op]
    a0 = buf[t_start[op]] | 32  # lower case
    a1 = np.where(op_len > 1, buf[np.minimum(t_start[op] + 1, len(buf) - 1)] | 32, 0)
    rw = (op_len == 1) & ((a0 == ord("r")) | (a0 == ord("w")))
    ldst = (op_len == 2) & (((a0 == ord("l")) & (a1 == ord("d")))
                            | ((a0 == ord("s")) & (a1 == ord("t"))))
    if not np.all(rw | ldst) or np.any(ntok != np.where(rw, 3, 2) + int(timed)):
        return None
    is_write = np.where(rw, a0 == ord("w"), a0 == ord("s"))
    # addresses: hex with 0x, or decimal
    ai = op + 1
    s0, e0 = t_start[ai], t_end[ai]
    hexa = ((e0 - s0) > 2) & (buf[s0] == 48) & ((buf[np.minimum(s0 + 1, len(buf) - 1)] | 32)
                                                 == ord("x"))
    addr = np.zeros(len(ai), np.uint64)
    for mask, skip, width, base in ((hexa, 2, 16, 16), (~hexa, 0, 19, 10)):
        if mask.any():
            v = _digits(buf, s0[mask] + skip, e0[mask], width, base)
            if v is None:
                return None
            addr[mask] = v
    size = np.full(len(ai), LINE_BYTES, np.uint64)
    if rw.any():
        si = ai[rw] + 1
        v = _digits(buf, t_start[si], t_end[si], 10, 10)
        if v is None or np.any(v < 1) or np.any(v >= 2**32):
            return None
        size[rw] = v
    if np.any(addr > np.uint64(2**64 - 1) - (size - np.uint64(1))):
        return None  # runs past the last address
    times = None
    if timed:
        s1, e1 = t_start[first], t_end[first]
        w = int((e1 - s1).max())
        pos = s1[:, None] + np.arange(w)
        chars = np.where(pos < e1[:, None], buf[np.minimum(pos, len(buf) - 1)], 0)
        try:
            times = np.ascontiguousarray(chars.astype(np.uint8)).view(f"S{w}").ravel() \
                .astype(np.float64)
        except ValueError:
            return None
        if not np.all(np.isfinite(times)) or np.any(times < 0):
            return None
    layer = np.full(len(req_line), layer0, np.int16)
    if markers_at:
        k = np.searchsorted(np.array(markers_at), req_line) - 1
        mv = np.array(markers_val, np.int64)
        if mv.max() > np.iinfo(np.int16).max:
            return None
        layer = np.where(k >= 0, mv[np.maximum(k, 0)], layer0).astype(np.int16)
    last_layer = markers_val[-1] if markers_val else layer0
    return (AccessTrace(addr, size.astype(np.uint32), is_write, times, layer), last_layer,
            timed)


#: Record layout of a binary trace (``.npy``): one structured record per request.
TRACE_DTYPE = np.dtype([("addr", "<u8"), ("size", "<u4"), ("write", "u1"), ("layer", "<i2"),
                        ("plane", "u1")])
#: The same with an issue time (ns) per request.
TIMED_TRACE_DTYPE = np.dtype(TRACE_DTYPE.descr[:3] + [("time_ns", "<f8")]
                             + TRACE_DTYPE.descr[3:])
_COLUMNS = ("addr", "size", "write", "time_ns", "layer", "plane")
_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


def records(trace: AccessTrace) -> np.ndarray:
    """The trace as an array of :data:`TRACE_DTYPE` (or :data:`TIMED_TRACE_DTYPE`) records."""
    rec = np.empty(len(trace), TRACE_DTYPE if trace.time_ns is None else TIMED_TRACE_DTYPE)
    rec["addr"], rec["size"], rec["write"] = trace.addr, trace.size, trace.is_write
    rec["layer"], rec["plane"] = trace.layer, trace.plane
    if trace.time_ns is not None:
        rec["time_ns"] = trace.time_ns
    return rec


def open_binary_trace(path: str | os.PathLike, n: int, *, timed: bool = False) -> np.ndarray:
    """A writable memory map of ``n`` records at ``path`` (``.npy``), for writing a trace
    larger than memory piece by piece (fill ``addr``, ``size``, ``write``...; ``flush()``)."""
    dtype = TIMED_TRACE_DTYPE if timed else TRACE_DTYPE
    return np.lib.format.open_memmap(Path(path), mode="w+", dtype=dtype, shape=(int(n),))


def _from_columns(cols, source: str, offset: int = 0) -> AccessTrace:
    """Check binary columns and wrap them; errors name the file and the record."""
    names = set(cols.dtype.names) if isinstance(cols, np.ndarray) else set(cols)
    missing = [c for c in ("addr", "size") if c not in names]
    if missing:
        raise TraceFormatError(f"{source}: a binary trace needs columns addr and size (and "
                               f"optionally write, time_ns, layer, plane), missing "
                               f"{', '.join(missing)}; found {', '.join(sorted(names))}")
    addr = np.asarray(cols["addr"])
    size = np.asarray(cols["size"])
    n = len(addr)

    def bad(mask, what):
        i = int(np.argmax(mask))
        raise TraceFormatError(f"{source}: record {offset + i}: {what}")

    for name in _COLUMNS:
        if name in names and (np.asarray(cols[name]).ndim != 1 or len(cols[name]) != n):
            raise TraceFormatError(f"{source}: column {name} must be 1-D with one entry per "
                                   f"request ({n}), got shape {np.asarray(cols[name]).shape}")
    if addr.dtype.kind not in "ui" or size.dtype.kind not in "ui":
        raise TraceFormatError(f"{source}: columns addr and size must be integers, got "
                               f"{addr.dtype} and {size.dtype}")
    if addr.dtype.kind == "i" and n and (addr < 0).any():
        bad(addr < 0, "addr must be in 0..2^64-1")
    s64 = size.astype(np.int64) if size.dtype != np.uint64 else size
    if n and ((s64 < 1) | (s64 >= 2**32)).any():
        bad((s64 < 1) | (s64 >= 2**32), f"size must be in 1..2^32-1 bytes, got "
            f"{int(size[np.argmax((s64 < 1) | (s64 >= 2**32))])}")
    a = addr.astype(np.uint64)
    sz = size.astype(np.uint64)
    if n and (a > np.uint64(2**64 - 1) - (sz - np.uint64(1))).any():
        bad(a > np.uint64(2**64 - 1) - (sz - np.uint64(1)), "request runs past the last "
            "address 2^64-1")
    times = None
    if "time_ns" in names:
        times = np.asarray(cols["time_ns"], np.float64)
        ok = np.isfinite(times) & (times >= 0)
        if n and not ok.all():
            bad(~ok, f"time_ns must be a finite issue time >= 0 ns, got {times[np.argmax(~ok)]}")
    wr = np.asarray(cols["write"]) if "write" in names else None
    return AccessTrace(a, sz.astype(np.uint32), None if wr is None else wr.astype(bool), times,
                       np.asarray(cols["layer"]) if "layer" in names else None,
                       np.asarray(cols["plane"]) if "plane" in names else None)


def _binary_kind(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise TraceFormatError(f"{path}: cannot read trace: {e.strerror}") from None
    if head == _NPY_MAGIC:
        return "npy"
    if head[:4] == _ZIP_MAGIC:
        return "npz"
    return None


def _open_binary(path: Path, kind: str):
    try:
        if kind == "npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            if arr.dtype.names is None or arr.ndim != 1:
                raise TraceFormatError(f"{path}: a .npy trace is a 1-D array of records with "
                                       f"fields addr, size, write[, time_ns], layer, plane "
                                       f"(psa.golden.trace.TRACE_DTYPE), got {arr.dtype} of "
                                       f"shape {arr.shape}")
            return arr
        z = np.load(path, allow_pickle=False)
        return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise TraceFormatError(f"{path}: cannot read binary trace: {e}") from None


def read_trace(path: str | os.PathLike) -> AccessTrace:
    """Read a trace file: text (format in the module docstring) or binary (``.npy`` records
    of :data:`TRACE_DTYPE`, or ``.npz`` columns ``addr size [write time_ns layer plane]``),
    recognised by content."""
    path = Path(path)
    kind = _binary_kind(path)
    if kind is not None:
        return _from_columns(_open_binary(path, kind), str(path))
    return AccessTrace.concat(iter_trace(path, 1 << 16))


def _decode(data: bytes, path: Path, line0: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = line0 + data.count(b"\n", 0, e.start) + 1
        raise TraceFormatError(
            f"{path}:{lineno}: expected a text trace (UTF-8 lines '[time_ns] R|W ADDR BYTES'), "
            f"got byte 0x{data[e.start]:02x} that is not UTF-8 text (binary file?)") from None


def iter_trace(path: str | os.PathLike, chunk: int = 1 << 20,
               parser=None) -> Iterator[AccessTrace]:
    """Read a trace file in pieces of about ``chunk`` requests (bounded memory: a binary
    ``.npy`` trace is memory-mapped, a text trace read a block at a time). The pieces
    concatenated equal :func:`read_trace`; errors name the file and line (or record).

    ``parser(data, layer, timed)``, if given, is tried first on each text block of whole lines
    (bytes): it returns ``(trace, layer, timed)`` as the NumPy parser would, or None to leave
    the block to it (a faster parser of well-formed lines, e.g. ``psa.sim``'s compiled one)."""
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
    path = Path(path)
    kind = _binary_kind(path)
    if kind == "npy":
        # read records a chunk at a time (not a memory map, whose pages would stay resident)
        arr = _open_binary(path, kind)
        n, dtype, offset = len(arr), arr.dtype, arr.offset
        del arr
        with open(path, "rb") as f:
            f.seek(offset)
            for a in range(0, n, chunk):
                piece = np.fromfile(f, dtype, min(chunk, n - a))
                yield _from_columns(piece, str(path), a)
        return
    if kind == "npz":
        cols = _open_binary(path, kind)
        _from_columns(cols, str(path))  # check names and lengths once
        n = len(cols["addr"])
        for a in range(0, n, chunk):
            yield _from_columns({k: v[a:a + chunk] for k, v in cols.items()}, str(path), a)
        return
    block = max(chunk * 24, 1 << 16)  # bytes: a text line is ~15-25 bytes
    layer, timed, line0 = -1, None, 0
    try:
        f = open(path, "rb")
    except OSError as e:
        raise TraceFormatError(f"{path}: cannot read trace: {e.strerror}") from None
    with f:
        rest = b""
        while True:
            data = f.read(block)
            eof = not data
            data = rest + data
            if not eof:
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    rest = data
                    continue
                data, rest = data[:cut], data[cut:]
            if data:
                fast = None if parser is None else parser(data, layer, timed)
                if fast is None:
                    fast = _parse_fast(data, layer, timed)
                if fast is None:
                    fast = _parse_lines(_decode(data, path, line0), str(path), line0, layer,
                                        timed)
                tr, layer, timed = fast
                line0 += data.count(b"\n")
                if len(tr):
                    yield tr
            if eof:
                return
