"""The fused lane kernels (d, m <= 8) against their NumPy references, the padding, and the exp they use."""

import numba
import numpy as np
import pytest
from numba import njit

from continuum_attention.attention import _kernels

RNG = np.random.default_rng(11)


@njit(cache=True)
def _fast_exp_loop(t):
    out = np.empty_like(t)
    for i in range(t.size):
        out[i] = _kernels.fast_exp(t[i])
    return out


def test_fast_exp_matches_numpy_and_clamps():
    t = np.concatenate([np.linspace(-699.9, 0.0, 20001), np.linspace(0.0, 699.0, 101), [-700.5, -800.0, -1e300]])
    expected = np.where(t > _kernels._CLAMP, np.exp(t), 0.0)
    np.testing.assert_allclose(_fast_exp_loop(t), expected, rtol=1e-15, atol=0)  # reaches 3.1e-16
    assert _fast_exp_loop(np.array([np.nan, -np.inf]))[:2].tolist() == [0.0, 0.0]


def _case(family, use_M, periodic, d, na=37, nb=203):
    """Kernel arguments for one variant; nb = 203 is not a multiple of the 8 lanes (the padding is exercised)."""
    A, B = RNG.random((na, d)), RNG.random((nb, d))
    if family == _kernels.DOT:
        A, B = A - 0.5, B - 0.5
    period = {"none": np.zeros(d), "all": np.ones(d), "mixed": (np.arange(d) % 2).astype(float)}[periodic]
    L = RNG.normal(size=(d, d))
    M = L @ L.T / d + np.eye(d)
    return (family, A, np.ascontiguousarray(B.T), M, use_M, period)


VARIANTS = [(_kernels.DOT, False, "none"), (_kernels.SQUARED, False, "none"), (_kernels.SQUARED, False, "mixed"),
            (_kernels.SQUARED, True, "all")]


@pytest.mark.parametrize("d", [1, 5])  # 5 is padded to the lane width 8 with zero coordinates
@pytest.mark.parametrize("family, use_M, periodic", VARIANTS)
def test_lane_sum_and_lse_equal_the_references(family, use_M, periodic, d):
    args = _case(family, use_M, periodic, d)
    na, nb = args[1].shape[0], args[2].shape[1]
    c, r, s = 3.0, RNG.normal(size=na), RNG.normal(size=nb)
    V = RNG.normal(size=(nb, 3))  # 3 value columns: padded to 4
    ours, ref = _kernels.kernel_sum(*args, c, r, s, V), _kernels.kernel_sum_ref(*args, c, r, s, V)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-14 * np.abs(ref).max())  # reaches 2.2e-15 * max
    ours, ref = _kernels.kernel_lse(*args, c, s), _kernels.kernel_lse_ref(*args, c, s)
    np.testing.assert_allclose(ours, ref, rtol=5e-14)  # reaches 7.3e-15


@pytest.mark.parametrize("d", [2, 9])  # 9: beyond LANE_MAX_DIM, the tiled kernel
def test_displacement_equals_its_reference(d):
    family, A, _, M, use_M, period = _case(_kernels.SQUARED, True, "all", d, na=203)
    X, xperiod = RNG.random((203, 3)), np.array([1.0, 0.0, 1.0])
    args = (family, A, np.ascontiguousarray(A.T), M, use_M, period, X, xperiod, 2.0, RNG.normal(size=203),
            RNG.normal(size=203))
    ours, ref = _kernels.kernel_displacement(*args), _kernels.kernel_displacement_ref(*args)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=5e-15 * np.abs(ref).max())  # reaches 4.2e-16 * max


def test_padded_columns_weigh_exactly_zero():
    """A row whose every column carries s = +inf sums to exactly 0 and its log-sum-exp is -inf."""
    args = _case(_kernels.SQUARED, False, "all", 2, na=3, nb=5)
    s = np.full(5, np.inf)
    assert np.all(_kernels.kernel_sum(*args, 1.0, np.zeros(3), s, np.ones((5, 1))) == 0.0)
    assert np.all(_kernels.kernel_lse(*args, 1.0, s) == -np.inf)


def test_lane_sums_do_not_depend_on_the_thread_count():
    args = _case(_kernels.SQUARED, False, "all", 2, na=301, nb=1001)
    r, s, V = np.zeros(301), RNG.normal(size=1001), RNG.normal(size=(1001, 1))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _kernels.kernel_sum(*args, 40.0, r, s, V)
        numba.set_num_threads(before)
        many = _kernels.kernel_sum(*args, 40.0, r, s, V)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, many)
