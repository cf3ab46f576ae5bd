"""Physical address -> (channel, rank, bank group, bank, row, column) mappings, chosen by name.

Addresses are first divided by the burst size (the low ``log2(burst_bytes)`` bits select a
byte within a burst). The rest is sliced from the least significant bit upward. Names follow
Ramulator 2 and read from the most significant field to the least (``Ro`` row, ``Ba`` bank
group and bank, ``Ra`` rank or pseudo-channel, ``Co`` column in bursts, ``Ch`` channel):

``RoBaRaCoCh``
    LSB first: channel, column, rank, bank group, bank, row (Ramulator 2 ``RoBaRaCoCh``).
    Consecutive bursts stay in one row of one bank, hence one bank group: ``tCCD_L`` apart.
``ChRaBaRoCo``
    LSB first: column, row, bank, bank group, rank, channel (Ramulator 2 ``ChRaBaRoCo``).
``RoCoBaRaCh``
    LSB first: channel, rank, bank group, bank, column, row: every burst moves to the next
    bank group, rows stay open across a stream.
``MOP4CLXOR`` (default)
    As Ramulator 2's ``MOP4CLXOR``: two column bits, then channel, rank, bank group, bank, the
    remaining column bits and the row; then each of channel, rank, bank group, bank and row is
    XORed with successive slices of the column index. Groups of 4 bursts ("minimalist open
    page") rotate over bank groups; the XOR spreads strided streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .spec import DramSpec

__all__ = ["MAPPINGS", "DEFAULT_MAPPING", "MappedAddresses", "map_addresses"]

MAPPINGS = ("MOP4CLXOR", "RoBaRaCoCh", "ChRaBaRoCo", "RoCoBaRaCh")
DEFAULT_MAPPING = "MOP4CLXOR"

# LSB-first field order of the linear mappings.
_LINEAR = {
    "RoBaRaCoCh": ("ch", "co", "ra", "bg", "ba", "ro"),
    "ChRaBaRoCo": ("co", "ro", "ba", "bg", "ra", "ch"),
    "RoCoBaRaCh": ("ch", "ra", "bg", "ba", "co", "ro"),
}


@dataclass
class MappedAddresses:
    """Per-burst DRAM coordinates (int64 arrays of equal length)."""

    channel: np.ndarray
    rank: np.ndarray
    bankgroup: np.ndarray
    bank: np.ndarray  # bank within its bank group
    row: np.ndarray
    column: np.ndarray  # in bursts


def _log2(n: int) -> int:
    return n.bit_length() - 1


def resolve_mapping(name: str) -> str:
    for m in MAPPINGS:
        if m.lower() == name.lower():
            return m
    raise ValueError(f"unknown address mapping {name!r}; known mappings: {', '.join(MAPPINGS)}")


def map_addresses(addr: np.ndarray, spec: DramSpec, mapping: str = DEFAULT_MAPPING
                  ) -> MappedAddresses:
    """Map byte addresses (any alignment; the burst is ``addr // burst_bytes``).

    Raises ``ValueError`` for an address at or beyond the capacity of ``spec``.
    """
    mapping = resolve_mapping(mapping)
    o = spec.org
    addr = np.asarray(addr, dtype=np.uint64)
    if len(addr) and int(addr.max()) >= o.capacity_bytes:
        bad = int(addr[np.argmax(addr >= np.uint64(o.capacity_bytes))])
        raise ValueError(f"address 0x{bad:x} is beyond the capacity of preset {spec.name!r} "
                         f"({o.capacity_bytes} bytes = 0x{o.capacity_bytes:x}; use more "
                         "--channels/--ranks, smaller addresses, or --wrap-addresses to "
                         "ignore the bits above the capacity as Ramulator does)")
    a = (addr >> np.uint64(_log2(o.burst_bytes))).astype(np.int64)
    bits = {"ch": _log2(o.channels), "ra": _log2(o.ranks), "bg": _log2(o.bankgroups),
            "ba": _log2(o.banks_per_group), "ro": _log2(o.rows), "co": _log2(o.bursts_per_row)}
    out: dict[str, np.ndarray] = {}

    def take(n: int) -> np.ndarray:
        nonlocal a
        v = a & ((1 << n) - 1)
        a = a >> n
        return v

    if mapping in _LINEAR:
        for f in _LINEAR[mapping]:
            out[f] = take(bits[f])
    else:  # MOP4CLXOR
        low = min(2, bits["co"])
        col = take(low)
        for f in ("ch", "ra", "bg", "ba"):
            out[f] = take(bits[f])
        col = col | (take(bits["co"] - low) << low)
        out["co"] = col
        out["ro"] = take(bits["ro"])
        shift = 0
        for f in ("ch", "ra", "bg", "ba", "ro"):
            if bits[f] > 0:
                out[f] = out[f] ^ ((col >> shift) & ((1 << bits[f]) - 1))
                shift += bits[f]
    return MappedAddresses(out["ch"], out["ra"], out["bg"], out["ba"], out["ro"], out["co"])
