"""Golden top-k: property-based against a sort with a stable tie-break, plus edge cases."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from psa.golden.attention import topk_mask
from psa.golden.topk import kth_largest, topk, topk_threshold_mask


def reference(values, k):
    """Sort by (value descending, index ascending), take k, return indices ascending."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))[:k]
    return sorted(order)


int_arrays = st.one_of(
    hnp.arrays(np.int16, st.integers(0, 60), elements=st.integers(-4, 4)),
    hnp.arrays(np.uint8, st.integers(0, 60)),
    hnp.arrays(np.int32, st.integers(0, 60)),
    hnp.arrays(np.float64, st.integers(0, 60),
               elements=st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False)),
)


@settings(max_examples=400, deadline=None)
@given(values=int_arrays, k=st.integers(0, 70))
def test_topk_matches_stable_sort(values, k):
    got = topk(values, k)
    want = reference(values.tolist(), k)
    assert got.indices.tolist() == want
    assert got.values.tolist() == values[want].tolist()
    assert got.values.dtype == values.dtype


@pytest.mark.parametrize("k", [0, 1, 3, 5, 6, 100])
def test_edges(k):
    v = np.array([5, 5, 5, 5, 5], dtype=np.int8)
    r = topk(v, k)
    assert r.indices.tolist() == list(range(min(k, 5)))  # all equal: lowest indices


def test_empty_and_single():
    assert topk(np.array([], dtype=np.uint16), 3).indices.size == 0
    assert topk(np.array([7]), 0).indices.size == 0
    assert topk(np.array([-7]), 1).indices.tolist() == [0]


def test_negative_values_and_ties():
    v = np.array([-3, -1, -1, -5, -1], dtype=np.int16)
    assert topk(v, 2).indices.tolist() == [1, 2]
    assert topk(v, 4).indices.tolist() == [0, 1, 2, 4]


def test_unsigned_extremes():
    v = np.array([0, 2**64 - 1, 2**63, 2**64 - 1], dtype=np.uint64)
    assert topk(v, 2).indices.tolist() == [1, 3]
    assert kth_largest(v, 3) == 2**63


def test_errors():
    with pytest.raises(ValueError, match="k must be >= 0"):
        topk(np.arange(3), -1)
    with pytest.raises(ValueError, match="1-D"):
        topk(np.zeros((2, 2)), 1)
    with pytest.raises(ValueError, match="NaN"):
        topk(np.array([1.0, np.nan]), 1)
    with pytest.raises(TypeError, match="integer"):
        topk(np.arange(3), 1.5)


@settings(max_examples=100, deadline=None)
@given(values=hnp.arrays(np.int16, (5, 17), elements=st.integers(-3, 3)), k=st.integers(0, 20))
def test_row_masks(values, k):
    exact = topk_mask(values, k)
    thresh = topk_threshold_mask(values, k)
    for row, e, t in zip(values, exact, thresh, strict=True):
        assert np.flatnonzero(e).tolist() == topk(row, k).indices.tolist()
        assert t.sum() >= e.sum() and (t | e).sum() == t.sum()  # threshold keeps a superset
