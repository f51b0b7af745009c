"""The attention-limit PDE solver against closed forms, its orders of accuracy, and its invariants.

Closed forms (THEORY.md section 5) are written inline: Fourier modes on a torus decay as
exp(-4 pi^2 |k/L|^2 t), a Gaussian spreads to variance sigma^2 + 2t, cosine modes on a Neumann interval decay
as exp(-pi^2 k^2 t / L^2), and for p = N(0, s^2) the feature H = x decays as x exp(-2 t / s^2).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from continuum_attention import Box, Grid, Torus
from continuum_attention.densities import cosine, gaussian, uniform, von_mises
from continuum_attention.pde import AttentionLimitPDE, PDESolution
from continuum_attention.metrics import PseudoMetric

METHODS = ["explicit", "crank-nicolson", "implicit-euler", "exact"]


def rel_l2(a, b) -> float:
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b)))


def slope(h, err) -> float:
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])


def wrapped_gaussian(x, center, var, length=1.0, images=6):
    shifts = np.arange(-images, images + 1)[:, None] * length
    return np.exp(-((x[None, :] - center - shifts) ** 2) / (2 * var)).sum(0) / np.sqrt(2 * np.pi * var)


# ---------------------------------------------------------------------------------------------------------
# Uniform p: heat kernels
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_periodic_1d_fourier_modes(method):
    grid = Grid(Torus(1.0), 160)
    x = grid.axes[0]
    pde = AttentionLimitPDE(grid, uniform(Torus(1.0)))
    t = 0.02
    sol = pde.solve(lambda p: np.cos(2 * np.pi * p[:, 0]) + 0.5 * np.sin(4 * np.pi * p[:, 0]), t, method=method, n_snapshots=3)
    exact = np.cos(2 * np.pi * x) * np.exp(-4 * np.pi**2 * t) + 0.5 * np.sin(4 * np.pi * x) * np.exp(-16 * np.pi**2 * t)
    assert sol.times[-1] == t and sol.values.shape == (3, 160)
    assert rel_l2(sol.values[-1], exact) < 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_periodic_1d_gaussian_spreads_with_variance_2t(method):
    grid = Grid(Torus(1.0), 256)
    x = grid.axes[0]
    pde = AttentionLimitPDE(grid, uniform(Torus(1.0)))
    var0, t = 0.004, 0.01
    sol = pde.solve(wrapped_gaussian(x, 0.5, var0), t, method=method, n_snapshots=2)
    assert rel_l2(sol.values[-1], wrapped_gaussian(x, 0.5, var0 + 2 * t)) < 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_periodic_2d_fourier_mode(method):
    torus = Torus([1.0, 2.0])
    grid = Grid(torus, (80, 160))
    pde = AttentionLimitPDE(grid, uniform(torus))
    x, y = grid.coordinates[..., 0], grid.coordinates[..., 1]
    phase = 2 * np.pi * (x + 2 * y / 2.0)  # k = (1, 2), k / L = (1, 1)
    t = 0.005
    sol = pde.solve(np.cos(phase), t, method=method, n_snapshots=2)
    assert rel_l2(sol.values[-1], np.cos(phase) * np.exp(-8 * np.pi**2 * t)) < 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_neumann_1d_cosine_series(method):
    box = Box(0.0, 1.0)
    grid = Grid(box, 128)
    x = grid.axes[0]
    pde = AttentionLimitPDE(grid, uniform(box))
    t = 0.05
    sol = pde.solve(np.cos(np.pi * x) + 0.5 * np.cos(3 * np.pi * x), t, method=method, n_snapshots=2)
    exact = np.cos(np.pi * x) * np.exp(-np.pi**2 * t) + 0.5 * np.cos(3 * np.pi * x) * np.exp(-9 * np.pi**2 * t)
    assert rel_l2(sol.values[-1], exact) < 1e-3


def test_explicit_limit_is_h2_over_2d_for_uniform_p():
    torus = Torus([1.0, 1.0])
    grid = Grid(torus, (20, 40))
    pde = AttentionLimitPDE(grid, uniform(torus))
    hx, hy = grid.spacing
    assert np.isclose(pde.max_stable_dt(), 1.0 / (2 / hx**2 + 2 / hy**2), rtol=1e-13)


# ---------------------------------------------------------------------------------------------------------
# Non-uniform p: observed orders of accuracy
# ---------------------------------------------------------------------------------------------------------

CIRCLE = Torus(1.0)
COSINE = cosine(CIRCLE, 0.5, 1)


def _h0(points):
    x = points[:, 0]
    return np.sin(2 * np.pi * x) + 0.5 * np.cos(4 * np.pi * x)


def test_space_order_is_two_for_cosine_density():
    t, n_ref = 0.02, 1024
    ref = AttentionLimitPDE(Grid(CIRCLE, n_ref), COSINE).solve(_h0, t, method="exact", n_snapshots=2).values[-1]
    sizes = np.array([16, 32, 64, 128])
    errors = []
    for n in sizes:
        coarse = AttentionLimitPDE(Grid(CIRCLE, n), COSINE).solve(_h0, t, method="exact", n_snapshots=2).values[-1]
        errors.append(rel_l2(coarse, ref[:: n_ref // n]))
    assert abs(slope(1.0 / sizes, errors) - 2.0) < 0.2


@pytest.mark.parametrize("method, order", [("crank-nicolson", 2.0), ("implicit-euler", 1.0)])
def test_time_order(method, order):
    pde = AttentionLimitPDE(Grid(CIRCLE, 64), COSINE)
    t = 0.05
    ref = pde.solve(_h0, t, method="exact", n_snapshots=2).values[-1]
    steps = np.array([8, 16, 32, 64])
    errors = [rel_l2(pde.solve(_h0, t, method=method, n_snapshots=2, dt=t / m).values[-1], ref) for m in steps]
    assert abs(slope(t / steps, errors) - order) < 0.2


# ---------------------------------------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_features_conserve_p2_weighted_mean(method):
    torus = Torus([1.0, 1.0])
    grid = Grid(torus, (24, 20))
    pde = AttentionLimitPDE(grid, cosine(torus, 0.6, (1, 1)))
    H0 = lambda p: 1.0 + np.sin(2 * np.pi * p[:, 0]) * np.cos(2 * np.pi * p[:, 1]) + p[:, 0]  # noqa: E731
    sol = pde.solve(H0, 0.05, method=method, n_snapshots=4)
    scale = pde.invariant(np.abs(sol.values[0]))
    drift = [abs(pde.invariant(v) - pde.invariant(sol.values[0])) / scale for v in sol.values]
    assert max(drift) < 1e-12
    assert np.ptp(sol.values[-1]) < 0.5 * np.ptp(sol.values[0])  # and it did evolve


@pytest.mark.parametrize("method", ["explicit", "implicit-euler"])
def test_walkers_keep_mass_and_positivity(method):
    box = Box(-3.0, 3.0)
    grid = Grid(box, 90)
    pde = AttentionLimitPDE(grid, gaussian(0.5, 1.0, box), form="walkers")
    x = grid.axes[0]
    rho0 = np.where(np.abs(x + 1.5) < 0.3, 1.0, 0.0)  # non-smooth, with zeros
    sol = pde.solve(rho0, 0.5, method=method, n_snapshots=6)
    masses = np.array([pde.invariant(v) for v in sol.values])
    assert np.max(np.abs(masses / masses[0] - 1)) < 1e-12
    assert sol.values.min() >= 0.0
    assert sol.values[-1][np.argmin(np.abs(x - 0.5))] > 0.05  # mass moved towards the mode of p


def test_walkers_crank_nicolson_keeps_mass_2d_torus():
    torus = Torus([1.0, 1.0])
    grid = Grid(torus, 24)
    pde = AttentionLimitPDE(grid, von_mises(torus, (0.3, 0.6), (1.0, 2.0)), form="walkers")
    rho0 = 1.0 + np.cos(2 * np.pi * grid.coordinates[..., 0])
    sol = pde.solve(rho0, 0.1, method="crank-nicolson", n_snapshots=3)
    assert abs(pde.invariant(sol.values[-1]) / pde.invariant(rho0) - 1) < 1e-12


def test_walkers_relax_to_p_squared():
    grid = Grid(CIRCLE, 64)
    pde = AttentionLimitPDE(grid, COSINE, form="walkers")
    sol = pde.solve(np.ones(64), 5.0, method="implicit-euler", dt=0.01, n_snapshots=2)
    q = COSINE.pdf(grid.points)
    target = q**2 / (np.sum(q**2) * grid.cell_volume)
    assert np.max(np.abs(sol.values[-1] / target - 1)) < 1e-10
    np.testing.assert_allclose(pde.walker_equilibrium(), target, rtol=1e-15)  # reaches exact
    # the discrete stationary state is exact: the operator annihilates it to round-off
    assert np.max(np.abs(pde.apply(target))) < 1e-9 * np.max(np.abs(pde.apply(np.cos(2 * np.pi * grid.axes[0]) + 1)))


def test_walkers_are_adjoint_to_features():
    # sum_n m_t H_0 = sum_n m_0 H_t: the walker semigroup is the adjoint of the feature semigroup.
    grid = Grid(CIRCLE, 48)
    x = grid.axes[0]
    feats = AttentionLimitPDE(grid, COSINE)
    walks = AttentionLimitPDE(grid, COSINE, form="walkers")
    H0, rho0 = np.sin(2 * np.pi * x) + x, np.exp(np.cos(2 * np.pi * (x - 0.3)))
    Ht = feats.solve(H0, 0.03, method="exact", n_snapshots=2).values[-1]
    rhot = walks.solve(rho0, 0.03, method="exact", n_snapshots=2).values[-1]
    assert abs(np.dot(rhot, H0) - np.dot(rho0, Ht)) < 1e-12 * np.dot(np.abs(rho0), np.abs(Ht))
    assert abs(np.dot(rho0, Ht) - np.dot(rho0, H0)) > 1e-3  # and the semigroup did act


# ---------------------------------------------------------------------------------------------------------
# Theorem 4, Gaussian density, metrics
# ---------------------------------------------------------------------------------------------------------


def test_heat_form_equals_features_form_1d():
    grid = Grid(CIRCLE, 96)
    feats = AttentionLimitPDE(grid, COSINE, metric=np.array([[2.0]]))
    heat = AttentionLimitPDE(grid, COSINE, metric=np.array([[2.0]]), form="heat")
    H = _h0(grid.points)
    assert rel_l2(heat.apply(H), feats.apply(H)) < 1e-12
    a = feats.solve(_h0, 0.02, method="crank-nicolson").values[-1]
    b = heat.solve(_h0, 0.02, method="crank-nicolson").values[-1]
    assert rel_l2(b, a) < 1e-12


def test_heat_form_equals_features_form_3d():
    torus = Torus([1.0, 1.0, 1.0])
    grid = Grid(torus, 12)
    dens = von_mises(torus, (0.2, 0.5, 0.7), (1.0, 0.5, 2.0))
    metric = np.diag([1.0, 2.0, 0.5])
    feats = AttentionLimitPDE(grid, dens, metric=metric)
    heat = AttentionLimitPDE(grid, dens, metric=metric, form="heat")
    c = grid.coordinates
    H = np.sin(2 * np.pi * c[..., 0]) * np.cos(2 * np.pi * c[..., 2]) + np.cos(2 * np.pi * c[..., 1])
    assert rel_l2(heat.apply(H), feats.apply(H)) < 1e-12
    assert rel_l2(heat.solve(H, 0.01, method="implicit-euler", dt=1e-3).values[-1],
                  feats.solve(H, 0.01, method="implicit-euler", dt=1e-3).values[-1]) < 1e-12


def test_heat_form_refused_in_2d():
    torus = Torus([1.0, 1.0])
    with pytest.raises(ValueError, match="dim != 2"):
        AttentionLimitPDE(Grid(torus, 8), uniform(torus), form="heat")


def test_gaussian_density_decays_linear_feature():
    s = 1.0
    box = Box(-6.0, 6.0)
    grid = Grid(box, 480)
    x = grid.axes[0]
    pde = AttentionLimitPDE(grid, gaussian(0.0, s**2, box))
    t = 0.3
    sol = pde.solve(x, t, method="crank-nicolson", n_snapshots=2)
    inner = np.abs(x) < 2 * s
    exact = x * np.exp(-2 * t / s**2)
    assert np.max(np.abs(sol.values[-1][inner] - exact[inner])) < 1e-3 * np.max(np.abs(exact[inner]))


def test_diagonal_mahalanobis_equals_isotropic_problem_in_scaled_coordinates():
    lengths, m = np.array([1.0, 0.5]), np.array([2.0, 0.5])
    shape = (32, 24)
    x_torus, y_torus = Torus(lengths), Torus(np.sqrt(m) * lengths)
    aniso = AttentionLimitPDE(Grid(x_torus, shape), cosine(x_torus, 0.4, (1, 1)), metric=np.diag(m))
    iso = AttentionLimitPDE(Grid(y_torus, shape), cosine(y_torus, 0.4, (1, 1)))
    c = Grid(x_torus, shape).coordinates
    H = np.sin(2 * np.pi * c[..., 0]) + np.cos(4 * np.pi * c[..., 1] / lengths[1])  # same nodal values in y
    assert rel_l2(aniso.apply(H), iso.apply(H)) < 1e-12
    a = aniso.solve(H, 0.02, method="crank-nicolson").values[-1]
    b = iso.solve(H, 0.02, method="crank-nicolson").values[-1]
    assert rel_l2(a, b) < 1e-11
    assert rel_l2(a, H) > 0.05


def test_full_mahalanobis_mixed_terms_decay_rates():
    torus = Torus([1.0, 1.0])
    grid = Grid(torus, 96)
    M = np.array([[1.0, 0.4], [0.4, 0.7]])
    Minv = np.linalg.inv(M)
    pde = AttentionLimitPDE(grid, uniform(torus), metric=M)
    assert pde._op.has_mixed
    c = grid.coordinates
    t = 0.004
    modes = [np.array([1, 1]), np.array([1, -1])]
    H0 = sum(np.cos(2 * np.pi * (k[0] * c[..., 0] + k[1] * c[..., 1])) for k in modes)
    exact = sum(
        np.cos(2 * np.pi * (k[0] * c[..., 0] + k[1] * c[..., 1])) * np.exp(-4 * np.pi**2 * k @ Minv @ k * t) for k in modes
    )
    sol = pde.solve(H0, t, method="crank-nicolson", n_snapshots=2)
    assert rel_l2(sol.values[-1], exact) < 1e-3
    # without the mixed terms the two modes would decay alike: make sure the test can tell
    diag_only = AttentionLimitPDE(grid, uniform(torus), metric=np.diag(np.diag(M)))
    assert rel_l2(diag_only.solve(H0, t).values[-1], exact) > 1e-2


class ConformalFirstAxis(PseudoMetric):
    """g(x) = diag(c(x_0), 1, ...), c = (1 + 0.3 cos 2 pi x_0)^2: arc length s(x_0) = x_0 + 0.3 sin(2 pi x_0) / 2 pi."""

    is_metric = True
    constant_tensor = None

    def __init__(self, dim: int):
        self.dim = dim

    def tensor(self, points):
        g = np.tile(np.eye(self.dim), (len(points), 1, 1))
        g[:, 0, 0] = (1 + 0.3 * np.cos(2 * np.pi * points[:, 0])) ** 2
        return g


def _arc_length(x0):
    return x0 + 0.3 * np.sin(2 * np.pi * x0) / (2 * np.pi)


@pytest.mark.parametrize("dim", [1, 2])
def test_varying_metric_matches_arc_length_solution(dim):
    # q = sqrt|g| makes p = q / sqrt|g| uniform, so At = d^2/ds^2 (+ d^2/dx_1^2), and cos(2 pi s) decays
    # as exp(-4 pi^2 t) on the circle of g-length 1.
    torus = Torus([1.0] * dim)
    grid = Grid(torus, (256,) + (8,) * (dim - 1))
    dens = cosine(torus, 0.3, (1,) + (0,) * (dim - 1))
    pde = AttentionLimitPDE(grid, dens, metric=ConformalFirstAxis(dim))
    H0 = np.cos(2 * np.pi * _arc_length(grid.coordinates[..., 0]))
    t = 0.01
    sol = pde.solve(H0, t, method="crank-nicolson", n_snapshots=2)
    assert rel_l2(sol.values[-1], H0 * np.exp(-4 * np.pi**2 * t)) < 1e-3


def test_pseudo_metric_is_refused():
    class DotProduct(PseudoMetric):
        is_metric = False

        def tensor(self, points):  # pragma: no cover - must not be called
            raise AssertionError

    with pytest.raises(ValueError, match="not a metric"):
        AttentionLimitPDE(Grid(CIRCLE, 8), COSINE, metric=DotProduct())


# ---------------------------------------------------------------------------------------------------------
# Kernel, matrix, interpolation, input validation
# ---------------------------------------------------------------------------------------------------------

FULL_M3 = np.array([[1.0, 0.3, -0.2], [0.3, 0.8, 0.1], [-0.2, 0.1, 1.2]])


def _cases():
    t1, t2, t3 = Torus(1.0), Torus([1.0, 0.7]), Torus([1.0, 0.8, 1.2])
    b1, b2, b3 = Box(0.0, 1.0), Box([0.0, 0.0], [1.0, 0.7]), Box([0.0, 0.0, 0.0], [1.0, 0.8, 1.2])
    m2 = np.array([[1.0, 0.4], [0.4, 0.7]])
    return [
        ("1d torus features", Grid(t1, 33), cosine(t1, 0.5, 1), None, "features"),
        ("1d box walkers", Grid(b1, 30), gaussian(0.4, 0.1, b1), None, "walkers"),
        ("1d box heat", Grid(b1, 30), gaussian(0.4, 0.1, b1), None, "heat"),
        ("2d torus mixed", Grid(t2, (17, 13)), cosine(t2, 0.4, (1, 1)), m2, "features"),
        ("2d box mixed walkers", Grid(b2, (14, 11)), gaussian((0.5, 0.3), 0.2, b2), m2, "walkers"),
        ("2d varying", Grid(t2, (16, 12)), cosine(t2, 0.3, (1, 0)), ConformalFirstAxis(2), "features"),
        ("3d torus mixed", Grid(t3, (9, 8, 7)), von_mises(t3, 0.3, 1.0), FULL_M3, "features"),
        ("3d box mixed heat", Grid(b3, (8, 7, 6)), gaussian((0.5, 0.4, 0.6), 0.3, b3), FULL_M3, "heat"),
        ("3d box diagonal", Grid(b3, (8, 7, 6)), gaussian((0.5, 0.4, 0.6), 0.3, b3), np.diag([1.0, 2.0, 0.5]), "features"),
    ]


@pytest.mark.parametrize("name, grid, dens, metric, form", _cases(), ids=[c[0] for c in _cases()])
def test_numba_kernel_matrix_and_reference_agree(name, grid, dens, metric, form):
    pde = AttentionLimitPDE(grid, dens, metric=metric, form=form)
    op = pde._op
    u = np.random.default_rng(3).standard_normal(grid.size)
    fast = op.apply(u).ravel()
    ref = op.apply(u, reference=True).ravel()
    scale = np.max(np.abs(ref))
    assert np.max(np.abs(fast - ref)) < 3e-15 * scale  # reaches 2.6e-16
    assert np.max(np.abs(op.matrix() @ u - ref)) < 4e-15 * scale  # reaches 3.4e-16
    np.testing.assert_allclose(op.diagonal(), op.matrix().diagonal(), rtol=4e-15)  # reaches 3.8e-16
    # conservation structure: the fluxes telescope, so sum(D u) = 0 (weights 1/cout, cin folded in)
    assert abs(np.sum(fast / op.cout.ravel())) < 5e-16 * np.sum(np.abs(fast / op.cout.ravel()))  # reaches 4.0e-17
    # one fused explicit step equals the reference update
    out = np.empty(op.shape3)
    s = u.reshape(op.shape3)
    op.euler_step(s, out, 1e-4)
    np.testing.assert_allclose(out.ravel(), u + 1e-4 * ref, rtol=0, atol=2e-15 * np.max(np.abs(u)))  # reaches 1.4e-16 * max|u|


# Multi-step (temporal blocking) kernel: k fused steps equal k single steps and k NumPy-reference steps


def _fused_cases():
    t1, t2, t3 = Torus(1.0), Torus([1.0, 0.7]), Torus([1.0, 0.8, 1.2])
    b1, b2, b3 = Box(0.0, 1.0), Box([0.0, 0.0], [1.0, 0.7]), Box([0.0, 0.0, 0.0], [1.0, 0.8, 1.2])
    return [
        ("1d torus", Grid(t1, 33), cosine(t1, 0.5, 1), None),
        ("1d box", Grid(b1, 30), gaussian(0.4, 0.1, b1), None),
        ("2d torus", Grid(t2, (17, 13)), cosine(t2, 0.4, (1, 1)), None),
        ("2d box diagonal", Grid(b2, (14, 11)), gaussian((0.5, 0.3), 0.2, b2), np.diag([1.0, 0.6])),
        ("2d torus tiny", Grid(t2, (3, 4)), cosine(t2, 0.4, (1, 1)), None),
        ("3d torus diagonal", Grid(t3, (9, 8, 7)), von_mises(t3, 0.3, 1.0), np.diag([1.0, 2.0, 0.5])),
        ("3d box", Grid(b3, (8, 7, 6)), gaussian((0.5, 0.4, 0.6), 0.3, b3), None),
    ]


@contextmanager
def numba_threads(n: int):
    before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        numba.set_num_threads(before)


@pytest.mark.parametrize("name, grid, dens, metric", _fused_cases(), ids=[c[0] for c in _fused_cases()])
def test_fused_steps_equal_single_steps_and_reference(name, grid, dens, metric):
    from continuum_attention.pde._kernels import advance_numba, repeat_2d, repeat_2d_parallel, repeat_numba

    pde = AttentionLimitPDE(grid, dens, metric=metric)
    op = pde._op
    assert op.can_fuse_steps
    dt = pde.max_stable_dt()  # at the limit: the most sensitive to any difference
    u = np.random.default_rng(7).standard_normal(op.shape3)
    for k in (2, 3, 5):
        single = u
        for _ in range(k):
            single = op.euler_step(single, np.empty(op.shape3), dt)
        ref = op.euler_steps(u, np.empty(op.shape3), dt, k, reference=True)
        fused = op.euler_steps(u, np.empty(op.shape3), dt, k)
        scale = np.max(np.abs(ref))
        assert np.max(np.abs(fused - single)) <= 1e-12 * scale, (name, k)
        assert np.max(np.abs(fused - ref)) <= 1e-12 * scale, (name, k)
        # the kernel directly: more blocks than threads (halos at every block edge), and a 2-D grid also in
        # its plain (1, n1, n2) layout (in-plane axis-1 path instead of rows as planes)
        layouts = [(op._fused_layout(u).shape, *op._fused_args()), (op.shape3, op.coef[0], op.inv_h, op.unit, op.wrap)]
        for layout, s, inv_h, unit, wrap in layouts:
            out = np.empty(layout)
            advance_numba(u.reshape(layout), out, s.reshape(layout), inv_h, unit, wrap, dt, k, 3)
            assert np.max(np.abs(out.reshape(op.shape3) - ref)) <= 1e-12 * scale, (name, k, layout)
        # the in-cache kernels (single passes looped inside one call): bitwise the single steps, the 2-D ones
        # (rows inlined; one thread, and the rows split between threads) as well
        kernels = [(repeat_numba, 2)]
        if op.shape3[0] == 1 and min(op.shape3[1:]) > 1:
            kernels += [(repeat_2d, 1), (repeat_2d_parallel, 1), (repeat_2d_parallel, 2)]
        for kernel, threads in kernels:
            out, spare = np.empty(op.shape3), np.empty(op.shape3)
            with numba_threads(threads):
                kernel(u, out, spare, op.coef[0], op.inv_h, op.unit, op.wrap, dt, k)
            np.testing.assert_array_equal(out, single)


def test_2d_in_cache_kernel_goes_parallel_from_its_threshold():
    from continuum_attention.pde import _kernels, operators

    assert operators.PARALLEL_2D_MIN_NODES == 128 * 128 < operators.PARALLEL_MIN_NODES
    t2 = Torus([1.0, 1.0])
    before = numba.get_num_threads()
    for shape, kernel in (((128, 128), _kernels.repeat_2d_parallel), ((127, 129), _kernels.repeat_2d),
                          ((8, 8, 8), _kernels.repeat_numba)):
        domain = t2 if len(shape) == 2 else Torus([1.0] * 3)
        op = AttentionLimitPDE(Grid(domain, shape), cosine(domain, 0.4, (1,) * len(shape)))._op
        assert op.in_cache and op._repeat_kernel() is kernel, shape
        with op.threads():  # just inside the threshold keeps every thread, just outside runs on one
            assert numba.get_num_threads() == (before if shape == (128, 128) else 1), shape
    # a 2-D grid that runs on fused (temporal-blocking) passes keeps the general threshold
    op = AttentionLimitPDE(Grid(t2, (128, 128)), cosine(t2, 0.4, (1, 1)), form="walkers")._op
    with op.threads():
        assert numba.get_num_threads() == 1


def test_fused_steps_fall_back_where_they_do_not_apply():
    t2 = Torus([1.0, 0.7])
    grid, dens = Grid(t2, (12, 10)), cosine(t2, 0.4, (1, 1))
    for kwargs in ({"metric": np.array([[1.0, 0.4], [0.4, 0.7]])}, {"form": "walkers"}):
        pde = AttentionLimitPDE(grid, dens, **kwargs)
        op = pde._op
        assert not op.can_fuse_steps
        u = np.random.default_rng(8).random(op.shape3) + 0.5
        single = u
        for _ in range(3):
            single = op.euler_step(single, np.empty(op.shape3), 1e-4)
        np.testing.assert_array_equal(op.euler_steps(u, np.empty(op.shape3), 1e-4, 3), single)
        with pytest.raises(ValueError, match="can_fuse_steps"):
            op.euler_steps(u, np.empty(op.shape3), 1e-4, 3, reference=True)


@pytest.mark.parametrize("in_cache", [False, True], ids=["fused", "in-cache"])
@pytest.mark.parametrize("domain", [Torus([1.0, 0.7]), Box([0.0, 0.0], [1.0, 0.7])], ids=["torus", "box"])
def test_explicit_solve_uses_fused_steps_and_keeps_snapshot_times(domain, in_cache, monkeypatch):
    from continuum_attention.pde import operators

    if not in_cache:  # pretend the grid outgrows the cache: temporal blocking, groups of fused_steps()
        monkeypatch.setattr(operators, "IN_CACHE_BYTES", 0)
    grid = Grid(domain, (16, 12))
    dens = cosine(domain, 0.4, (1, 1)) if isinstance(domain, Torus) else gaussian((0.5, 0.3), 0.3, domain)
    pde = AttentionLimitPDE(grid, dens)
    op = pde._op
    assert op.in_cache == in_cache
    calls = []
    fused = type(op).euler_steps
    monkeypatch.setattr(type(op), "euler_steps", lambda self, *a, **k: calls.append(a[3]) or fused(self, *a, **k))
    sol = pde.solve(_h0_2d, 0.004, method="explicit", n_snapshots=3)
    group = op.steps_per_call()
    n_sub = sol.n_steps // 2
    if in_cache:  # every snapshot interval in one call
        assert group == operators.IN_CACHE_STEPS_PER_CALL > n_sub > 1 and calls == [n_sub] * 2
    else:
        assert group == op.fused_steps() and n_sub % group not in (0, 1)  # a remainder group is exercised
        assert calls == ([group] * (n_sub // group) + [n_sub % group]) * 2
    # same snapshots as the single-step loop
    u = np.ascontiguousarray(pde._as_grid_array(_h0_2d, "H0")).reshape(op.shape3)
    expected = [u]
    for _ in range(2):
        for _ in range(n_sub):
            u = op.euler_step(u, np.empty(op.shape3), sol.dt)
        expected.append(u)
    np.testing.assert_allclose(sol.times, [0.0, 0.002, 0.004], rtol=1e-15)  # reaches exact
    scale = np.max(np.abs(expected[0]))
    for got, want in zip(sol.values, expected):
        assert np.max(np.abs(got - want.reshape(grid.shape))) <= 1e-12 * scale


def _h0_2d(x):
    return np.sin(2 * np.pi * x[:, 0]) * np.cos(2 * np.pi * x[:, 1] / 0.7) + x[:, 0]


def test_interpolation_is_periodic_and_cubic_accurate():
    grid = Grid(CIRCLE, 64)
    f = lambda x: np.sin(2 * np.pi * x) + 0.3 * np.cos(6 * np.pi * x)  # noqa: E731
    sol = PDESolution(np.array([0.0]), f(grid.axes[0])[None], grid, "features")
    pts = np.concatenate([np.random.default_rng(0).random(200), [0.0, 0.9999, 1.0]])
    assert np.max(np.abs(sol.interpolate(pts) - f(pts))) < 1e-5
    box = Box(0.0, 2.0)
    bgrid = Grid(box, 64)
    g = lambda x: np.cos(np.pi * x) + 0.2 * np.cos(2 * np.pi * x)  # noqa: E731 -- zero slope at the walls
    bsol = PDESolution(np.array([0.0]), g(bgrid.axes[0])[None], bgrid, "features")
    bpts = np.concatenate([np.linspace(0.0, 2.0, 101), [1e-4, 2.0 - 1e-4]])
    assert np.max(np.abs(bsol.interpolate(bpts) - g(bpts))) < 1e-5
    with pytest.raises(ValueError, match="points"):
        bsol.interpolate([2.5])


def test_explicit_default_step_is_stable_and_reported(caplog):
    grid = Grid(CIRCLE, 50)
    pde = AttentionLimitPDE(grid, COSINE)
    with caplog.at_level(logging.INFO, logger="continuum_attention.pde.solver"):
        sol = pde.solve(_h0, 0.01, method="explicit")
    assert "dt=None" in caplog.text
    assert sol.dt <= pde.max_stable_dt()
    assert sol.n_steps * sol.dt == pytest.approx(0.01)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"t_final": 0.0}, "t_final"),
        ({"t_final": -1.0}, "t_final"),
        ({"t_final": np.nan}, "t_final"),
        ({"dt": 0.0}, "dt"),
        ({"dt": -1e-3}, "dt"),
        ({"method": "rk4"}, "method"),
        ({"n_snapshots": 1}, "n_snapshots"),
        ({"H0": np.full(20, np.nan)}, "H0"),
        ({"H0": np.ones(21)}, "H0"),
        ({"H0": lambda p: np.ones(3)}, "H0"),
        ({"method": "explicit", "dt": 1.0}, r"dt=1 exceeds the explicit stability limit"),
    ],
)
def test_bad_solve_input_raises_naming_parameter(kwargs, match):
    pde = AttentionLimitPDE(Grid(CIRCLE, 20), COSINE)
    args = {"H0": _h0, "t_final": 0.01, **kwargs}
    with pytest.raises(ValueError, match=match):
        pde.solve(args.pop("H0"), args.pop("t_final"), **args)


def test_bad_construction_raises_naming_parameter():
    grid = Grid(CIRCLE, 20)
    with pytest.raises(ValueError, match="form"):
        AttentionLimitPDE(grid, COSINE, form="tokens")
    with pytest.raises(ValueError, match="metric"):
        AttentionLimitPDE(grid, COSINE, metric=np.array([[-1.0]]))
    with pytest.raises(ValueError, match="metric"):
        AttentionLimitPDE(grid, COSINE, metric=np.eye(2))
    torus2 = Torus([1.0, 1.0])
    with pytest.raises(ValueError, match="symmetric"):
        AttentionLimitPDE(Grid(torus2, 8), uniform(torus2), metric=np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="dimension"):
        AttentionLimitPDE(Grid(torus2, 8), COSINE)


def test_exact_refuses_big_grids():
    torus = Torus([1.0, 1.0])
    pde = AttentionLimitPDE(Grid(torus, 160), uniform(torus))
    with pytest.raises(ValueError, match="exact"):
        pde.solve(np.zeros((160, 160)), 0.01, method="exact")


def test_attention_operator_at_nodes_for_any_form():
    # At H at the nodes: for H = sin(2 pi x) and p = 1 + a cos(2 pi x), At H = H'' + 2 (log p)' H'.
    grid = Grid(CIRCLE, 256)
    x = grid.axes[0]
    a = 0.5
    exact = -4 * np.pi**2 * np.sin(2 * np.pi * x) + 2 * (-2 * np.pi * a * np.sin(2 * np.pi * x)) / (
        1 + a * np.cos(2 * np.pi * x)
    ) * 2 * np.pi * np.cos(2 * np.pi * x)
    for form in ("features", "walkers", "heat"):
        At = AttentionLimitPDE(grid, COSINE, form=form).attention_operator(lambda p: np.sin(2 * np.pi * p[:, 0]))
        assert rel_l2(At, exact) < 1e-3


def test_flux_matrix_is_symmetric_for_any_metric_and_density():
    """D = W L is symmetric (the features operator is self-adjoint in the p^2-weighted inner product), also
    with mixed metric terms and a non-uniform density, on a torus and on boxes in 2-D and 3-D."""
    full = np.array([[1.0, 0.5], [0.5, 1.5]])
    box2, box3 = Box([-1.0, -1.0], [1.0, 1.0]), Box([-1.0] * 3, [1.0] * 3)
    torus = Torus([1.0, 1.0])
    cases = [
        (Grid(torus, 16), cosine(torus, 0.5, (1, 0)), full),
        (Grid(torus, 16), cosine(torus, 0.5, (1, 1)), np.diag([1.0, 2.0])),
        (Grid(box2, (12, 14)), gaussian([0.2, 0.0], [[0.5, 0.1], [0.1, 0.4]], box2), full),
        (Grid(box3, 8), gaussian([0.0, 0.0, 0.0], 0.5, box3), np.array([[1, 0.3, 0.2], [0.3, 1.2, 0.1], [0.2, 0.1, 0.9]])),
    ]
    for grid, dens, metric in cases:
        for form in ("features", "walkers"):
            pde = AttentionLimitPDE(grid, dens, metric=metric, form=form)
            L = pde.matrix()
            D = (sp.diags(pde.weights.ravel()) @ L if form == "features" else L @ sp.diags(pde.weights.ravel())).toarray()
            assert np.abs(D - D.T).max() < 1e-13 * np.abs(D).max(), (grid, form)
