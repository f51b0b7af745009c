"""ParticleSolver: features, walkers, tokens; times; snapshots; validation; determinism."""

import numpy as np
import pytest

from continuum_attention import Torus
from continuum_attention.attention import AttentionOperator
from continuum_attention.particles import ParticleSolver

RNG = np.random.default_rng(3)
X = RNG.random((300, 2))


def test_features_times_and_values():
    solver = ParticleSolver(X, 0.01, domain=Torus([1, 1]))
    sol = solver.run(lambda p: np.cos(2 * np.pi * p[:, 0]), t_final=0.05, n_snapshots=3, progress=False)
    np.testing.assert_array_equal(sol.layers, [0, 5, 10])
    np.testing.assert_allclose(sol.times, [0.0, 0.025, 0.05], rtol=1e-15)  # reaches exact
    H = np.cos(2 * np.pi * X[:, 0])
    for _ in range(10):
        H = solver.operator.apply(H)
    np.testing.assert_array_equal(sol.values[-1], H)  # exact by construction: the same ten operator.apply calls
    assert sol.points.shape == (300, 2) and sol.mode == "features" and sol.eps == 0.01


def test_t_final_must_be_multiple_of_layer_time():
    solver = ParticleSolver(X, 0.01)
    with pytest.raises(ValueError, match="not a multiple of the layer time"):
        solver.run(np.ones(300), t_final=0.0123)
    with pytest.raises(ValueError, match="exactly one"):
        solver.run(np.ones(300), t_final=0.01, n_layers=2)


def test_walkers_conserve_mass_and_reach_degrees():
    solver = ParticleSolver(X, 0.02, domain=Torus([1, 1]), mode="walkers")
    mu0 = np.zeros(300)
    mu0[0] = 1.0
    sol = solver.run(mu0, n_layers=400, n_snapshots=5, progress=False)
    # reaches 1.2e-14: rounding walks over 400 steps (1.1e-15 with the tiled kernels' summation order)
    np.testing.assert_allclose(sol.values.sum(axis=1), 1.0, rtol=0, atol=5e-14)
    q = solver.operator.degrees()
    np.testing.assert_allclose(sol.values[-1], q / q.sum(), rtol=4e-14)  # reaches 3.8e-15


def test_walkers_refuse_bad_probability():
    solver = ParticleSolver(X, 0.02, mode="walkers")
    with pytest.raises(ValueError, match="negative"):
        solver.run(np.r_[-0.5, 1.5, np.zeros(298)], n_layers=1)
    with pytest.raises(ValueError, match="sum to 1"):
        solver.run(np.ones(300), n_layers=1)


def _kde_grad_log(x, eps):
    """grad log p_hat_eps(x_i), p_hat_eps the Gaussian KDE of variance eps on the points themselves."""
    d = x[None, :, :] - x[:, None, :]
    w = np.exp(-np.sum(d**2, axis=-1) / (2 * eps))
    return np.einsum("ij,ijk->ik", w, d) / w.sum(axis=1, keepdims=True) / eps


def test_tokens_one_layer_is_mean_shift():
    eps = 0.01
    sol = ParticleSolver(X, eps, mode="tokens").run(n_layers=1, progress=False)
    np.testing.assert_allclose(sol.points[1], X + eps * _kde_grad_log(X, eps), rtol=0, atol=1e-15)  # reaches 1.1e-16
    assert sol.points.shape == (2, 300, 2)


def test_tokens_on_torus_use_minimum_image():
    x = np.array([[0.02], [0.98]])
    sol = ParticleSolver(x, 0.5, domain=Torus(1.0), mode="tokens").run(n_layers=1, progress=False)
    # the two points are 0.04 apart across 0: they move towards 0 (1.0), not towards 0.5
    assert np.all(np.minimum(sol.points[1, :, 0], 1 - sol.points[1, :, 0]) < 0.02)


def test_tokens_truncated_matches_dense():
    x = RNG.random((400, 2))
    kw = dict(domain=Torus([1, 1]), mode="tokens")
    a = ParticleSolver(x, 1e-3, **kw).run(n_layers=3, progress=False)
    b = ParticleSolver(x, 1e-3, truncate=True, tolerance=1e-10, **kw).run(n_layers=3, progress=False)
    np.testing.assert_allclose(a.points, b.points, rtol=0, atol=3e-12)  # reaches 3.0e-13


def test_deterministic_and_backends_agree():
    H0 = RNG.normal(size=(300, 2))
    runs = [ParticleSolver(X, 0.01, backend=b).run(H0, n_layers=5, progress=False).values
            for b in ("numba", "numba", "numpy")]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_allclose(runs[0], runs[2], rtol=0, atol=5e-15)  # reaches 4.4e-16


def test_bad_mode_and_initial():
    with pytest.raises(ValueError, match="mode"):
        ParticleSolver(X, 0.1, mode="heads")
    with pytest.raises(ValueError, match="initial"):
        ParticleSolver(X, 0.1).run(np.ones(7), n_layers=1)
    with pytest.raises(ValueError, match="eps"):
        ParticleSolver(X, -0.1)
