"""Trace readers: the project's text format (``R``/``W``/``LD``/``ST``) and SpAtten workload CSVs,
and the split of requests into DRAM bursts.

Text traces are read with :func:`psa.golden.trace.read_trace` (format in
``docs/trace_format.md``). A SpAtten workload summary CSV (one row per generated token, layer
and head) becomes a trace of K and V row reads; see :func:`read_spatten_csv`.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from psa.golden.trace import AccessTrace, Plane, TraceFormatError, read_trace

__all__ = ["Workload", "load_workload", "read_spatten_csv", "split_bursts", "SPATTEN_HEADER",
           "TraceFormatError", "MAX_BURSTS"]

#: Most bursts one run may expand to (2^23: 512 MiB of 64-byte bursts, about 1 GB of model
#: state). A trace line may ask for up to 2^32-1 bytes, so the limit is checked before any
#: array of bursts is allocated.
MAX_BURSTS = 1 << 23

SPATTEN_HEADER = (
    "iteration_id", "layer_id", "head_id", "embedding_length_D", "sentence_length_L",
    "key_fetch_num", "quant_key_bit", "quant_query_bit", "auto_requant_thres", "if_requant",
    "auto_requant_incre", "value_fetch_num", "quant_value_bit", "if_accumulate_importance",
    "if_rescale_previous_importance", "if_topk", "topk",
)


# integer columns (0-based) and the range each must lie in; lengths bounded so that every
# address and request size fits the trace format before anything is allocated
_CSV_INT = {0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 16}
_CSV_BOOL = {9, 13, 14, 15}
_CSV_RANGES = ((1, 0, 32767), (2, 0, 65535), (3, 1, 1 << 20), (4, 1, 1 << 24))


def _csv_field(text: str, j: int, path: Path, lineno: int) -> int | float:
    """One SpAtten CSV field as written by SpAtten's scripts: ``True``/``False`` booleans,
    integers possibly written as integral floats (``64.0``); anything else is an error naming
    ``file:line`` and the column."""
    name = SPATTEN_HEADER[j]
    where = f"{path}:{lineno}"
    if j in _CSV_BOOL and text.lower() in ("true", "false"):
        return int(text.lower() == "true")
    try:
        v = float(text)
    except ValueError:
        raise TraceFormatError(f"{where}: expected numeric fields, got {text!r} in column "
                               f"{j + 1} ({name})") from None
    if not math.isfinite(v):
        raise TraceFormatError(f"{where}: column {j + 1} ({name}) must be a finite number, "
                               f"got {text!r}")
    if j in _CSV_INT or j in _CSV_BOOL:
        if v != int(v):
            raise TraceFormatError(f"{where}: column {j + 1} ({name}) must be an integer, got "
                                   f"{text!r}")
        if abs(v) > 2**53:
            raise TraceFormatError(f"{where}: column {j + 1} ({name}) must be an integer of "
                                   f"magnitude at most 2^53, got {text!r}")
        v = int(v)
        if j in _CSV_BOOL and v not in (0, 1):
            raise TraceFormatError(f"{where}: column {j + 1} ({name}) must be True/False or "
                                   f"0/1, got {text!r}")
    return v


@dataclass
class Workload:
    """A trace plus the payload it carries (may be fractional bytes for odd bit widths)."""

    trace: AccessTrace
    payload_bytes: float
    source: str


def load_workload(path: str | os.PathLike, *, csv_format: bool | None = None,
                  full_bits: int = 32, placement: str = "contiguous", seed: int = 0,
                  max_rows: int | None = None) -> Workload:
    """Read a text trace, or a SpAtten CSV (``csv_format=True`` or a ``.csv`` suffix)."""
    path = Path(path)
    if csv_format is None:
        csv_format = path.suffix.lower() == ".csv"
    if csv_format:
        return read_spatten_csv(path, full_bits=full_bits, placement=placement, seed=seed,
                                max_rows=max_rows)
    trace = read_trace(path)
    return Workload(trace, float(trace.payload_bytes), str(path))


def read_spatten_csv(path: str | os.PathLike, *, full_bits: int = 32,
                     placement: str = "contiguous", seed: int = 0,
                     max_rows: int | None = None) -> Workload:
    """Turn a SpAtten workload summary CSV into K/V read requests.

    Each row reads ``key_fetch_num`` keys and ``value_fetch_num`` values of ``D`` elements at
    ``quant_key_bit`` / ``quant_value_bit`` bits (``-1``: ``full_bits``). K and V are laid out
    as ``[layer][head][token]`` rows with a pitch of ``D * full_bits / 8`` bytes (V after K,
    4 KiB aligned); a b-bit fetch of a token reads the first ``ceil(D * b / 8)`` bytes of its
    row (bit-plane packed storage). ``placement`` ``contiguous`` fetches tokens
    ``0..N-1``, ``scattered`` a random sorted subset of ``L`` tokens (``seed``).
    The payload is the exact sum of ``fetch_num * D * bits / 8``.
    """
    if placement not in ("contiguous", "scattered"):
        raise ValueError(f"placement must be 'contiguous' or 'scattered', got {placement!r}")
    if not 1 <= full_bits <= 64:
        raise ValueError(f"full_bits must be in 1..64, got {full_bits}")
    if max_rows is not None and max_rows < 1:
        raise ValueError(f"max_rows must be >= 1 (or None: every row), got {max_rows}")
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise TraceFormatError(f"{path}: cannot read workload CSV: {e.strerror}") from None
    rows = []
    reader = csv.reader(text.splitlines())
    header = None
    for lineno, rec in enumerate(reader, 1):
        rec = [f.strip() for f in rec]
        if not rec or not any(rec):
            continue
        if header is None:
            if tuple(rec) != SPATTEN_HEADER:
                raise TraceFormatError(f"{path}:{lineno}: expected the SpAtten header "
                                       f"{','.join(SPATTEN_HEADER)}, got {','.join(rec)!r}")
            header = rec
            continue
        if len(rec) == 1:
            continue  # trailing line naming the config file
        if len(rec) != len(SPATTEN_HEADER):
            raise TraceFormatError(f"{path}:{lineno}: expected {len(SPATTEN_HEADER)} "
                                   f"comma-separated fields, got {len(rec)}")
        vals = [_csv_field(v, j, path, lineno) for j, v in enumerate(rec)]
        it, layer, head, d, length, kn, kb, _, _, _, _, vn, vb = vals[:13]
        for j, lo, hi in _CSV_RANGES:
            if not lo <= vals[j] <= hi:
                raise TraceFormatError(f"{path}:{lineno}: column {j + 1} ({SPATTEN_HEADER[j]}) "
                                       f"must be in {lo}..{hi}, got {rec[j]!r}")
        for name, n in (("key_fetch_num", kn), ("value_fetch_num", vn)):
            if not 0 <= n <= length:
                raise TraceFormatError(f"{path}:{lineno}: {name} must be in "
                                       f"0..sentence_length_L ({length}), got {n}")
        for name, b in (("quant_key_bit", kb), ("quant_value_bit", vb)):
            if b != -1 and not 1 <= b <= full_bits:
                raise TraceFormatError(f"{path}:{lineno}: {name} must be -1 or 1..{full_bits} "
                                       f"(--full-bits), got {b}")
        rows.append((layer, head, d, length, kn, full_bits if kb == -1 else kb, vn,
                     full_bits if vb == -1 else vb))
        if max_rows is not None and len(rows) >= max_rows:
            break
    if header is None:
        raise TraceFormatError(f"{path}:1: expected the SpAtten header, got an empty file")
    if not rows:
        return Workload(AccessTrace.empty(), 0.0, str(path))
    fetches = sum(row[4] + row[6] for row in rows)
    if fetches > MAX_BURSTS:
        raise TraceFormatError(
            f"{path}: the workload fetches {fetches:,} K/V rows; one run takes at most "
            f"{MAX_BURSTS:,} requests (psa.sim.frontend.MAX_BURSTS): use --max-rows or split "
            "the file")
    r = np.array(rows, dtype=np.int64)
    layer, head, d, length, kn, kb, vn, vb = r.T
    n_heads = int(head.max()) + 1
    n_tokens = int(length.max())
    pitch = int(d.max()) * full_bits // 8 if (int(d.max()) * full_bits) % 8 == 0 else \
        math.ceil(int(d.max()) * full_bits / 8)
    k_bytes = (int(layer.max()) + 1) * n_heads * n_tokens * pitch
    v_base = -(-k_bytes // 4096) * 4096
    if 2 * v_base >= 1 << 62:
        raise TraceFormatError(
            f"{path}: K and V need {2 * v_base:,} bytes of address space ({int(layer.max()) + 1} "
            f"layers x {n_heads} heads x {n_tokens} tokens x {pitch} B rows), more than 2^62")
    rng = np.random.default_rng(seed)

    def fetch(counts, bits, base, plane):
        row_id = (layer * n_heads + head) * n_tokens
        n = int(counts.sum())
        owner = np.repeat(np.arange(len(counts)), counts)
        if placement == "contiguous":
            starts = np.cumsum(counts) - counts
            tok = np.arange(n) - np.repeat(starts, counts)
        else:
            tok = np.empty(n, np.int64)
            pos = 0
            for i in range(len(counts)):
                c = int(counts[i])
                if c:
                    tok[pos:pos + c] = np.sort(rng.choice(int(length[i]), c, replace=False))
                    pos += c
        addr = base + (row_id[owner] + tok) * pitch
        size = -(-(d[owner] * bits[owner]) // 8)
        return addr, size, np.repeat(layer, counts), np.full(n, plane, np.uint8)

    ka, ks, kl, kp = fetch(kn, kb, 0, Plane.K_MSB)
    va, vs, vl, vp = fetch(vn, vb, v_base, Plane.V_MSB)
    # K then V of each row, row by row
    owner = np.concatenate([np.repeat(np.arange(len(r)), kn), np.repeat(np.arange(len(r)), vn)])
    order = np.argsort(owner, kind="stable")
    trace = AccessTrace(np.concatenate([ka, va])[order], np.concatenate([ks, vs])[order],
                        layer=np.concatenate([kl, vl])[order],
                        plane=np.concatenate([kp, vp])[order])
    payload = float((kn * d * kb).sum() + (vn * d * vb).sum()) / 8.0
    return Workload(trace, payload, str(path))


@dataclass
class Bursts:
    """Requests split into bursts: parallel arrays in arrival order."""

    addr: np.ndarray  # uint64 byte address of each burst (burst aligned)
    is_write: np.ndarray  # bool
    time_cycles: np.ndarray | None  # int64 issue cycle, or None (as fast as possible)
    request: np.ndarray  # int64 index of the request each burst belongs to


def split_bursts(trace: AccessTrace, burst_bytes: int, tCK_ps: int) -> Bursts:
    """Split each request into the aligned bursts it touches; times become memory cycles.

    Raises ValueError when the trace would expand to more than :data:`MAX_BURSTS` bursts.
    """
    counts = trace.bursts(burst_bytes)
    total = int(counts.sum())
    if total > MAX_BURSTS:
        big = int(np.argmax(counts))
        raise ValueError(
            f"the trace expands to {total:,} bursts of {burst_bytes} B; the DRAM model takes at "
            f"most {MAX_BURSTS:,} bursts ({MAX_BURSTS * burst_bytes >> 20} MiB) per run; its "
            f"largest request, number {big + 1}, reads {int(trace.size[big]):,} bytes at "
            f"0x{int(trace.addr[big]):x}: split the trace into smaller runs")
    req = np.repeat(np.arange(len(trace), dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    k = np.arange(total, dtype=np.int64) - np.repeat(starts, counts)
    first = trace.addr // np.uint64(burst_bytes)
    addr = (first[req] + k.astype(np.uint64)) * np.uint64(burst_bytes)
    times = None
    if trace.time_ns is not None:
        t = trace.time_ns[req]
        times = np.ceil(t * 1000.0 / tCK_ps - 1e-9).astype(np.int64)
        if len(times) and np.any(np.diff(times) < 0):
            # requests are admitted in order: a later line may not be issued earlier
            times = np.maximum.accumulate(times)
    return Bursts(addr, trace.is_write[req], times, req)
