"""golden/decode.py and golden/decode_trace.py: decode pruning state, selections, layout."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from psa.golden.decode import (
    DecodePruningState,
    gqa_importance,
    p_to_fixed,
    select_kv,
    select_topp,
)
from psa.golden.decode_trace import DecodeKVLayout, DecodePlane, quantize_rows, rows_trace
from psa.golden.trace import Plane

# ---- DecodePruningState -------------------------------------------------------------------


def test_append_joins_at_end_with_score_zero():
    st = DecodePruningState(max_tokens=5, n_heads=1, prob_bits=4, score_bits=8)
    st.start(3)
    st.add_probs(np.array([1, 2, 3]))
    assert st.append() == 3
    assert st.alive.tolist() == [0, 1, 2, 3]
    assert st.scores.tolist() == [1, 2, 3, 0]
    st.prune(2)  # keeps 1, 2
    assert st.append() == 4  # ids keep counting: pruned ids never come back
    assert st.alive.tolist() == [1, 2, 4]
    with pytest.raises(ValueError, match="full"):
        st.append()


def test_append_from_empty_and_full_at_start():
    st = DecodePruningState(max_tokens=2, n_heads=1)
    st.start(0)
    assert [st.append(), st.append()] == [0, 1]
    st.start(2)
    with pytest.raises(ValueError, match="full"):
        st.append()


def test_prune_decode_hand_case():
    # scores by token: 0:5 1:9 2:5 3:1 4:0 5:0 ; recent 2 protects tokens 4, 5
    st = DecodePruningState(max_tokens=8, n_heads=1, prob_bits=4, score_bits=8)
    st.start(4)
    st.add_probs(np.array([5, 9, 5, 1]))
    st.append()
    st.append()
    assert st.prune_decode(4, recent=2).tolist() == [0, 1, 4, 5]  # tie 0/2 -> lower, token 0
    assert st.scores.tolist() == [5, 9, 0, 0]


def test_prune_decode_recent_larger_than_k_and_zero():
    st = DecodePruningState(max_tokens=8, n_heads=1, prob_bits=4, score_bits=8)
    st.start(5)
    st.add_probs(np.array([9, 8, 7, 6, 5]))
    assert st.prune_decode(2, recent=10).tolist() == [3, 4]  # recent clipped to k
    st.start(5)
    st.add_probs(np.array([9, 8, 7, 6, 5]))
    assert st.prune_decode(2, recent=0).tolist() == [0, 1]
    with pytest.raises(ValueError, match="recent"):
        st.prune_decode(2, recent=-1)


def test_prune_decode_equals_prune_without_recent():
    rng = np.random.default_rng(7)
    for trial in range(50):
        n = int(rng.integers(1, 20))
        a, b = (DecodePruningState(32, 1, 4, 10) for _ in range(2))
        for st in (a, b):
            st.start(n)
        rows = rng.integers(0, 16, (3, n))
        a.add_probs(rows)
        b.add_probs(rows)
        k = int(rng.integers(0, n + 2))
        assert a.prune_decode(k).tolist() == b.prune(k).tolist(), f"trial {trial}"


def test_pruned_never_return_over_many_steps():
    rng = np.random.default_rng(11)
    st = DecodePruningState(200, 1, 8, 24)
    st.start(20)
    gone: set[int] = set()
    for _ in range(150):
        st.append()
        st.add_probs(rng.integers(0, 256, (2, len(st.alive))))
        before = set(st.alive.tolist())
        after = set(st.prune_decode(12, recent=3).tolist())
        assert after <= before
        assert not after & gone
        gone |= before - after
        assert np.all(np.diff(st.alive) > 0)


def test_add_probs_for_superset_and_scores():
    st = DecodePruningState(10, 1, 4, 6)
    st.start(5)
    st.prune(3)  # all scores 0: keeps 0, 1, 2
    st.retain([0, 2, 7])
    assert st.alive.tolist() == [0, 2]
    st.add_probs_for(np.array([0, 1, 2, 3]), np.array([[1, 15, 2, 15], [3, 15, 4, 15]]))
    assert st.scores.tolist() == [4, 6]
    st.add_scores_for(np.array([0, 2]), np.array([60, 1]))
    assert st.scores.tolist() == [63, 7]  # saturates at 2^6 - 1
    with pytest.raises(ValueError, match="not in tokens"):
        st.add_probs_for(np.array([0, 1]), np.array([1, 1]))
    with pytest.raises(ValueError, match="ascending"):
        st.add_scores_for(np.array([2, 0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="0..15"):
        st.add_probs_for(np.array([0, 2]), np.array([16, 0]))
    with pytest.raises(ValueError, match=">= 0"):
        st.add_scores_for(np.array([0, 2]), np.array([-1, 0]))


def test_gqa_importance_hand_case():
    # 4 query heads, group 2, prob_bits 2: q = min(floor(4p + 0.5), 3)
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.1, 0.9], [0.125, 0.875]])
    got = gqa_importance(probs, 2, prob_bits=2)
    # kv0: head0 [2, 2] + head1 [3, 0]
    # kv1: head2 [0, 3] (3.6 -> 4 clamps to 3) + head3 [1, 3] (0.5 rounds up; 3.5 -> 4 -> 3)
    assert got.tolist() == [[5, 2], [1, 6]]
    with pytest.raises(ValueError, match="multiple"):
        gqa_importance(probs, 3)


# ---- selections ---------------------------------------------------------------------------


def test_select_kv_ties_to_lower_position():
    assert select_kv(np.array([3, 7, 7, 1, 7]), 2).tolist() == [1, 2]
    assert select_kv(np.array([0.1, 0.5, 0.2]), 5).tolist() == [0, 1, 2]
    assert select_kv(np.array([0.1, 0.5]), 0).tolist() == []


def brute_topp(vals: np.ndarray, p: int) -> list[int]:
    """Smallest set reaching p; among sets of that size the one of largest values, then lowest
    positions (spec by enumeration)."""
    n = len(vals)
    if p == 0:
        return []
    if vals.sum() < p:
        return list(range(n))
    for size in range(1, n + 1):
        best = None
        for combo in itertools.combinations(range(n), size):
            if vals[list(combo)].sum() >= p:
                key = (sorted((-int(vals[i]), i) for i in combo))
                if best is None or key < best[0]:
                    best = (key, combo)
        if best is not None:
            # the greedy rule keeps the prefix of (value desc, position asc)
            return sorted(best[1])
    raise AssertionError


def test_select_topp_hand_cases():
    v = np.array([2, 5, 1, 5, 3])
    assert select_topp(v, 5).tolist() == [1]          # one 5 suffices: the lower one
    assert select_topp(v, 6).tolist() == [1, 3]
    assert select_topp(v, 10).tolist() == [1, 3]      # exactly reaching counts
    assert select_topp(v, 11).tolist() == [1, 3, 4]
    assert select_topp(v, 16).tolist() == [0, 1, 2, 3, 4]
    assert select_topp(v, 17).tolist() == [0, 1, 2, 3, 4]  # sum short of p: everything
    assert select_topp(v, 0).tolist() == []                # p = 0 keeps nothing
    assert select_topp(np.array([3, 3, 3]), 4).tolist() == [0, 1]
    assert select_topp(np.zeros(0, np.int64), 3).tolist() == []


def test_select_topp_matches_enumeration():
    rng = np.random.default_rng(5)
    for trial in range(300):
        n = int(rng.integers(1, 7))
        vals = rng.integers(0, 6, n)
        p = int(rng.integers(0, vals.sum() + 3))
        got = select_topp(vals, p).tolist()
        want = brute_topp(vals, p)
        assert len(got) == len(want), f"trial {trial}: vals {vals.tolist()} p {p}"
        # the same tokens as the greedy spec: prefix of (value desc, position asc)
        order = sorted(range(n), key=lambda i: (-int(vals[i]), i))
        csum = np.cumsum(vals[order])
        cnt = n if p > vals.sum() else (0 if p == 0 else int(np.argmax(csum >= p)) + 1)
        assert got == sorted(order[:cnt]), f"trial {trial}: vals {vals.tolist()} p {p}"


def test_select_topp_p_one_and_rounding():
    assert p_to_fixed(1.0, 8) == 256
    assert p_to_fixed(0.0, 8) == 0
    assert p_to_fixed(0.5, 3) == 4
    assert p_to_fixed(0.0625, 3) == 1   # 0.5 rounds half up
    assert p_to_fixed(0.06, 3) == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        p_to_fixed(1.5, 8)
    # p = 1 on a row whose quantized sum is 255 < 256: everything kept
    row = np.array([128, 127, 0])
    assert select_topp(row, p_to_fixed(1.0, 8)).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="integer"):
        select_topp(np.array([0.5, 0.5]), 1)
    with pytest.raises(ValueError, match="p_fixed"):
        select_topp(np.array([1, 2]), -1)


# ---- layout and traces --------------------------------------------------------------------


def test_layout_addresses_hand_case():
    lay = DecodeKVLayout(n_layers=2, n_kv_heads=3, capacity=40, head_dim=8, k_msb_bits=8,
                         k_lsb_bits=4, v_msb_bits=16, page_tokens=16, block_tokens=32,
                         meta_bits=16, align=64)
    assert lay.row_bytes(DecodePlane.K_MSB) == 8 + 2   # codes + row scale
    assert lay.row_bytes(DecodePlane.K_LSB) == 4
    assert lay.row_bytes(DecodePlane.V_MSB) == 16      # fp16, no scale
    assert lay.row_bytes(DecodePlane.V_LSB) == 0
    assert lay.row_bytes(DecodePlane.PAGE_MINMAX) == 32
    assert lay.row_bytes(DecodePlane.BLOCK_SUMMARY) == 16
    assert (lay.n_pages, lay.n_blocks) == (3, 2)
    k_bytes = 2 * 3 * 40 * 10  # 2400 -> aligned 2432
    assert lay.base(DecodePlane.K_LSB) == 2432
    assert int(lay.address(DecodePlane.K_MSB, 1, 2, 5)) == ((1 * 3 + 2) * 40 + 5) * 10
    assert int(lay.address(DecodePlane.K_MSB, 1, 2, 39)) + 10 == k_bytes
    lsb_end = 2432 + 2 * 3 * 40 * 4  # 3392 -> 3392 aligned
    assert lay.base(DecodePlane.V_MSB) == lsb_end
    v_end = lsb_end + 2 * 3 * 40 * 16
    assert lay.base(DecodePlane.PAGE_MINMAX) == v_end  # V_LSB has 0 bytes
    assert int(lay.address(DecodePlane.PAGE_MINMAX, 0, 1, 2)) == v_end + (1 * 3 + 2) * 32
    with pytest.raises(ValueError, match="0..2"):
        lay.address(DecodePlane.PAGE_MINMAX, 0, 0, 3)
    with pytest.raises(ValueError, match="kv_head"):
        lay.address(DecodePlane.K_MSB, 0, 3, 0)


def test_layout_regions_do_not_overlap():
    lay = DecodeKVLayout(3, 2, 100, 16, 6, 6, 8, 4, page_tokens=16, block_tokens=16)
    spans = []
    for plane in DecodePlane:
        if lay.row_bytes(plane) == 0:
            continue
        lo = int(lay.address(plane, 0, 0, 0))
        hi = int(lay.address(plane, 2, 1, lay.rows_per_head(plane) - 1)) + lay.row_bytes(plane)
        assert hi - lo == lay.region_bytes(plane)
        spans.append((lo, hi))
    spans.sort()
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert [int(p) for p in DecodePlane][:4] == [int(p) for p in Plane][:4]


def test_layout_rejects_bad_parameters():
    with pytest.raises(ValueError, match="whole bytes"):
        DecodeKVLayout(1, 1, 4, 3, k_msb_bits=4)
    with pytest.raises(ValueError, match="k_msb_bits"):
        DecodeKVLayout(1, 1, 4, 8, k_msb_bits=0)
    with pytest.raises(ValueError, match="capacity"):
        DecodeKVLayout(1, 1, 0, 8)


def test_rows_trace_reads_and_writes():
    lay = DecodeKVLayout(2, 2, 10, 8)
    tr = rows_trace(lay, DecodePlane.V_MSB, 1, 0, [3, 4], write=True)
    assert tr.is_write.tolist() == [True, True]
    assert tr.size.tolist() == [16, 16]
    assert tr.addr.tolist() == [int(lay.address(DecodePlane.V_MSB, 1, 0, t)) for t in (3, 4)]
    assert tr.layer.tolist() == [1, 1] and tr.plane.tolist() == [2, 2]
    assert len(rows_trace(lay, DecodePlane.K_LSB, 0, 0, [1])) == 0  # plane without bytes
    assert len(rows_trace(lay, DecodePlane.K_MSB, 0, 0, [])) == 0


def test_quantize_rows():
    x = np.array([[1.0, -0.5, 0.25, 0.0], [0.0, 0.0, 0.0, 0.0]])
    msb, full = quantize_rows(x, 2, 2)   # 4-bit codes: lim 7, scale 1/7 on row 0
    assert np.allclose(full[0] * 7, [7, -4, 2, 0])  # rint(-3.5) = -4 (half to even)
    # MSB-only: (code >> 2) << 2 plus 2 (half an LSB step of 4)
    assert np.allclose(msb[0] * 7, [6, -2, 2, 2])
    assert np.all(full[1] == 0)
    f16, f16b = quantize_rows(np.array([1 / 3]), 16, 0)
    assert f16[0] == np.float64(np.float16(1 / 3)) and f16b[0] == f16[0]
    f32, _ = quantize_rows(np.array([1 / 3]), 32, 0)
    assert f32[0] == np.float64(np.float32(1 / 3))


# ---- APPEND score and the SELECT request stream (the pruning unit's decode commands) ------


def test_append_initial_score_clamps_and_rejects_negative():
    st = DecodePruningState(max_tokens=4, n_heads=1, prob_bits=4, score_bits=6)
    st.start(1)
    st.append(5)
    st.append(1000)
    assert st.scores.tolist() == [0, 5, 63]
    with pytest.raises(ValueError, match="score"):
        st.append(-1)


def test_select_fetch_trace_hand_case():
    from psa.golden.decode import select_fetch_trace
    from psa.golden.trace import KVLayout

    layout = KVLayout(2, 2, 16, 8, 8, 4, 8, 2)
    alive = np.array([1, 4, 6, 9])
    row = np.array([3, 7, 7, 1])
    tr = select_fetch_trace(layout, 1, 1, alive, row, 2)       # top-2: tokens 4, 6
    assert tr.plane.tolist() == [Plane.V_MSB] * 2
    assert tr.addr.tolist() == layout.address(Plane.V_MSB, 1, 1, np.array([4, 6])).tolist()
    flat = select_fetch_trace(layout, 1, 1, alive, row, 9, topp=True, lsb_threshold=8)
    # mass 9: 7 (pos 1) + 7 (pos 2) reaches it; flat (max 7 < 8): K LSB of all, V MSB, V LSB
    assert flat.plane.tolist() == [Plane.K_LSB] * 4 + [Plane.V_MSB] * 2 + [Plane.V_LSB] * 2
    assert flat.addr[-2:].tolist() == layout.address(Plane.V_LSB, 1, 1,
                                                     np.array([4, 6])).tolist()
    none = select_fetch_trace(layout, 1, 1, alive, row, 0, lsb_threshold=8)
    assert none.plane.tolist() == [Plane.K_LSB] * 4                 # k = 0, flat row
    assert len(select_fetch_trace(layout, 0, 0, alive[:0], row[:0], 3)) == 0
    with pytest.raises(ValueError, match="probs_row"):
        select_fetch_trace(layout, 0, 0, alive, row[:2], 3)
