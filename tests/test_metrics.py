"""Pseudo-metrics: formulas, tensors, validation, configuration round trips."""

import numpy as np
import pytest

from continuum_attention import Torus
from continuum_attention.metrics import (DotProduct, Euclidean, Learned, Mahalanobis, ResidualFeatureMap,
                                         constant_tensor, metric_from_config)

RNG = np.random.default_rng(1)


def _residual(d=2, h=4, scale=0.3):
    return ResidualFeatureMap(scale * RNG.normal(size=(h, d)), RNG.normal(size=h),
                              scale * RNG.normal(size=(d, h)), RNG.normal(size=d))


def test_euclidean_and_mahalanobis_values():
    x, y = RNG.random((4, 2)), RNG.random((3, 2))
    M = np.array([[2.0, 0.5], [0.5, 1.0]])
    d = x[:, None] - y[None]
    np.testing.assert_allclose(Euclidean().pairwise(x, y), np.sum(d**2, -1), rtol=1e-15)  # reaches exact
    np.testing.assert_allclose(Mahalanobis(M).pairwise(x, y), np.einsum("abi,ij,abj->ab", d, M, d), rtol=1e-15)  # reaches exact


def test_minimum_image_on_torus():
    x, y = np.array([[0.05]]), np.array([[0.95]])
    assert Euclidean().pairwise(x, y, Torus(1.0))[0, 0] == pytest.approx(0.01)
    assert Euclidean().pairwise(x, y)[0, 0] == pytest.approx(0.81)
    assert Mahalanobis([[4.0]]).pairwise(x, y, Torus(1.0))[0, 0] == pytest.approx(0.04)


def test_dot_product_sphere_example():
    """THEORY Example 1: Q = K = I on the unit sphere: f = -x.y = (|x - y|^2 - 2) / 2."""
    x = RNG.normal(size=(5, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    f = DotProduct(np.eye(3), np.eye(3)).pairwise(x, x)
    np.testing.assert_allclose(f, (Euclidean().pairwise(x, x) - 2) / 2, rtol=0, atol=3e-15)  # reaches 2.8e-16
    assert not DotProduct(np.eye(3), np.eye(3)).is_metric
    with pytest.raises(ValueError, match="not a metric"):
        DotProduct(np.eye(3), np.eye(3)).tensor(x)


@pytest.mark.parametrize("metric, expected", [(Euclidean(), np.eye(2)), (Mahalanobis([[2, 0.5], [0.5, 1]]),
                                                                           np.array([[2, 0.5], [0.5, 1]]))])
def test_tensor_convention(metric, expected):
    """f(x, x + dx) = dx^T g dx."""
    x = RNG.random((3, 2))
    g = metric.tensor(x)
    assert g.shape == (3, 2, 2)
    np.testing.assert_array_equal(g, np.broadcast_to(expected, g.shape))  # exact by construction: the stored matrix
    np.testing.assert_array_equal(constant_tensor(metric, 2), expected)  # exact by construction


def test_learned_tensor_is_pullback_and_matches_f():
    phi = _residual()
    x = RNG.random((5, 2))
    exact = Learned(phi).tensor(x)
    fd = Learned(lambda z: phi(z)).tensor(x)  # plain callable: finite differences
    np.testing.assert_allclose(fd, exact, rtol=1e-9, atol=1e-11)  # reaches 8.7e-12 absolute (finite differences)
    dx = 1e-4 * RNG.normal(size=(5, 2))
    f = np.diag(Learned(phi).pairwise(x, x + dx))
    np.testing.assert_allclose(f, np.einsum("pi,pij,pj->p", dx, exact, dx), rtol=1e-4)  # reaches 1.1e-5: the O(|dx|) remainder
    assert Learned(phi).constant_tensor is None


@pytest.mark.parametrize("M, match", [([[1.0, 2.0], [0.0, 1.0]], "symmetric"), ([[1.0, 0.0], [0.0, -1.0]],
                                      "positive definite"), ([1.0, 2.0, 3.0], "M must")])
def test_mahalanobis_validation(M, match):
    with pytest.raises(ValueError, match=match):
        Mahalanobis(M)


def test_bad_inputs():
    with pytest.raises(ValueError, match="Q and K"):
        DotProduct(np.eye(2), np.eye(3))
    with pytest.raises(ValueError, match="dimension"):
        Mahalanobis(np.eye(2)).pairwise(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(TypeError, match="phi"):  # a wrong type is a TypeError naming the parameter
        Learned(3)
    with pytest.raises(ValueError, match="NaN"):
        Euclidean().pairwise(np.array([[np.nan]]), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="type"):
        metric_from_config({"type": "Cosine"})
    with pytest.raises(ValueError, match="serialised"):
        Learned(lambda z: z).to_config()


@pytest.mark.parametrize("metric", [Euclidean(), Euclidean(dim=2), Mahalanobis([[2, 0.1], [0.1, 1]]),
                                    DotProduct([[1, 2], [0, 1]], [[1, 0], [3, 1]]), Learned(_residual())])
def test_config_round_trip(metric):
    again = metric_from_config(metric.to_config())
    x = RNG.random((4, 2))
    assert again == metric
    np.testing.assert_array_equal(again.pairwise(x, x), metric.pairwise(x, x))


def test_constant_metrics_drive_the_pde_without_a_dimension():
    """Euclidean() (no dim) and Mahalanobis are constant: the PDE and At evaluate their tensor once."""
    from continuum_attention import AttentionLimitPDE, Grid, Torus
    from continuum_attention.compare import limit_operator
    from continuum_attention.densities import cosine

    torus = Torus([1.0, 1.0])
    dens = cosine(torus, 0.4, (1, 1))
    grid = Grid(torus, 24)
    H = np.sin(2 * np.pi * grid.points[:, 0])
    assert Euclidean().is_constant and Mahalanobis(np.eye(2)).is_constant and not Learned(_residual()).is_constant
    np.testing.assert_array_equal(
        AttentionLimitPDE(grid, dens, metric=Euclidean()).apply(H), AttentionLimitPDE(grid, dens).apply(H)
    )
    f = lambda y: np.sin(2 * np.pi * y[:, 0])  # noqa: E731
    np.testing.assert_array_equal(limit_operator(f, dens, grid.points[:5], Euclidean()), limit_operator(f, dens, grid.points[:5]))
