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
        """Write the text format (see module docstring)."""
        header = "# psa access trace v1: [time_ns] R|W addr bytes\n"
        text = header + "\n".join(self.lines()) + "\n"
        if isinstance(path, io.TextIOBase):
            path.write(text)
        else:
            Path(path).write_text(text)


def _parse_int(tok: str) -> int:
    return int(tok, 16) if tok[:2].lower() == "0x" else int(tok, 10)


def parse_trace(text: str, source: str = "<trace>") -> AccessTrace:
    """Parse trace text. Raises :class:`TraceFormatError` naming ``source:line``."""
    addr, size, wr, times, layers = [], [], [], [], []
    layer = -1
    timed: bool | None = None
    for lineno, raw in enumerate(text.splitlines(), 1):
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
    )


def read_trace(path: str | os.PathLike) -> AccessTrace:
    """Read a trace file (format in the module docstring)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TraceFormatError(f"{path}: cannot read trace: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        raise TraceFormatError(
            f"{path}:{lineno}: expected a text trace (UTF-8 lines '[time_ns] R|W ADDR BYTES'), "
            f"got byte 0x{data[e.start]:02x} that is not UTF-8 text (binary file?)") from None
    return parse_trace(text, str(path))
