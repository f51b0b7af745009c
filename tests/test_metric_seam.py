"""The metric seam: one class per pseudo-metric drives both sides; as_metric; ScaledMetric; invariant weights.

The metric defined here lives in this file alone: nothing in the package knows it, so passing it through
AttentionOperator, ParticleSolver and AttentionLimitPDE shows that no module dispatches on metric classes.
"""

import numpy as np
import pytest

from continuum_attention import AttentionLimitPDE, AttentionOperator, Grid, ParticleSolver, Torus
from continuum_attention import densities as D
from continuum_attention.metrics import (DotProduct, Euclidean, KernelForm, Learned, Mahalanobis, PseudoMetric,
                                         ResidualFeatureMap, ScaledMetric, SearchSpace, as_metric,
                                         metric_from_config)

TORUS = Torus([1.0, 1.0])
WEIGHTS = np.array([1.7, 0.6])


class AxisWeighted(PseudoMetric):
    """f(x, y) = sum_k w_k D_k^2 (minimum image per axis): a diagonal constant metric, g = diag(w)."""

    is_metric = True
    is_constant = True

    def __init__(self, w):
        self.w = np.asarray(w, dtype=float)
        self.dim = self.w.size

    def tensor(self, points):
        return np.broadcast_to(np.diag(self.w), (len(points), self.dim, self.dim)).copy()

    def pairwise(self, x, y, domain=None):
        diff = x[:, None, :] - y[None, :, :]
        diff = diff if domain is None else domain.difference(diff, 0.0)
        return np.einsum("abk,k->ab", diff**2, self.w)

    def kernel_form(self, points, domain=None):
        period = np.zeros(self.dim) if domain is None else domain.period
        return KernelForm.squared(points, period, M=np.diag(self.w))

    def search_space(self, points, domain, radius):
        # f >= min(w) |D|^2: the Euclidean ball of radius r / sqrt(min w) holds the metric ball
        box = None if domain is None or not np.any(domain.periodic) else domain.lengths
        return SearchSpace(points, box, radius / np.sqrt(self.w.min()), False)

    def to_config(self):
        return {"type": "AxisWeighted", "w": self.w.tolist()}


def test_new_metric_runs_through_the_attention_operator():
    x = D.cosine(TORUS, 0.4, (1, 0)).sample(300, 3)
    mine = AttentionOperator(x, 0.01, metric=AxisWeighted(WEIGHTS), domain=TORUS)
    ref = AttentionOperator(x, 0.01, metric=Mahalanobis(np.diag(WEIGHTS)), domain=TORUS)
    H = np.cos(2 * np.pi * x[:, 0]) * np.sin(2 * np.pi * x[:, 1])
    # same kernel form, same kernels: identical to the last bit (measured 0)
    np.testing.assert_array_equal(mine.apply(H), ref.apply(H))
    T = -AxisWeighted(WEIGHTS).pairwise(x, x, TORUS) / 0.02
    S = np.exp(T - T.max(1, keepdims=True))
    np.testing.assert_allclose(mine.dense(), S / S.sum(1, keepdims=True), rtol=0, atol=3e-16)  # reaches 2.8e-17 (entries <= 0.091)


def test_new_metric_truncated_matches_dense():
    x = D.cosine(TORUS, 0.4, (1, 0)).sample(2500, 4)
    H = np.cos(2 * np.pi * x[:, 0])
    dense = AttentionOperator(x, 2e-4, metric=AxisWeighted(WEIGHTS), domain=TORUS)
    cut = AttentionOperator(x, 2e-4, metric=AxisWeighted(WEIGHTS), domain=TORUS, truncate=True, tolerance=1e-10)
    assert cut.truncated and cut.nnz < 0.1 * x.shape[0] ** 2
    # dropped mass per row <= tolerance = 1e-10 relative: the error is bounded by 2e-10 |H|_max (reaches ~1e-11)
    assert np.max(np.abs(cut.apply(H) - dense.apply(H))) < 2e-10


def test_new_metric_runs_through_particle_solver_and_pde():
    dens = D.cosine(TORUS, 0.4, (1, 1))
    H0 = lambda p: np.cos(2 * np.pi * p[:, 0]) + np.sin(2 * np.pi * p[:, 1])  # noqa: E731
    x = dens.sample(400, 1)
    run = ParticleSolver(x, 0.01, metric=AxisWeighted(WEIGHTS), domain=TORUS).run(H0, n_layers=4, n_snapshots=2)
    ref = ParticleSolver(x, 0.01, metric=Mahalanobis(np.diag(WEIGHTS)), domain=TORUS).run(H0, n_layers=4, n_snapshots=2)
    np.testing.assert_array_equal(run.values, ref.values)
    grid = Grid(TORUS, 32)
    mine = AttentionLimitPDE(grid, dens, metric=AxisWeighted(WEIGHTS)).solve(H0, 0.005, n_snapshots=2)
    theirs = AttentionLimitPDE(grid, dens, metric=np.diag(WEIGHTS)).solve(H0, 0.005, n_snapshots=2)
    np.testing.assert_array_equal(mine.values, theirs.values)
    # and it is not a no-op: the anisotropic metric changes the solution against the Euclidean one
    euclid = AttentionLimitPDE(grid, dens).solve(H0, 0.005, n_snapshots=2)
    assert np.max(np.abs(mine.values[-1] - euclid.values[-1])) > 1e-3


def test_as_metric_is_the_one_door():
    e = as_metric(None)
    assert isinstance(e, Euclidean)
    m = as_metric([[2.0, 0.1], [0.1, 1.0]])
    assert isinstance(m, Mahalanobis) and m.M[0, 1] == 0.1
    assert as_metric(m) is m
    assert isinstance(as_metric(2.0), Mahalanobis)  # a positive number is a 1-D metric
    with pytest.raises(TypeError, match="metric"):
        as_metric("euclidean")
    with pytest.raises(TypeError, match="metric"):
        as_metric(lambda x: x)
    with pytest.raises(ValueError, match="metric must be a symmetric positive definite"):
        as_metric([[1.0, 0.0], [0.0, -1.0]])
    # the attention operator takes a matrix too, and it is the Mahalanobis metric
    x = np.random.default_rng(0).random((50, 2))
    A = AttentionOperator(x, 0.05, metric=[[2.0, 0.3], [0.3, 1.0]]).dense()
    B = AttentionOperator(x, 0.05, metric=Mahalanobis([[2.0, 0.3], [0.3, 1.0]])).dense()
    np.testing.assert_array_equal(A, B)


def test_scaled_metric_is_a_change_of_eps_on_the_particle_side():
    x = np.random.default_rng(1).random((200, 2))
    # c f at eps is f at eps / c: the same S (up to rounding of c / (2 eps); measured 4e-16)
    scaled = AttentionOperator(x, 0.03, metric=ScaledMetric(Euclidean(), 2.5)).dense()
    plain = AttentionOperator(x, 0.03 / 2.5, metric=Euclidean()).dense()
    np.testing.assert_allclose(scaled, plain, rtol=0, atol=7e-16)  # reaches 6.9e-17
    q, k = np.random.default_rng(2).normal(size=(2, 2, 2))
    dot = AttentionOperator(x, 0.5, metric=ScaledMetric(DotProduct(q, k), 3.0)).dense()
    np.testing.assert_allclose(dot, AttentionOperator(x, 0.5 / 3.0, metric=DotProduct(q, k)).dense(), rtol=0, atol=3e-16)  # reaches 2.8e-17
    with pytest.raises(ValueError, match="floor"):
        ScaledMetric(DotProduct(q, k), 1.0, floor=0.1)


@pytest.mark.parametrize("truncate", [False, True])
def test_scaled_metric_with_floor_equals_mahalanobis_on_both_sides(truncate):
    M = np.array([[1.2, 0.3], [0.3, 0.7]])
    c, delta = 1.5, 0.2
    metric = ScaledMetric(Mahalanobis(M), c, delta)
    ref = Mahalanobis(c * M + delta * np.eye(2))
    x = D.cosine(TORUS, 0.3, (1, 0)).sample(2500 if truncate else 300, 5)
    H = np.sin(2 * np.pi * x[:, 1])
    a = AttentionOperator(x, 3e-3, metric=metric, domain=TORUS, truncate=truncate).apply(H)
    b = AttentionOperator(x, 3e-3, metric=ref, domain=TORUS, truncate=truncate).apply(H)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)  # the two quadratic forms differ by rounding: reaches 1.0e-15
    np.testing.assert_allclose(metric.tensor(x[:3]), ref.tensor(x[:3]), rtol=1e-15)  # reaches exact
    np.testing.assert_allclose(metric.pairwise(x[:20], x[:30], TORUS), ref.pairwise(x[:20], x[:30], TORUS), rtol=1e-14)
    if not truncate:
        grid = Grid(TORUS, 24)
        dens = D.cosine(TORUS, 0.3, (1, 0))
        u = AttentionLimitPDE(grid, dens, metric=metric).solve(lambda p: np.sin(2 * np.pi * p[:, 1]), 0.004, n_snapshots=2)
        v = AttentionLimitPDE(grid, dens, metric=ref).solve(lambda p: np.sin(2 * np.pi * p[:, 1]), 0.004, n_snapshots=2)
        np.testing.assert_allclose(u.values, v.values, rtol=0, atol=1e-15)  # reaches exact


def test_scaled_learned_metric_round_trips_and_has_the_pullback_tensor():
    rng = np.random.default_rng(3)
    phi = ResidualFeatureMap(0.4 * rng.normal(size=(4, 2)), rng.normal(size=4), 0.4 * rng.normal(size=(2, 4)),
                             rng.normal(size=2))
    metric = ScaledMetric(Learned(phi), 0.8, 0.05)
    x = rng.random((6, 2))
    J = phi.jacobian(x)
    np.testing.assert_allclose(metric.tensor(x), 0.8 * np.einsum("pmi,pmj->pij", J, J) + 0.05 * np.eye(2), rtol=1e-15)  # reaches exact
    back = metric_from_config(metric.to_config())
    assert back == metric
    np.testing.assert_array_equal(back.pairwise(x, x), metric.pairwise(x, x))
    # features z = (phi(x), x) with the block form: the operator equals the reference S from pairwise
    pts = rng.random((120, 2))
    T = -metric.pairwise(pts, pts) / 0.1
    S = np.exp(T - T.max(1, keepdims=True))
    np.testing.assert_allclose(AttentionOperator(pts, 0.05, metric=metric).dense(), S / S.sum(1, keepdims=True),
                               rtol=0, atol=3e-16)  # reaches 2.8e-17 (entries <= 0.11)


@pytest.mark.parametrize("normalization", ["row", ("alpha", 0.5), "sinkhorn"])
def test_invariant_weights_are_the_left_eigenvector(normalization):
    x = D.cosine(TORUS, 0.5, (1, 0)).sample(300, 2)
    op = AttentionOperator(x, 0.01, domain=TORUS, normalization=normalization)
    pi = op.invariant_weights()
    assert pi.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_allclose(pi @ op.dense(), pi, rtol=3e-14)  # reaches 1.7e-15 relative (3e-15 seen before)
    H = np.cos(2 * np.pi * x[:, 0])
    H10 = H
    for _ in range(10):
        H10 = op.apply(H10)
    assert abs(pi @ H10 - pi @ H) < 1e-14 * np.abs(H).max() * 10  # round-off over 10 layers: ~1e-16
    if normalization == "sinkhorn":  # doubly stochastic: pi uniform to the Sinkhorn residual 1e-12 (reaches ~1e-13)
        np.testing.assert_allclose(pi * x.shape[0], 1.0, rtol=0, atol=1e-11)
    else:  # the plain mean is not conserved on a non-uniform sample (moves by ~1e-2 here)
        assert abs(np.mean(H10) - np.mean(H)) > 1e-3


def test_invariant_weights_refuse_an_asymmetric_score():
    x = np.random.default_rng(0).random((30, 2))
    op = AttentionOperator(x, 0.5, metric=DotProduct(np.eye(2), [[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="symmetric"):
        op.invariant_weights()
