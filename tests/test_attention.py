"""AttentionOperator: Numba = NumPy, dense references, truncation, stability, normalisations, validation."""

import numpy as np
import pytest
from scipy import stats

from continuum_attention import Box, Torus
from continuum_attention.attention import AttentionOperator
from continuum_attention.attention import _kernels
from continuum_attention.metrics import DotProduct, Euclidean, Learned, Mahalanobis, ResidualFeatureMap

RNG = np.random.default_rng(7)
X2 = RNG.random((257, 2))  # odd size: exercises partial tiles and chunks
M2 = np.array([[2.0, 0.4], [0.4, 0.7]])
PHI = ResidualFeatureMap(0.5 * RNG.normal(size=(5, 2)), RNG.normal(size=5), 0.5 * RNG.normal(size=(2, 5)),
                         RNG.normal(size=2))
CASES = {
    "euclid": (Euclidean(), None),
    "euclid-torus": (Euclidean(), Torus([1.0, 1.0])),
    "mahalanobis": (Mahalanobis(M2), None),
    "mahalanobis-torus": (Mahalanobis(M2), Torus([1.0, 1.0])),
    "learned": (Learned(PHI), None),
    "dot": (DotProduct(RNG.normal(size=(2, 2)), RNG.normal(size=(2, 2))), None),
}


def _reference_S(metric, x, eps, domain=None):
    """Row-stochastic S straight from pairwise(), stabilised with the row maximum."""
    T = -metric.pairwise(x, x, domain) / (2 * eps)
    W = np.exp(T - T.max(axis=1, keepdims=True))
    return W / W.sum(axis=1, keepdims=True)


def test_fast_exp_matches_numpy():
    t = np.concatenate([np.linspace(-699.9, 0.0, 20001), [-700.5, -800.0, -1e300]])
    buf = t.copy()
    _kernels._weights(buf, t.size)
    expected = np.where(t > _kernels._CLAMP, np.exp(t), 0.0)
    np.testing.assert_allclose(buf, expected, rtol=1e-15, atol=0)


@pytest.mark.parametrize("normalization", ["row", ("alpha", 0.5)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_numba_equals_numpy(case, normalization):
    metric, domain = CASES[case]
    eps = 0.02
    ops = [AttentionOperator(X2, eps, metric=metric, domain=domain, backend=b, normalization=normalization)
           for b in ("numba", "numpy")]
    H = RNG.normal(size=(257, 3))
    for method in ("apply", "apply_transpose"):
        a, b = (getattr(op, method)(H) for op in ops)
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-14 * np.abs(b).max(), err_msg=method)  # reaches 1.9e-15 * max
    np.testing.assert_allclose(ops[0].log_degrees(), ops[1].log_degrees(), rtol=6e-15)  # reaches 6.3e-16
    np.testing.assert_allclose(ops[0].displacement(), ops[1].displacement(), rtol=0, atol=8e-15)  # reaches 7.8e-16


@pytest.mark.parametrize("case", sorted(CASES))
def test_dense_matches_pairwise_and_transpose(case):
    metric, domain = CASES[case]
    op = AttentionOperator(X2, 0.05, metric=metric, domain=domain)
    S = _reference_S(metric, X2, 0.05, domain)
    np.testing.assert_allclose(op.dense(), S, rtol=0, atol=4e-16)  # reaches 3.5e-17 (entries <= 0.065)
    mu = RNG.random(257)
    np.testing.assert_allclose(op.apply_transpose(mu), S.T @ mu, rtol=0, atol=1.5e-14)  # reaches 1.3e-15
    np.testing.assert_allclose(op.apply(mu), S @ mu, rtol=0, atol=1e-14)  # reaches 1.0e-15


def test_degrees_unshifted_for_metrics():
    op = AttentionOperator(X2, 0.01)
    F = Euclidean().pairwise(X2, X2)
    np.testing.assert_allclose(op.degrees(), np.exp(-F / 0.02).sum(axis=1), rtol=1e-14)  # reaches 1.2e-15
    assert np.all(op.degrees() >= 1.0)


@pytest.mark.parametrize("case", ["euclid-torus", "mahalanobis", "mahalanobis-torus", "learned"])
def test_truncated_equals_exact_within_tolerance(case):
    metric, domain = CASES[case]
    x = RNG.random((1500, 2))
    tol = 1e-8
    exact = AttentionOperator(x, 2e-4, metric=metric, domain=domain)
    cut = AttentionOperator(x, 2e-4, metric=metric, domain=domain, truncate=True, tolerance=tol)
    assert cut.truncated and cut.nnz < 0.1 * 1500**2
    H = RNG.normal(size=(1500, 2))
    # each row loses at most tol of its mass, so |S_cut H - S H| <= 2 tol max|H|
    assert np.abs(cut.apply(H) - exact.apply(H)).max() <= 2 * tol * np.abs(H).max()
    assert np.abs(cut.apply_transpose(H) - exact.apply_transpose(H)).max() <= 2 * tol * np.abs(H).sum(0).max()
    np.testing.assert_allclose(cut.degrees(), exact.degrees(), rtol=tol / 30)  # reaches 3.2e-11 (the guarantee is tol)


def test_truncate_auto_and_refusals():
    x = RNG.random((2500, 2))
    assert AttentionOperator(x, 1e-5, domain=Torus([1, 1]), truncate="auto").truncated
    assert not AttentionOperator(x, 1.0, domain=Torus([1, 1]), truncate="auto").truncated
    with pytest.raises(ValueError, match="truncate=True needs a metric"):
        AttentionOperator(X2, 0.1, metric=CASES["dot"][0], truncate=True)


@pytest.mark.parametrize("eps", [1e-8, 1e8])
def test_no_overflow_extreme_eps(eps):
    H = RNG.normal(size=257)
    for truncate in (False, True):
        out = AttentionOperator(X2, eps, truncate=truncate).apply(H)
        expected = H if eps < 1 else np.full(257, H.mean())  # S -> I and S -> 1/N
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15 if eps < 1 else 1e-9)  # reaches exact (eps=1e-8) and 8.5e-11 (eps=1e8)


def test_dot_product_huge_coordinates():
    x = 1e6 * RNG.normal(size=(257, 2))
    op = AttentionOperator(x, 1e-3, metric=CASES["dot"][0])
    ones = op.apply(np.ones(257))
    np.testing.assert_allclose(ones, 1.0, rtol=0, atol=1e-15)  # reaches exact
    assert np.all(np.isfinite(op.apply_transpose(np.full(257, 1 / 257))))
    assert np.all(np.isfinite(op.log_degrees()))
    S = op.dense()
    assert np.all(np.isfinite(S)) and np.allclose(S.sum(axis=1), 1.0)


def _quantile_points(ppf, n):
    """Deterministic 'samples': quantiles of the density, so only the kernel bias remains."""
    return ppf((np.arange(n) + 0.5) / n)


def test_gaussian_fixed_eps_reference():
    """THEORY 5: on N(0, s^2), S_eps x -> x s^2 / (s^2 + eps) as N -> infinity (exact at fixed eps)."""
    s2, eps = 1.0, 0.05
    x = _quantile_points(stats.norm.ppf, 4000)
    out = AttentionOperator(x, eps).apply(x)
    inner = np.abs(x) < 1.5
    np.testing.assert_allclose(out[inner], x[inner] * s2 / (s2 + eps), rtol=0, atol=1e-13)  # reaches 1.2e-14


def test_kernel_constant_on_circle():
    """THEORY 3: (S_eps - I) f / eps -> (1/2)(f'' + 2 (log p)' f') on the circle (quantile points, no noise).

    With a factor-2 convention error the result would be off by 100%; the O(eps) bias here is ~1%.
    """
    a = 0.5
    grid = np.linspace(0, 1, 200001)
    cdf = grid + a * np.sin(2 * np.pi * grid) / (2 * np.pi)
    x = np.interp((np.arange(3000) + 0.5) / 3000, cdf, grid)
    f = np.sin(2 * np.pi * x)
    eps = 2e-5
    lhs = (AttentionOperator(x, eps, domain=Torus(1.0)).apply(f) - f) / eps
    dlogp = -2 * np.pi * a * np.sin(2 * np.pi * x) / (1 + a * np.cos(2 * np.pi * x))
    rhs = 0.5 * (-(2 * np.pi) ** 2 * f + 2 * dlogp * 2 * np.pi * np.cos(2 * np.pi * x))
    assert np.sqrt(np.mean((lhs - rhs) ** 2)) < 0.05 * np.sqrt(np.mean(rhs**2))


def test_alpha_normalisations():
    x = RNG.random((400, 2))
    row = AttentionOperator(x, 0.01, domain=Torus([1, 1]))
    zero = AttentionOperator(x, 0.01, domain=Torus([1, 1]), normalization=("alpha", 0))
    np.testing.assert_allclose(zero.dense(), row.dense(), rtol=1e-15, atol=0)  # reaches exact
    one = AttentionOperator(x, 0.01, domain=Torus([1, 1]), normalization=("alpha", 1.0))
    q = row.degrees()
    K = row.dense() * q[:, None]  # raw kernel
    Ka = K / np.outer(q, q)
    np.testing.assert_allclose(one.dense(), Ka / Ka.sum(1, keepdims=True), rtol=0, atol=4e-16)  # reaches 3.5e-17 (entries <= 0.064)


def test_alpha_one_removes_density_drift():
    """alpha = 1: (S - I)/(eps/2) f -> f'' on a non-uniform circle; alpha = 0 keeps the drift 2 (log p)' f'."""
    a = 0.5
    grid = np.linspace(0, 1, 200001)
    x = np.interp((np.arange(3000) + 0.5) / 3000, grid + a * np.sin(2 * np.pi * grid) / (2 * np.pi), grid)
    f = np.sin(2 * np.pi * x)
    lap = -(2 * np.pi) ** 2 * f
    errors = {}
    for alpha in (0.0, 1.0):
        op = AttentionOperator(x, 2e-5, domain=Torus(1.0), normalization=("alpha", alpha))
        errors[alpha] = np.sqrt(np.mean(((op.apply(f) - f) / 1e-5 - lap) ** 2)) / np.sqrt(np.mean(lap**2))
    assert errors[1.0] < 0.05 < 0.3 < errors[0.0]


@pytest.mark.parametrize("truncate", [False, True])
def test_sinkhorn_doubly_stochastic(truncate):
    x = RNG.random((300, 2))
    op = AttentionOperator(x, 0.005, domain=Torus([1, 1]), normalization="sinkhorn", truncate=truncate)
    S = op.dense()
    np.testing.assert_allclose(S.sum(axis=1), 1.0, rtol=0, atol=2e-14)  # reaches 1.6e-15
    np.testing.assert_allclose(S.sum(axis=0), 1.0, rtol=0, atol=8e-12)  # reaches 7.3e-13
    np.testing.assert_allclose(S, S.T, rtol=0, atol=1.5e-12)  # reaches 1.2e-13
    assert op.sinkhorn_iterations > 1
    np.testing.assert_allclose(op.apply_transpose(np.ones(300)), 1.0, rtol=0, atol=8e-12)  # reaches 7.3e-13


@pytest.mark.parametrize("kwargs, match", [
    (dict(points=np.array([[0.1, np.nan]]), eps=0.1), "points"),
    (dict(points=X2, eps=0.0), "eps"),
    (dict(points=X2, eps=float("nan")), "eps"),
    (dict(points=X2, eps=-1.0), "eps"),
    (dict(points=X2 + 1.5, eps=0.1, domain=Box([0, 0], [1, 1])), "points"),
    (dict(points=X2, eps=0.1, metric=Mahalanobis(np.eye(3))), "dimension"),
    (dict(points=X2, eps=0.1, normalization="softmax"), "normalization"),
    (dict(points=X2, eps=0.1, backend="cuda"), "backend"),
    (dict(points=X2, eps=0.1, truncate="yes"), "truncate"),
    (dict(points=X2, eps=0.1, tolerance=0.0), "tolerance"),
    (dict(points=X2, eps=0.1, normalization="sinkhorn", metric=CASES["dot"][0]), "sinkhorn"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttentionOperator(kwargs.pop("points"), kwargs.pop("eps"), **kwargs)


def test_bad_values_and_dense_limit():
    op = AttentionOperator(X2, 0.1)
    with pytest.raises(ValueError, match=r"H must have shape \(257,\)"):
        op.apply(np.ones(256))
    with pytest.raises(ValueError, match="mu"):
        op.apply_transpose(np.full(257, np.nan))
    with pytest.raises(ValueError, match="dense"):
        AttentionOperator(np.linspace(0, 1, 20001), 0.1).dense()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"backend": "numpy"},
        {"truncate": True},
        {"normalization": ("alpha", 0.5)},
        {"metric": "dot"},
    ],
)
def test_apply_rows_equals_rows_of_apply(kwargs):
    from continuum_attention import Torus
    from continuum_attention.attention import AttentionOperator
    from continuum_attention.metrics import DotProduct

    rng = np.random.default_rng(3)
    kwargs = dict(kwargs)
    if kwargs.get("metric") == "dot":
        x = rng.normal(size=(300, 3))
        kwargs["metric"] = DotProduct(rng.normal(size=(3, 3)), rng.normal(size=(3, 3)))
        op = AttentionOperator(x, 0.3, **kwargs)
    else:
        x = rng.random((300, 2))
        op = AttentionOperator(x, 2e-3, domain=Torus([1.0, 1.0]), **kwargs)
    H = rng.normal(size=(300, 2))
    rows = np.array([5, 0, 299, 17])
    np.testing.assert_allclose(op.apply_rows(rows, H), op.apply(H)[rows], rtol=5e-14, atol=5e-16)  # reaches 7.3e-15 relative, 3.1e-15 absolute
    np.testing.assert_allclose(op.apply_rows(rows, H[:, 0]), op.apply(H[:, 0])[rows], rtol=5e-14, atol=5e-16)  # reaches 2.9e-15 relative
    with pytest.raises(ValueError, match="rows must be"):
        op.apply_rows(np.array([300]), H)


def test_every_path_picks_the_same_image_at_exact_half_period_ties():
    """Pairs exactly half a period apart: with cross terms in M the image changes f, so all paths must agree."""
    from continuum_attention import Torus
    from continuum_attention.attention import AttentionOperator
    from continuum_attention.metrics import Mahalanobis

    torus = Torus([1.0, 1.0])
    x = np.array([[0.0, 0.0], [0.5, 0.25], [0.25, 0.5], [0.75, 0.75]])
    M = Mahalanobis([[1.0, 0.8], [0.8, 1.0]])
    H = np.array([1.0, 0.0, -1.0, 2.0])
    ops = [AttentionOperator(x, 0.05, metric=M, domain=torus, **kw) for kw in ({}, {"backend": "numpy"}, {"truncate": True})]
    reference = M.pairwise(x, x, torus)
    S = np.exp(-reference / 0.1)
    S /= S.sum(axis=1, keepdims=True)
    for op in ops:
        np.testing.assert_allclose(op.apply(H), S @ H, rtol=4e-15)  # reaches 3.9e-16
        np.testing.assert_allclose(op.dense(), S, rtol=1e-14, atol=1e-300)  # reaches 1.1e-15
    circle = Torus(1.0)
    y = np.array([[0.0], [0.5]])  # tokens half a circle apart
    d_dense = AttentionOperator(y, 0.2, domain=circle).displacement()
    d_trunc = AttentionOperator(y, 0.2, domain=circle, truncate=True).displacement()
    np.testing.assert_allclose(d_trunc, d_dense, rtol=1e-15)  # reaches exact


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"normalization": ("alpha", -150.0)}, "0 <= a <= 1"),
        ({"normalization": ("alpha", float("nan"))}, "0 <= a <= 1"),
        ({"normalization": "sinkhorn", "sinkhorn_tol": float("nan")}, "sinkhorn_tol"),
        ({"normalization": "sinkhorn", "sinkhorn_max_iter": 0}, "sinkhorn_max_iter"),
    ],
)
def test_normalisation_settings_are_validated(kwargs, match):
    from continuum_attention.attention import AttentionOperator

    with pytest.raises(ValueError, match=match):
        AttentionOperator(np.random.default_rng(0).random((20, 2)), 0.1, **kwargs)


def test_wrap_stays_inside_the_torus():
    from continuum_attention import Torus

    assert Torus(1.0).wrap(np.array([[-1e-17]]))[0, 0] == 0.0


def test_wrap_leaves_points_inside_the_cell_bit_for_bit_and_wraps_the_edge():
    from continuum_attention import Torus

    torus = Torus([1.0, 2.0])
    x = np.random.default_rng(0).random((1000, 2)) * [1.0, 2.0]
    assert torus.wrap(x) is x or np.array_equal(torus.wrap(x), x)  # the pass is skipped: the same numbers
    edge = x.copy()
    edge[7] = [1.0, 2.0]  # exactly L is outside [0, L): it must wrap to 0 (the whole array takes the mod)
    wrapped = torus.wrap(edge)
    assert wrapped[7].tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(np.delete(wrapped, 7, axis=0), np.delete(x, 7, axis=0))
    assert torus.wrap(np.array([[1.25, -0.5]])).tolist() == [[0.25, 1.5]]


def test_a_dropped_operator_is_freed_at_once_not_by_the_cycle_collector():
    """Numba's literal dispatch raises and catches an exception per call, whose traceback kept the calling
    frames (and their arrays) alive until the cycle collector ran: a sweep of 10^7-point operators ran out of
    memory. The kernels now call their compiled specialisations directly."""
    import gc
    import weakref

    from continuum_attention import Torus
    from continuum_attention.attention import AttentionOperator
    from continuum_attention.metrics import DotProduct

    rng = np.random.default_rng(0)
    x, H = rng.random((3000, 2)), rng.normal(size=3000)
    cases = [dict(domain=Torus([1.0, 1.0]), truncate=True), dict(domain=Torus([1.0, 1.0]), truncate=False, dense_budget=0),
             dict(metric=DotProduct(np.eye(2), np.eye(2)), dense_budget=0)]

    def use(kwargs):
        op = AttentionOperator(x, 1e-3, **kwargs)
        op.apply_rows(np.arange(5), H)
        if not op.truncated:
            op.apply(H)
            op.displacement()
        return op

    for kwargs in cases:
        use(kwargs)  # compiles, or loads the cache: the one call that takes Numba's retry
    gc.disable()
    try:
        for kwargs in cases:
            ref = weakref.ref(use(kwargs))
            assert ref() is None, kwargs  # freed by reference counting alone
    finally:
        gc.enable()
