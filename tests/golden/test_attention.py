"""Golden attention: softmax variants against exact, top-k masking, error of the cubic exp."""

import numpy as np
import pytest

from psa.golden.attention import attention, fit_exp_cubic, softmax


@pytest.fixture
def scores():
    return np.random.default_rng(3).normal(0, 2.5, size=(64, 200))


def test_exact_rows_sum_to_one_and_masks(scores):
    mask = np.random.default_rng(1).random(scores.shape) < 0.7
    mask[0] = False
    p = softmax(scores, mask)
    assert np.allclose(p[1:].sum(axis=1), 1.0)
    assert (p[~mask] == 0).all() and (p[0] == 0).all()


def test_fixed_point_softmax_error(scores):
    exact = softmax(scores)
    fixed = softmax(scores, kind="fixed", prob_bits=16, score_frac_bits=8, lut_bits=8)
    assert fixed.dtype == np.int64 and fixed.min() >= 0 and fixed.max() < 2**16
    err = np.abs(fixed / 2**16 - exact).max()
    # Error budget: score quantization (2^-9 relative), 8-bit LUT (2^-9), final floor (2^-16).
    assert err < 3e-3, err
    assert (fixed.sum(axis=1) <= 2**16).all()


def test_poly_softmax_error_is_measured():
    """Max |p_poly - p_exact| on unit-variance scores (typical attention logits), per clamp.

    Measured (seed 3, 64 x 200): clamp -4: 0.027, -6: 0.059, -8: 0.087. Two sources: the cubic's
    fit error, and the mass of scores below the clamp, which counts as 0.
    """
    scores = np.random.default_rng(3).normal(0, 1.0, size=(64, 200))
    exact = softmax(scores)
    errs = {}
    for clamp in (-4.0, -6.0, -8.0):
        poly = softmax(scores, kind="poly", clamp=clamp)
        assert np.allclose(poly.sum(axis=1), 1.0)
        errs[clamp] = float(np.abs(poly - exact).max())
    assert errs[-4.0] < 0.035 and errs[-6.0] < 0.07 and errs[-8.0] < 0.1, errs
    mean_err = float(np.abs(softmax(scores, kind="poly") - exact).mean())
    assert mean_err < 2e-3, mean_err
    a3, a2, a1, a0 = fit_exp_cubic(-4.0)
    x = np.linspace(-4, 0, 101)
    assert np.abs(((a3 * x + a2) * x + a1) * x + a0 - np.exp(x)).max() < 0.06


def test_attention_topk_keeps_k_per_row():
    rng = np.random.default_rng(0)
    q, k, v = rng.normal(size=(8, 16)), rng.normal(size=(40, 16)), rng.normal(size=(40, 16))
    out, p = attention(q, k, v, topk=5)
    assert ((p > 0).sum(axis=1) == 5).all()
    dense_out, _ = attention(q, k, v)
    assert out.shape == dense_out.shape == (8, 16)
    full, _ = attention(q, k, v, topk=40)
    assert np.allclose(full, dense_out)


def test_attention_fixed_point_close_to_exact():
    rng = np.random.default_rng(5)
    q, k, v = rng.normal(size=(8, 32)), rng.normal(size=(50, 32)), rng.normal(size=(50, 32))
    exact, _ = attention(q, k, v)
    fixed, _ = attention(q, k, v, softmax_kind="fixed", prob_bits=16)
    assert np.abs(exact - fixed).max() < 0.02


def test_bad_kind():
    with pytest.raises(ValueError, match="kind must be"):
        softmax(np.zeros((2, 2)), kind="fast")
