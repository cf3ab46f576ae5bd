"""Cascade pruning invariants, head pruning, progressive quantization, traces vs formulas."""

import numpy as np
import pytest

from psa.golden.cascade import CascadeConfig, dense_trace, run_cascade, spatten_token_schedule
from psa.golden.fixed_point import quantize_unsigned_fraction, saturating_add
from psa.golden.pruning import PruningState, kv_fetch_trace, resolve_keep
from psa.golden.quant import split_quantize
from psa.golden.trace import KVLayout, Plane
from psa.golden.workloads import SyntheticWorkload

SMALL = SyntheticWorkload(n_layers=6, n_heads=4, n_tokens=96, d_head=16, seed=11)


def test_alive_sets_nested_and_follow_schedule():
    cfg = CascadeConfig(token_keep={0: 0.9, 2: 40, 4: 0.1}, head_keep={1: 3, 3: 0.5})
    run = run_cascade(SMALL, cfg)
    sizes = [len(s.alive) for s in run.layers]
    heads = [len(s.heads) for s in run.layers]
    assert sizes == [96, 86, 86, 40, 40, 10]
    assert heads == [4, 4, 3, 3, 2, 2]
    for a, b in zip(run.layers, run.layers[1:], strict=False):
        assert set(b.alive) <= set(a.alive) and set(b.heads) <= set(a.heads)
        assert (np.diff(b.alive) > 0).all()


def test_survivors_are_topk_of_scores():
    run = run_cascade(SMALL, CascadeConfig(token_keep={1: 30}))
    s1 = run.layers[1]
    survivors = run.layers[2].alive
    order = sorted(range(len(s1.alive)), key=lambda i: (-int(s1.scores[i]), i))[:30]
    assert survivors.tolist() == sorted(s1.alive[order].tolist())
    # scores carry over to the next layer for the survivors
    keep = np.isin(s1.alive, survivors)
    assert (run.layers[2].scores >= s1.scores[keep]).all()


def test_scores_are_quantized_prob_sums():
    cfg = CascadeConfig(prob_bits=8, k_lsb_bits=0, v_lsb_bits=0)
    run = run_cascade(SyntheticWorkload(1, 2, 20, 8, seed=2), cfg)
    assert run.layers[0].scores.sum() <= 2 * 20 * 20 * 255
    # each query row sums to ~1.0 = 256 after rounding, so a layer adds ~heads * rows * 256
    assert abs(int(run.layers[0].scores.sum()) - 2 * 20 * 256) < 2 * 20 * 20


def test_saturation_holds():
    st = PruningState(max_tokens=8, n_heads=2, prob_bits=4, score_bits=6)
    st.start(3)
    for _ in range(10):
        st.add_probs(np.array([15, 1, 0]))
    assert st.scores.tolist() == [63, 10, 0]
    assert saturating_add(np.array([60], np.uint64), np.array([2**62], np.uint64), 6)[0] == 63


def test_pruning_state_edges():
    st = PruningState(max_tokens=16, n_heads=4)
    st.start(5)
    assert st.prune(0).tolist() == []            # k = 0 keeps nothing
    st.add_probs(np.zeros((3, 0), np.uint64))     # rows over no alive token: a no-op
    assert st.scores.tolist() == []
    st.start(5)
    assert st.prune(9).tolist() == [0, 1, 2, 3, 4]  # k >= alive keeps all
    assert st.prune(2).tolist() == [0, 1]           # no probabilities yet: ties to low ids
    with pytest.raises(ValueError, match="n must be in 0..16"):
        st.start(17)
    st.add_head_magnitude(2, 5)
    assert st.prune_heads(1).tolist() == [2]
    with pytest.raises(ValueError, match="not kept"):
        st.add_head_magnitude(0, 1)


def test_resolve_keep():
    assert resolve_keep(0.1, 1024) == 102 and resolve_keep(0.0001, 10) == 1
    assert resolve_keep(7, 3) == 7 and resolve_keep(0.0, 10) == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        resolve_keep(1.5, 10)


def test_refetch_rate_rises_with_threshold():
    rates = []
    for thr in (0.0, 0.05, 0.2, 0.5, 1.0):
        run = run_cascade(SMALL, CascadeConfig(refetch_threshold=thr))
        rates.append(sum(s.flat_rows for s in run.layers) / sum(s.rows for s in run.layers))
    assert rates == sorted(rates) and rates[0] == 0.0 and rates[-1] == 1.0
    assert 0 < rates[2] < 1


def test_split_quantize():
    x = np.linspace(-1, 1, 101)
    q = split_quantize(x, 8, 4)
    step = q.scale
    assert np.abs(q.full - x).max() <= step / 2 + 1e-12
    assert np.abs(q.msb_only - x).max() <= 16 * step  # MSB-only error within one MSB step
    assert np.abs(q.msb_only - x).max() > np.abs(q.full - x).max()


def test_trace_bytes_match_formula():
    cfg = CascadeConfig(token_keep={1: 0.5, 3: 0.25}, head_keep={2: 3}, v_keep=0.5,
                        query_tile=32, refetch_threshold=0.2)
    run = run_cascade(SMALL, cfg)
    lay = run.layout
    trace = run.trace()
    rb = lay.row_bytes
    formula = sum(s.k_msb_rows * rb(Plane.K_MSB) + s.k_lsb_rows * rb(Plane.K_LSB)
                  + s.v_msb_rows * rb(Plane.V_MSB) + s.v_lsb_rows * rb(Plane.V_LSB)
                  for s in run.layers)
    assert trace.payload_bytes == formula
    rows = sum(s.k_msb_rows + s.k_lsb_rows + s.v_msb_rows + s.v_lsb_rows for s in run.layers)
    assert len(trace) == rows
    # rows of 16 elements: MSB rows 16 B, LSB rows 8 B, each inside one 64-byte burst
    assert trace.burst_bytes() == 64 * rows
    by_layer = trace.bytes_by("layer")
    assert [by_layer[s.layer] for s in run.layers] == [s.trace.payload_bytes for s in run.layers]


def test_dense_trace_and_layout():
    lay = KVLayout(2, 3, 10, 16, 32, 0, 32, 0)
    tr = dense_trace(lay, 10)
    assert tr.payload_bytes == 2 * 3 * 10 * 16 * 4 * 2 == lay.plane_bytes(Plane.K_MSB) * 2
    assert lay.base(Plane.V_MSB) % 4096 == 0 and lay.base(Plane.V_MSB) >= lay.plane_bytes(0)
    addr = lay.address(Plane.K_MSB, 1, 2, 7)
    assert int(addr) == ((1 * 3 + 2) * 10 + 7) * 64
    t = kv_fetch_trace(lay, 1, np.array([2, 5]), np.array([0, 2]))
    assert [int(a) for a in t.addr] == [
        int(lay.address(p, 1, h, tok)) for h in (0, 2) for p in (Plane.K_MSB, Plane.V_MSB)
        for tok in (2, 5)]


def test_quantize_probabilities():
    q = quantize_unsigned_fraction(np.array([0.0, 0.5, 1.0, 0.99999]), 8)
    assert q.tolist() == [0, 128, 255, 255]


def test_spatten_schedule():
    assert spatten_token_schedule(12) == {2: 0.9, 5: 0.7, 8: 0.2, 10: 0.1}


def test_cascade_down_to_zero_tokens():
    run = run_cascade(SMALL, CascadeConfig(token_keep={1: 0}))
    assert [len(s.alive) for s in run.layers] == [96, 96, 0, 0, 0, 0]
    assert run.layers[3].trace.payload_bytes == 0


def test_config_errors():
    with pytest.raises(ValueError, match="token_keep: layer must be in 0..5"):
        run_cascade(SMALL, CascadeConfig(token_keep={6: 0.5}))
    with pytest.raises(ValueError, match="v_keep"):
        run_cascade(SMALL, CascadeConfig(v_keep=0))
    with pytest.raises(ValueError, match="n_tokens must be an integer >= 1"):
        SyntheticWorkload(n_tokens=0)


def test_workload_is_deterministic_and_structured():
    w = SyntheticWorkload(2, 2, 128, 16, seed=4)
    a, b = w.qkv(1, 1), SyntheticWorkload(2, 2, 128, 16, seed=4).qkv(1, 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    q, k, _ = w.qkv(0, 0)
    p = np.exp(q @ k.T / 4 - (q @ k.T / 4).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    mass = np.sort(p.sum(0))[::-1]
    assert mass[:8].sum() / mass.sum() > 8 / 128 * 2  # heavy hitters draw extra attention
