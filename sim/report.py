"""Reports of :class:`~psa.sim.stats.Stats`: a rich table, JSON, and PNG plots.

With a baseline (``psa dram pruned.trace --compare dense.trace``), every run is reported next
to the baseline with reduction factors (baseline / run: 4.0x means a quarter of the bytes).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from rich.table import Table

from .stats import SCHEMA_VERSION, Stats, reduction

__all__ = ["stats_table", "to_json", "write_json", "plot"]


def _label(s: Stats, i: int) -> str:
    return Path(s.source).name if s.source else f"trace {i}"


def stats_table(runs: list[Stats], baseline: Stats | None = None) -> Table:
    """One column per run (baseline first), one row per metric."""
    cols = ([baseline] if baseline else []) + runs
    first = cols[0]
    title = (f"DRAM: {first.preset} ({first.standard}, {first.channels} ch x {first.ranks} "
             f"{'PC' if first.standard.startswith('HBM') and first.ranks > 1 else 'rank'}), "
             f"{first.scheduler}, {first.page_policy} page, {first.mapping}, refresh "
             f"{'on' if first.refresh else 'off'}")
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for i, s in enumerate(cols):
        head = _label(s, i) + (" (baseline)" if baseline is not None and i == 0 else "")
        table.add_column(head, justify="right")

    def row(name, fmt):
        table.add_row(name, *[fmt(s) for s in cols])

    row("requests / bursts", lambda s: f"{s.requests:,} / {s.bursts:,}")
    row("payload bytes", lambda s: f"{s.payload_bytes:,.0f}")
    row("DRAM bytes (bursts)", lambda s: f"{s.dram_bytes:,}")
    row("cycles", lambda s: f"{s.cycles:,}")
    row("time", lambda s: f"{s.ns / 1000:,.2f} us")
    row("bandwidth", lambda s: f"{s.bandwidth_GBps:.2f} GB/s ({100 * s.bandwidth_fraction:.1f}%"
        f" of {s.peak_GBps:.1f})")
    row("row hits / misses / conflicts", lambda s: f"{s.row_hits:,} / {s.row_misses:,} / "
        f"{s.row_conflicts:,}")
    row("row hit rate", lambda s: f"{100 * s.row_hit_rate:.1f}%")
    row("read latency mean / p50 / p99",
        lambda s: "{mean:.1f} / {p50:.0f} / {p99:.0f} cyc".format(**s.read_latency_cycles))
    row("commands ACT/PRE/RD/WR/REF", lambda s: "/".join(
        f"{s.commands[c] + (s.commands['PREA'] if c == 'PRE' else 0):,}"
        for c in ("ACT", "PRE", "RD", "WR", "REF")))
    row("bank utilization max / mean", lambda s: f"{100 * max(s.bank_utilization):.1f}% / "
        f"{100 * float(np.mean(s.bank_utilization)):.1f}%")
    row("energy", lambda s: f"{s.energy_nJ / 1000:,.2f} uJ")
    row("energy/byte", lambda s: f"{1000 * s.energy_nJ / max(s.dram_bytes, 1):.1f} pJ/B")
    if baseline is not None:
        for key, name in (("dram_bytes", "DRAM bytes reduction"), ("cycles", "cycles reduction"),
                          ("energy", "energy reduction")):
            table.add_row(name, "1.00x", *[f"{reduction(baseline, s)[key]:.2f}x" for s in runs])
    return table


def to_json(runs: list[Stats], baseline: Stats | None = None) -> dict:
    """The first run's stats at top level; with a baseline also ``baseline`` and ``reduction``;
    with several runs, all of them under ``runs`` (each with its ``reduction``)."""
    def one(s: Stats) -> dict:
        d = s.to_dict()
        if baseline is not None:
            d["reduction"] = reduction(baseline, s)
        return d

    out = one(runs[0])
    out["schema_version"] = SCHEMA_VERSION
    if baseline is not None:
        out["baseline"] = baseline.to_dict()
    if len(runs) > 1:
        out["runs"] = [one(s) for s in runs]
    return out


def write_json(path: str | os.PathLike, runs: list[Stats], baseline: Stats | None = None
               ) -> None:
    Path(path).write_text(json.dumps(to_json(runs, baseline), indent=2) + "\n")


def plot(path: str | os.PathLike, runs: list[Stats], baseline: Stats | None = None,
         bins: int = 100) -> None:
    """PNG: bandwidth over time, read-latency histogram, and (with a baseline) bytes, cycles
    and energy side by side with the reduction factors."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ([baseline] if baseline else []) + runs
    n_panels = 3 if baseline is not None else 2
    fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 4.0))
    ax = axes[0]
    for i, s in enumerate(cols):
        if s.cycles == 0:
            continue
        # bins of at least 256 cycles, so edge effects stay small against the peak
        if s.done_histogram is not None and not len(s.done_cycles):
            # streamed run: completions per done_bin_cycles bin, merged to <= bins bins
            h, w = s.done_histogram, s.done_bin_cycles
            k = max(-(-len(h) // bins), 1)
            counts = np.add.reduceat(h, np.arange(0, len(h), k))
            edges = np.arange(len(counts) + 1) * (w * k)
        else:
            edges = np.linspace(0, s.cycles, max(min(bins, s.cycles // 256), 1) + 1)
            counts, _ = np.histogram(s.done_cycles, edges)
        width_ns = (edges[1] - edges[0]) * s.tCK_ns
        gbps = counts * (s.dram_bytes / max(s.bursts, 1)) / width_ns
        ax.plot(edges[:-1] * s.tCK_ns / 1000, gbps, label=_label(s, i))
    ax.axhline(cols[0].peak_GBps, ls="--", c="grey", lw=1, label="peak")
    ax.set_xlabel("time (us)")
    ax.set_ylabel("bandwidth (GB/s)")
    ax.set_title("Bandwidth over time")
    ax.legend(fontsize=8)

    ax = axes[1]
    for i, s in enumerate(cols):
        if len(s.read_latencies):
            ax.hist(s.read_latencies * s.tCK_ns, bins=60, histtype="step",
                    label=_label(s, i))
        elif s.latency_histogram is not None and s.latency_histogram.sum():
            h = s.latency_histogram
            ax.hist(np.arange(len(h)) * s.tCK_ns, bins=60, weights=h, histtype="step",
                    label=_label(s, i))
    ax.set_xlabel("read latency (ns)")
    ax.set_ylabel("reads")
    ax.set_yscale("log")
    ax.set_title("Read latency")
    ax.legend(fontsize=8)

    if baseline is not None:
        ax = axes[2]
        metrics = [("DRAM bytes", lambda s: s.dram_bytes), ("cycles", lambda s: s.cycles),
                   ("energy", lambda s: s.energy_nJ)]
        x = np.arange(len(metrics))
        w = 0.8 / len(cols)
        for i, s in enumerate(cols):
            vals = [f(s) / max(f(baseline), 1e-12) for _, f in metrics]
            bars = ax.bar(x + i * w, vals, w, label=_label(s, i))
            if i > 0:
                for b, v in zip(bars, vals, strict=True):
                    ax.annotate(f"{1 / v:.2f}x" if v else "inf", (b.get_x() + b.get_width() / 2,
                                b.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x + w * (len(cols) - 1) / 2, [m for m, _ in metrics])
        ax.set_ylabel("relative to baseline")
        ax.set_title("Baseline vs run (reduction factors)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
