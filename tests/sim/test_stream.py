"""The streaming simulator equals one simulate() of the concatenated trace."""

from __future__ import annotations

import numpy as np
import pytest

from psa.golden.trace import AccessTrace
from psa.sim import simulate
from psa.sim.stream import StreamSimulator, simulate_stream

SEED = 1234


def _trace(rng: np.random.Generator, n: int, write_frac: float, span: int) -> AccessTrace:
    """Runs of sequential 128-byte rows at random places, some writes, some odd sizes."""
    starts = rng.integers(0, span // 4096, size=n // 8) * 4096
    addr = (starts[:, None] + 128 * np.arange(8)[None, :]).ravel()[:n]
    size = np.where(rng.random(len(addr)) < 0.1, 96, 128)
    return AccessTrace(addr.astype(np.uint64), size, rng.random(len(addr)) < write_frac)


def _pieces(trace: AccessTrace, rng: np.random.Generator, k: int) -> list[AccessTrace]:
    cuts = np.sort(rng.choice(np.arange(1, len(trace)), k - 1, replace=False))
    bounds = [0, *cuts.tolist(), len(trace)]
    return [AccessTrace(trace.addr[a:b], trace.size[a:b], trace.is_write[a:b])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@pytest.mark.parametrize("preset,overrides", [
    ("ddr4-2400", {}),
    ("hbm2", {}),
    ("ddr4-2400", {"page_policy": "closed", "scheduler": "frfcfs-ramulator"}),
    ("hbm2", {"max_outstanding": 24, "read_queue": 8, "write_queue": 8}),
])
def test_stream_matches_simulate(preset, overrides):
    rng = np.random.default_rng(SEED)
    trace = _trace(rng, 24_000, 0.2, 1 << 28)
    ref = simulate(trace, preset, **overrides)
    pieces = _pieces(trace, rng, 7)
    got = simulate_stream(pieces, preset, chunk_bursts=2048, **overrides)
    assert got.chunks > 5, f"seed {SEED}: expected many windows, got {got.chunks}"
    for key in ("cycles", "bursts", "reads", "writes", "dram_bytes", "row_hits", "row_misses",
                "row_conflicts", "commands"):
        assert getattr(got, key) == getattr(ref, key), f"seed {SEED} {preset} {key}"
    assert got.energy_nJ == pytest.approx(ref.energy_nJ, rel=1e-12), f"seed {SEED}"
    assert got.payload_bytes == ref.payload_bytes
    assert got.read_latency_mean_cycles == pytest.approx(ref.read_latency_cycles["mean"])


def test_stream_one_piece_and_empty():
    rng = np.random.default_rng(SEED + 1)
    trace = _trace(rng, 3000, 0.0, 1 << 24)
    ref = simulate(trace, "ddr4-2400")
    sim = StreamSimulator("ddr4-2400")
    sim.feed(AccessTrace.empty())
    sim.feed(trace)
    got = sim.finish()
    assert (got.cycles, got.row_hits, got.chunks) == (ref.cycles, ref.row_hits, 1)
    assert sim.finish() is got
    with pytest.raises(RuntimeError, match="after finish"):
        sim.feed(trace)
    assert simulate_stream([], "hbm2").cycles == 0


def test_stream_rejects_bad_input():
    with pytest.raises(ValueError, match="chunk_bursts"):
        StreamSimulator("hbm2", chunk_bursts=10)
    timed = AccessTrace(np.array([0], np.uint64), 64, time_ns=np.array([1.0]))
    with pytest.raises(ValueError, match="timed"):
        simulate_stream([timed], "hbm2")
