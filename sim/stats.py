"""Results of one simulation: traffic, timing, row-buffer behaviour, latency, commands, energy."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

SCHEMA_VERSION = 1


@dataclass
class Stats:
    """Everything a report needs. Cycle counts are memory-clock cycles of the preset.

    ``dram_bytes`` counts bursts moved (requests rounded out to whole bursts);
    ``payload_bytes`` what the requests asked for. ``bank_utilization[i]`` is the fraction of
    cycles bank ``i`` (flat index ``(channel*ranks + rank)*banks + bank``) drove the data bus.
    Row hits / misses / conflicts classify each burst by the first command issued for it
    (RD/WR, ACT, PRE). Read latency runs from arrival at the controller (or the trace's issue
    time) to the last data beat.
    """

    preset: str
    standard: str
    scheduler: str
    mapping: str
    page_policy: str
    refresh: bool
    channels: int
    ranks: int
    requests: int
    bursts: int
    reads: int
    writes: int
    payload_bytes: float
    dram_bytes: int
    cycles: int
    ns: float
    bandwidth_GBps: float
    peak_GBps: float
    row_hits: int
    row_misses: int
    row_conflicts: int
    read_latency_cycles: dict[str, float]
    commands: dict[str, int]
    energy_nJ: float
    energy_breakdown_nJ: dict[str, float]
    bank_utilization: list[float]
    source: str = ""
    # raw per-burst data for plots (not serialised)
    done_cycles: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    read_latencies: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64),
                                       repr=False)
    command_log: np.ndarray | None = field(default=None, repr=False)
    tCK_ns: float = 1.0
    # streamed runs keep histograms instead of per-burst arrays (bounded memory): reads per
    # latency in cycles, and bursts completed per ``done_bin_cycles``-cycle bin
    latency_histogram: np.ndarray | None = field(default=None, repr=False)
    done_histogram: np.ndarray | None = field(default=None, repr=False)
    done_bin_cycles: int = field(default=0, repr=False)

    @property
    def bandwidth_fraction(self) -> float:
        return self.bandwidth_GBps / self.peak_GBps if self.peak_GBps else 0.0

    @property
    def row_hit_rate(self) -> float:
        n = self.row_hits + self.row_misses + self.row_conflicts
        return self.row_hits / n if n else 0.0

    @property
    def bytes_per_cycle(self) -> float:
        return self.dram_bytes / self.cycles if self.cycles else 0.0

    def to_dict(self) -> dict:
        """JSON-ready dict (``schema_version`` first; raw arrays left out)."""
        d = {"schema_version": SCHEMA_VERSION}
        for k, v in asdict(self).items():
            if k in ("done_cycles", "read_latencies", "command_log", "tCK_ns",
                     "latency_histogram", "done_histogram", "done_bin_cycles"):
                continue
            d[k] = v
        d["bandwidth_fraction"] = self.bandwidth_fraction
        d["row_hit_rate"] = self.row_hit_rate
        d["read_latency_ns"] = {k: v * self.tCK_ns for k, v in self.read_latency_cycles.items()}
        return d


def latency_summary(lat: np.ndarray) -> dict[str, float]:
    """Mean, median, 99th percentile and maximum of integer latencies (cycles)."""
    lat = np.asarray(lat, np.int64)
    if len(lat) == 0:
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    return histogram_summary(np.bincount(lat - lat.min()), int(lat.sum()), int(lat.min()))


def histogram_summary(hist: np.ndarray, total: int, offset: int = 0) -> dict[str, float]:
    """:func:`latency_summary` of the values whose counts are ``hist`` (value ``offset + i``
    occurs ``hist[i]`` times; ``total`` their exact sum). Percentiles interpolate linearly
    between order statistics, as ``numpy.percentile`` does."""
    n = int(hist.sum())
    if n == 0:
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    cum = np.cumsum(hist)

    def order(k: int) -> int:  # k-th smallest value, 0-based
        return offset + int(np.searchsorted(cum, k, side="right"))

    def pct(q: float) -> float:
        h = (n - 1) * q / 100.0
        lo = int(np.floor(h))
        a, b, t = order(lo), order(min(lo + 1, n - 1)), h - lo
        # numpy's lerp, exact at both ends
        return float(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)

    return {"mean": total / n, "p50": pct(50), "p99": pct(99),
            "max": float(offset + int(np.flatnonzero(hist)[-1]))}


def reduction(base: Stats, other: Stats) -> dict[str, float]:
    """Baseline over other: bytes, cycles and energy reduction factors (>1 means less)."""

    def ratio(a: float, b: float) -> float:
        return float(a) / float(b) if b else float("inf")

    return {
        "payload_bytes": ratio(base.payload_bytes, other.payload_bytes),
        "dram_bytes": ratio(base.dram_bytes, other.dram_bytes),
        "cycles": ratio(base.cycles, other.cycles),
        "energy": ratio(base.energy_nJ, other.energy_nJ),
    }
