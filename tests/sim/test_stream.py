"""The streaming simulator equals one simulate() of the concatenated trace; the per-channel
mode gives one result whatever the number of processes, and on a Dask cluster."""

from __future__ import annotations

import numpy as np
import pytest

from psa.golden.trace import AccessTrace
from psa.sim import simulate
from psa.sim.stream import StreamSimulator, simulate_stream, simulate_trace

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
    t = trace.time_ns
    return [AccessTrace(trace.addr[a:b], trace.size[a:b], trace.is_write[a:b],
                        None if t is None else t[a:b])
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
    untimed = AccessTrace(np.array([0], np.uint64), 64)
    with pytest.raises(ValueError, match="issue times in every piece or in none"):
        simulate_stream([timed, untimed], "hbm2")
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        simulate_trace(untimed, "hbm2", jobs=0)
    with pytest.raises(ValueError, match="max_outstanding=0"):
        simulate_trace(untimed, "hbm2", jobs=1, max_outstanding=4)


def _full(stats) -> dict:
    d = stats.to_dict()
    d.pop("source")
    return d


@pytest.mark.parametrize("preset,overrides", [
    ("ddr4-2400", {}),
    ("hbm2", {"page_policy": "closed"}),
])
def test_full_stats_and_timed_traces_match_simulate(preset, overrides):
    rng = np.random.default_rng(SEED + 2)
    trace = _trace(rng, 12_000, 0.3, 1 << 28)
    timed = AccessTrace(trace.addr, trace.size, trace.is_write,
                        np.cumsum(rng.exponential(2.0, len(trace))))
    for tr in (trace, timed):
        ref = simulate(tr, preset, **overrides)
        sim = StreamSimulator(preset, chunk_bursts=2048, **overrides)
        for piece in _pieces(tr, rng, 5):
            sim.feed(piece)
        got = sim.result()
        assert sim.finish().chunks > 3
        assert _full(got) == _full(ref), f"seed {SEED + 2} {preset} timed={tr is timed}"
        assert got.latency_histogram.sum() == ref.reads
        assert got.done_histogram.sum() == ref.bursts


@pytest.mark.parametrize("suffix", [".trace", ".npy"])
def test_files_stream_in_bounded_pieces(tmp_path, suffix):
    rng = np.random.default_rng(SEED + 3)
    trace = _trace(rng, 20_000, 0.2, 1 << 28)
    path = tmp_path / f"t{suffix}"
    trace.write(path)
    seen = []
    got = simulate_trace(path, "hbm2", chunk_requests=3000, chunk_bursts=4096,
                         progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == len(trace)
    # .npy: exact pieces of 3000 records; text: blocks of about that many lines
    assert len(seen) == 7 if suffix == ".npy" else len(seen) > 3
    ref = simulate(trace, "hbm2")
    assert _full(got) == _full(ref)
    assert got.source == str(path)


def test_per_channel_mode_same_for_any_jobs_and_one_channel_equals_simulate():
    rng = np.random.default_rng(SEED + 4)
    trace = _trace(rng, 16_000, 0.25, 1 << 28)
    one = simulate_trace(trace, "hbm2", jobs=1, chunk_requests=5000, chunk_bursts=2048)
    for jobs in (2, 3):
        got = simulate_trace(trace, "hbm2", jobs=jobs, chunk_requests=5000, chunk_bursts=2048)
        assert _full(got) == _full(one), f"seed {SEED + 4}: jobs={jobs}"
    # a multi-channel system differs from the trace-order stream only by admission
    ref = simulate(trace, "hbm2")
    assert (one.bursts, one.reads, one.dram_bytes) == (ref.bursts, ref.reads, ref.dram_bytes)
    # one channel: the two modes are the same simulation
    ddr = simulate_trace(trace, "ddr4-2400", jobs=2, chunk_requests=5000, chunk_bursts=2048)
    assert _full(ddr) == _full(simulate(trace, "ddr4-2400"))


def test_per_channel_mode_on_a_dask_cluster(tmp_path):
    from dask.distributed import LocalCluster

    rng = np.random.default_rng(SEED + 5)
    trace = _trace(rng, 8_000, 0.25, 1 << 28)
    path = tmp_path / "t.npy"
    trace.write(path)
    serial = simulate_trace(path, "hbm2", jobs=1, chunk_requests=3000)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        got = simulate_trace(path, "hbm2", dask=cluster.scheduler_address, chunk_requests=3000)
    assert _full(got) == _full(serial)


def test_unreachable_dask_scheduler_is_a_clean_error():
    with pytest.raises(RuntimeError, match="cannot reach the Dask scheduler"):
        simulate_trace(AccessTrace(np.array([0], np.uint64), 64), "hbm2",
                       dask="tcp://127.0.0.1:9", dask_timeout_s=1.0)
