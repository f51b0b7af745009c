"""Tests for continuum_attention.analytic: closed forms checked against their PDEs and against quadrature."""

import math

import numpy as np
import pytest
from scipy import integrate

from continuum_attention import analytic as an

# Gauss-Legendre nodes on [-1, 1], computed once (leggauss is slow for many nodes)
GL_Z, GL_W = np.polynomial.legendre.leggauss(256)


# ---------------------------------------------------------------------------------------------
# finite-difference helpers (4th order)
# ---------------------------------------------------------------------------------------------
def d1(f, x, h):
    return (-f(x + 2 * h) + 8 * f(x + h) - 8 * f(x - h) + f(x - 2 * h)) / (12 * h)


def d2(f, x, h):
    return (-f(x + 2 * h) + 16 * f(x + h) - 30 * f(x) + 16 * f(x - h) - f(x - 2 * h)) / (12 * h * h)


# ---------------------------------------------------------------------------------------------
# heat kernels
# ---------------------------------------------------------------------------------------------
def test_free_heat_kernel_values_and_normalisation():
    # 2-D: (4 pi t)^-1 exp(-r^2 / 4t)
    x = np.array([[0.3, -0.2], [1.0, 2.0]])
    y = np.array([0.1, 0.4])
    t = 0.7
    r2 = np.sum((x - y) ** 2, axis=1)
    np.testing.assert_allclose(an.free_heat_kernel(x, y, t), np.exp(-r2 / (4 * t)) / (4 * np.pi * t), rtol=1e-15)  # reaches exact; 1e-15 is the round-off floor
    # 1-D positions with dim=1 broadcast to a matrix and integrate to 1 (variance 2t)
    xs = np.linspace(-20, 20, 4001)
    K = an.free_heat_kernel(xs[:, None], np.array([0.0, 1.5])[None, :], 0.9, dim=1)
    assert K.shape == (4001, 2)
    np.testing.assert_allclose(np.trapezoid(K, xs, axis=0), 1.0, rtol=2e-15)  # reaches exact
    np.testing.assert_allclose(np.trapezoid(xs[:, None] ** 2 * K[:, :1], xs, axis=0), 2 * 0.9, rtol=2e-15)  # reaches exact
    # heat equation in 3-D: dK/dt = Laplacian K
    y3 = np.array([0.2, -0.1, 0.3])
    x3 = np.array([0.5, 0.4, -0.2])
    t0, h = 0.3, 1e-2
    lap = sum(d2(lambda s, i=i: an.free_heat_kernel(x3 + s * np.eye(3)[i], y3, t0), 0.0, h) for i in range(3))
    dt = d1(lambda s: an.free_heat_kernel(x3, y3, t0 + s), 0.0, 1e-3)
    np.testing.assert_allclose(dt, lap, rtol=1e-8)  # reaches 1.0e-9 (FD truncation)


def test_free_heat_kernel_ambiguous_shapes_refused():
    with pytest.raises(ValueError, match="dim"):
        an.free_heat_kernel(np.zeros(3), 0.0, 1.0)
    with pytest.raises(ValueError, match="dimension"):
        an.free_heat_kernel(np.zeros((4, 2)), np.zeros(3), 1.0)


@pytest.mark.parametrize("L", [1.0, 2.5])
@pytest.mark.parametrize("t", [0.01, 0.05, 0.1, 0.3])
def test_wrapped_gaussian_equals_fourier(L, t):
    x = np.linspace(0, L, 41)
    y = 0.3 * L
    wg = an.wrapped_gaussian(x, y, t * L**2, L, n_images=40)
    fs = an.periodic_heat_kernel_fourier(x, y, t * L**2, L, n_terms=200)
    np.testing.assert_allclose(wg, fs, rtol=2e-13, atol=0)  # reaches 1.7e-14
    # default truncations agree too, and the automatic choice equals both
    np.testing.assert_allclose(an.wrapped_gaussian(x, y, t * L**2, L), wg, rtol=1e-15)  # reaches exact
    np.testing.assert_allclose(an.periodic_heat_kernel_fourier(x, y, t * L**2, L), fs, rtol=1e-15)  # reaches exact
    np.testing.assert_allclose(an.periodic_heat_kernel(x, y, t * L**2, L), wg, rtol=4e-15)  # reaches 3.5e-16


def test_periodic_kernel_auto_is_accurate_at_extreme_times():
    L = 1.0
    x = np.linspace(0, 1, 101)
    # tiny t: the Fourier series with few terms would be wrong; auto must equal the image sum,
    # whose leading term is the free kernel
    t = 1e-4
    auto = an.periodic_heat_kernel(x, 0.5, t, L)
    free = an.free_heat_kernel(x, 0.5, t, dim=1)
    near = np.abs(x - 0.5) <= 0.25  # images negligible there (exp(-L^2/(8t)) relative)
    # rtol 2e-13 (reaches 1.4e-14): exp(-u^2/4t) with u^2/4t up to 156 carries ~156 * 1e-16 relative rounding
    np.testing.assert_allclose(auto[near], free[near], rtol=2e-13)
    # at the antipode the nearest image is as close as the source: exactly twice the free kernel
    assert auto[0] == pytest.approx(2 * free[0], rel=1e-12)
    # large t: equals the series, close to 1/L
    t = 5.0
    auto = an.periodic_heat_kernel(x, 0.5, t, L)
    np.testing.assert_allclose(auto, an.periodic_heat_kernel_fourier(x, 0.5, t, L, n_terms=3), rtol=1e-15)  # reaches exact
    np.testing.assert_allclose(auto, 1.0 + 2 * np.exp(-4 * np.pi**2 * t) * np.cos(2 * np.pi * (x - 0.5)), rtol=1e-15)  # reaches exact
    # array t mixing both regimes, with (M, d) points on a 2-D torus
    lengths = [1.0, 2.0]
    pts = np.array([[0.1, 0.2], [0.9, 1.9], [0.5, 1.0]])
    ts = np.array([1e-3, 0.05, 3.0])
    auto = an.periodic_heat_kernel(pts, [0.2, 0.3], ts, lengths)
    ref = an.wrapped_gaussian(pts, [0.2, 0.3], ts, lengths, n_images=30)
    np.testing.assert_allclose(auto, ref, rtol=1e-15)  # reaches exact


def test_periodic_and_neumann_auto_reach_1e14_relative_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40

    def wrapped_ref(u, t, L):
        u, t, L = mpmath.mpf(u), mpmath.mpf(t), mpmath.mpf(L)
        n = int(mpmath.ceil(mpmath.sqrt(400 * t) / L)) + 3
        return sum(mpmath.exp(-((u + k * L) ** 2) / (4 * t)) for k in range(-n, n + 1)) / mpmath.sqrt(4 * mpmath.pi * t)

    L = 1.3
    u = np.array([0.0, 0.17, 0.4, 0.6, 0.65])  # 0.65 = L/2: the antipode, where the kernel is smallest
    # tau = 4 pi^2 t / L^2 from 0.01 to 20, straddling the switch between images and series
    for tau in (0.01, 0.3, 1.0, 1.9, 2.1, 3.0, 20.0):
        t = tau * L**2 / (4 * np.pi**2)
        got = an.periodic_heat_kernel(u, 0.0, t, L)
        ref = np.array([float(wrapped_ref(ui, t, L)) for ui in u])
        np.testing.assert_allclose(got, ref, rtol=2e-14, err_msg=f"tau={tau}")
        # Neumann on [0, L/2]: sum of two periodic kernels of period L
        a, b = 0.0, L / 2
        xs = np.array([0.0, 0.1, 0.3, 0.65])
        y = 0.2
        gotn = an.neumann_heat_kernel(xs, y, t, a, b)
        refn = np.array([float(wrapped_ref(xi - y, t, L) + wrapped_ref(xi + y, t, L)) for xi in xs])
        np.testing.assert_allclose(gotn, refn, rtol=2e-14, err_msg=f"tau={tau}")


def test_periodic_kernel_integrates_to_one_and_solves_heat_equation():
    lengths = [1.0, 2.0]
    n1, n2 = 64, 128
    g1 = np.arange(n1) / n1
    g2 = 2.0 * np.arange(n2) / n2
    X = np.stack(np.meshgrid(g1, g2, indexing="ij"), axis=-1)
    for t in (0.002, 0.05, 1.0):
        K = an.periodic_heat_kernel(X, [0.3, 1.7], t, lengths)
        # periodic trapezoid is spectrally accurate
        np.testing.assert_allclose(K.sum() * (1 / n1) * (2 / n2), 1.0, rtol=1e-15)  # reaches 1.1e-16
    x0, y0, t0, h = np.array([0.41, 0.77]), np.array([0.3, 1.7]), 0.02, 1e-3
    lap = sum(
        d2(lambda s, i=i: an.periodic_heat_kernel(x0 + s * np.eye(2)[i], y0, t0, lengths), 0.0, h) for i in range(2)
    )
    dt = d1(lambda s: an.periodic_heat_kernel(x0, y0, t0 + s, lengths), 0.0, 1e-4)
    np.testing.assert_allclose(dt, lap, rtol=1e-7)  # reaches 9.6e-9


@pytest.mark.parametrize("t", [0.003, 0.05, 0.4, 2.0])
def test_neumann_kernel(t):
    a, b = -0.5, 1.5
    y = 0.9
    # images and cosine series agree
    x = np.linspace(a, b, 81)
    img = an.neumann_heat_kernel(x, y, t, a, b, method="images")
    ser = an.neumann_heat_kernel(x, y, t, a, b, method="series")
    # (at small t the series cancels where the kernel is tiny: compare relative to its maximum there)
    np.testing.assert_allclose(img, ser, rtol=1e-12, atol=1e-14 * img.max() if t < 0.05 else 0.0)
    # integrates to 1 (Gauss-Legendre on [a, b])
    z, w = GL_Z, GL_W
    xq = a + (b - a) * (z + 1) / 2
    total = np.sum(w * an.neumann_heat_kernel(xq, y, t, a, b)) * (b - a) / 2
    assert abs(total - 1.0) < 1e-12
    # zero flux at both ends (analytic symmetry: FD across the wall), but not in the interior
    h = 1e-3
    K = lambda s: an.neumann_heat_kernel(s, y, t, a, b)  # noqa: E731
    scale = an.neumann_heat_kernel(y, y, t, a, b) / math.sqrt(t)
    assert abs(d1(K, a, h)) < 1e-9 * scale
    assert abs(d1(K, b, h)) < 1e-9 * scale
    # one-sided second-order difference inside the interval is small too
    assert abs((-3 * K(b) + 4 * K(b - h) - K(b - 2 * h)) / (2 * h)) < 1e-4 * scale / math.sqrt(t)
    # heat equation
    x0, hx = 0.2, 1e-3 * math.sqrt(t)
    dt = d1(lambda s: an.neumann_heat_kernel(x0, y, t + s, a, b), 0.0, 1e-3 * t)
    np.testing.assert_allclose(dt, d2(K, x0, hx), rtol=1e-7, atol=5e-11 * scale / t)  # reaches 6e-3 of this (t=2; FD round-off ~1e-10)


@pytest.mark.parametrize("t", [0.003, 0.05, 0.4, 2.0])
def test_dirichlet_kernel(t):
    a, b = 0.0, 2.0
    y = 0.7
    x = np.linspace(a, b, 81)
    img = an.dirichlet_heat_kernel(x, y, t, a, b, method="images")
    ser = an.dirichlet_heat_kernel(x, y, t, a, b, method="series")
    kmax = np.max(np.abs(ser))
    np.testing.assert_allclose(img, ser, rtol=0, atol=1e-13 * kmax)
    # zero at the ends
    ends = an.dirichlet_heat_kernel(np.array([a, b]), y, t, a, b)
    assert np.all(np.abs(ends) < 1e-14 * kmax)
    # the mass decays: int K dx < 1, and equals the sine-series value
    z, w = GL_Z, GL_W
    xq = a + (b - a) * (z + 1) / 2
    mass = np.sum(w * an.dirichlet_heat_kernel(xq, y, t, a, b)) * (b - a) / 2
    m = np.arange(1, 400)
    series_mass = np.sum(4 / (np.pi * m) * np.sin(np.pi * m * y / 2) * np.exp(-(np.pi * m / 2) ** 2 * t) * (m % 2 == 1))
    assert mass < 1.0 + 1e-13
    assert abs(mass - series_mass) < 1e-6
    # heat equation
    K = lambda s: an.dirichlet_heat_kernel(s, y, t, a, b)  # noqa: E731
    x0 = 0.55
    dt = d1(lambda s: an.dirichlet_heat_kernel(x0, y, t + s, a, b), 0.0, 1e-3 * t)
    np.testing.assert_allclose(dt, d2(K, x0, 1e-3 * math.sqrt(t)), rtol=1e-8, atol=5e-12 * kmax / t)  # reaches 0.016 of this (t=0.05): kept ~5x above the FD round-off 3 ulp / h^2 ~ 1.4e-8


def test_box_kernels_are_tensor_products():
    lo, up = [0.0, -1.0], [1.0, 2.0]
    x = np.array([[0.2, 0.5], [0.9, -0.8]])
    y = np.array([0.6, 1.1])
    t = 0.07
    for fn in (an.neumann_heat_kernel, an.dirichlet_heat_kernel):
        prod = fn(x[:, 0], y[0], t, 0.0, 1.0) * fn(x[:, 1], y[1], t, -1.0, 2.0)
        np.testing.assert_allclose(fn(x, y, t, lo, up), prod, rtol=1e-15)  # reaches exact


# ---------------------------------------------------------------------------------------------
# uniform density: modes
# ---------------------------------------------------------------------------------------------
def test_fourier_modes_decay_rates_and_heat_equation():
    lengths = [1.0, 2.0]
    k = [1, 3]
    t = 0.01
    rate = 4 * np.pi**2 * (1.0 + 9 / 4.0)
    assert an.fourier_decay_rate(k, lengths) == pytest.approx(rate, rel=1e-15)
    x = np.array([[0.1, 0.3], [0.7, 1.9]])
    expect = np.cos(2 * np.pi * (x[:, 0] * 1 + x[:, 1] * 3 / 2)) * np.exp(-rate * t)
    np.testing.assert_allclose(an.fourier_mode_solution(x, k, lengths, t), expect, rtol=1e-15)  # reaches exact
    # Mahalanobis metric: Delta_g = tr(M^-1 Hess); check the PDE by finite differences
    M = np.array([[2.0, 0.5], [0.5, 1.0]])
    Minv = np.linalg.inv(M)
    f = lambda p, tt: an.fourier_mode_solution(p, k, lengths, tt, kind="sin", metric=M)  # noqa: E731
    via_inverse = an.fourier_mode_solution(x, k, lengths, t, kind="sin", metric_inverse=Minv)
    np.testing.assert_allclose(f(x, t), via_inverse, rtol=1e-15)  # reaches exact
    p0, h = np.array([0.23, 0.61]), 2e-4
    e = np.eye(2)
    hess = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            pp, pm = f(p0 + h * e[i] + h * e[j], t), f(p0 + h * e[i] - h * e[j], t)
            mp, mm = f(p0 - h * e[i] + h * e[j], t), f(p0 - h * e[i] - h * e[j], t)
            hess[i, j] = (pp - pm - mp + mm) / (4 * h * h)
    lap_g = np.trace(Minv @ hess)
    dt = d1(lambda s: f(p0, t + s), 0.0, 1e-4)
    np.testing.assert_allclose(dt, lap_g, rtol=1e-5)
    # superposition via heat_solution_fourier; t = 0 gives H0
    wv = np.array([[1, 0], [0, 2], [2, 1]])
    c = np.array([0.5, -1.0, 2.0])
    kinds = ["cos", "sin", "cos"]
    vals = an.heat_solution_fourier(c, wv, lengths, t, x, kinds=kinds)
    ref = sum(cj * an.fourier_mode_solution(x, kj, lengths, t, kind=kd) for cj, kj, kd in zip(c, wv, kinds))
    np.testing.assert_allclose(vals, ref, rtol=1e-15)  # reaches exact
    np.testing.assert_array_equal(an.heat_solution_fourier(c, wv, lengths, 0.0), c)  # exact by construction: c * exp(-0)
    # the periodic heat kernel propagates a mode the same way (convolution by quadrature)
    n = 256
    g = np.arange(n) / n
    K = an.periodic_heat_kernel(g[:, None], g[None, :], t, 1.0)
    H0 = np.cos(2 * np.pi * 3 * g)
    np.testing.assert_allclose(K @ H0 / n, an.fourier_mode_solution(g, 3, 1.0, t), rtol=0, atol=2e-15)  # reaches 1.6e-16


def test_neumann_cosine_solution():
    a, b, m, t = -1.0, 2.0, 2, 0.05
    f = lambda x, tt=t: an.neumann_cosine_solution(x, m, a, b, tt)  # noqa: E731
    lam = (np.pi * m / (b - a)) ** 2
    x = np.linspace(a, b, 7)
    np.testing.assert_allclose(f(x), np.cos(np.pi * m * (x - a) / (b - a)) * np.exp(-lam * t), rtol=1e-14)
    assert abs(d1(f, a, 1e-3)) < 1e-10 and abs(d1(f, b, 1e-3)) < 1e-10
    x0 = 0.37
    np.testing.assert_allclose(d1(lambda s: f(x0, t + s), 0.0, 1e-4), d2(f, x0, 1e-3), rtol=1e-9)  # reaches 4.4e-12 (round-off only; random ulps in f give ~1e-10 via 3 ulp / h^2)
    # the Neumann kernel propagates it: int K(x, y, t) cos(...)(y) dy
    z, w = GL_Z, GL_W
    yq = a + (b - a) * (z + 1) / 2
    K = an.neumann_heat_kernel(x[:, None], yq[None, :], t, a, b)
    np.testing.assert_allclose(K @ (w * f(yq, 0.0)) * (b - a) / 2, f(x), rtol=0, atol=1e-14)  # reaches 8.9e-16
    # a box
    v = an.neumann_cosine_solution(np.array([[0.1, 0.2]]), [1, 2], [0, 0], [1, 2], 0.01)
    assert v[0] == pytest.approx(np.cos(np.pi * 0.1) * np.cos(np.pi * 0.2) * np.exp(-2 * np.pi**2 * 0.01), rel=1e-14)


# ---------------------------------------------------------------------------------------------
# Gaussian density: Ornstein-Uhlenbeck
# ---------------------------------------------------------------------------------------------
def At(f, x, s, h=1e-3):
    """At f = f'' - (2x/s^2) f' by finite differences."""
    return d2(f, x, h) - 2 * x / s**2 * d1(f, x, h)


@pytest.mark.parametrize("s", [0.7, 1.0, 2.3])
def test_hermite_eigenfunctions(s):
    x = np.linspace(-2 * s, 2 * s, 9)
    for n in range(6):
        phi = lambda z, n=n: an.hermite_eigenfunction(z, n, s)  # noqa: E731
        lam = an.ou_eigenvalue(n, s)
        assert lam == pytest.approx(-2 * n / s**2)
        # exact polynomial derivatives (He_n in z = sqrt(2) x / s)
        c = np.zeros(n + 1)
        c[n] = 1.0
        He = np.polynomial.HermiteE(c)
        z = np.sqrt(2) * x / s
        At_exact = (2 / s**2) * He.deriv(2)(z) - (2 * x / s**2) * (np.sqrt(2) / s) * He.deriv(1)(z)
        scale = 1 + np.max(np.abs(phi(x)))
        np.testing.assert_allclose(At_exact, lam * phi(x), rtol=0, atol=3e-15 * scale * (1 + abs(lam)))  # reaches 3.1e-16 * scale * (1 + |lam|)
        # finite differences
        np.testing.assert_allclose(At(phi, x, s, h=1e-2 * s), lam * phi(x), rtol=0, atol=4e-8 * scale * (1 + abs(lam)))  # reaches 3.9e-9 * ...
    # the scaling matters: He_n(x / s) is NOT an eigenfunction
    wrong = lambda z: np.polynomial.hermite_e.hermeval(z / s, [0, 0, 1])  # noqa: E731
    assert np.max(np.abs(At(wrong, x, s) - an.ou_eigenvalue(2, s) * wrong(x))) > 1e-2


def test_ou_solutions():
    s = 1.3
    x = np.linspace(-3, 3, 13)
    t = 0.4
    # linear: H = x exp(-2t/s^2) solves dH/dt = At H
    u = lambda z, tt=t: an.ou_linear_solution(z, tt, s)  # noqa: E731
    np.testing.assert_allclose(d1(lambda e: u(x, t + e), 0.0, 1e-3), At(u, x, s), rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(u(x), x * np.exp(-2 * t / s**2))  # exact by construction: the same operations
    # Hermite expansion: project H0 = x^3 + sin(x) and evolve
    H0 = lambda z: z**3 + np.sin(z)  # noqa: E731
    c = an.hermite_coefficients(H0, s, 40)
    np.testing.assert_allclose(an.ou_solution_from_hermite(c, x, 0.0, s), H0(x), rtol=2e-14, atol=2e-14)  # reaches 2.5e-14 absolute on values up to 27
    w = lambda z, tt=t: an.ou_solution_from_hermite(c, z, tt, s)  # noqa: E731
    np.testing.assert_allclose(d1(lambda e: w(x, t + e), 0.0, 1e-3), At(w, x, s), rtol=2e-8, atol=2e-10)  # reaches 0.075 of this (9.2e-9 absolute, FD)
    # the transition (Mehler) kernel gives the same solution
    yq, wq = GL_Z, GL_W
    yq, wq = 12 * yq, 12 * wq
    K = an.ou_transition_kernel(x[:, None], yq[None, :], t, s)
    np.testing.assert_allclose(K @ (wq * H0(yq)), w(x), rtol=0, atol=2e-14)  # reaches 1.8e-15
    np.testing.assert_allclose(K @ (wq * yq), u(x), rtol=0, atol=1e-14)  # reaches 8.9e-16
    # p^2-weighted mean is conserved: c_0
    pp = an.walkers_stationary(np.exp(-yq**2 / (2 * s**2)), wq)
    np.testing.assert_allclose(np.sum(wq * pp * w(yq)), c[0], rtol=0, atol=1e-15)  # reaches exact (odd integrand on symmetric nodes)
    np.testing.assert_allclose(np.sum(wq * pp * (H0(yq) + 1.0)), c[0] + 1.0, rtol=1e-15)  # reaches 1.1e-16


# ---------------------------------------------------------------------------------------------
# fixed eps, N -> infinity
# ---------------------------------------------------------------------------------------------
def kernel_expectation(g, x, s, eps, mean=0.0):
    """E[g(y) | x] with weight exp(-(x-y)^2/(2 eps)) N(y; mean, s^2), by adaptive quadrature of the raw integrals."""
    c = (x * s**2 + mean * eps) / (s**2 + eps)  # the weight's peak: only used to place the interval
    logw = lambda y: -((x - y) ** 2) / (2 * eps) - (y - mean) ** 2 / (2 * s**2)  # noqa: E731
    w = lambda y: np.exp(logw(y) - logw(c))  # noqa: E731
    lo, hi = c - 40 * math.sqrt(eps), c + 40 * math.sqrt(eps)
    opts = dict(epsabs=1e-13, epsrel=1e-13, limit=200, points=[c])
    num = integrate.quad(lambda y: g(y) * w(y), lo, hi, **opts)[0]
    den = integrate.quad(w, lo, hi, **opts)[0]
    return num / den


@pytest.mark.parametrize("s,eps,mean", [(1.0, 0.1, 0.0), (0.6, 0.5, 0.3), (2.0, 0.02, -1.0)])
def test_gaussian_fixed_eps_layer_matches_quadrature(s, eps, mean):
    xs = [-1.3, 0.0, 0.45, 2.0]
    T = an.gaussian_kernel_operator(4, s, eps, mean)
    for x in xs:
        mom = an.gaussian_kernel_moments(x, s, eps, 4, mean)
        for k in range(5):
            ref = kernel_expectation(lambda y: y**k, x, s, eps, mean)
            assert abs(mom[k] - ref) < 1e-10 * max(1.0, abs(ref))
            # the matrix gives the same polynomial
            c = np.zeros(5)
            c[k] = 1.0
            assert np.polynomial.polynomial.polyval(x, T @ c) == pytest.approx(mom[k], rel=1e-13, abs=1e-14)
        mu, v = an.gaussian_kernel_law(x, s, eps, mean)
        assert mu == pytest.approx(mean + s**2 / (s**2 + eps) * (x - mean), rel=1e-15, abs=1e-16)
        assert v == pytest.approx(eps * s**2 / (s**2 + eps), rel=1e-15)
        # one layer of H0 = x
        ref1 = kernel_expectation(lambda y: y, x, s, eps, mean)
        assert an.gaussian_features_linear(x, s, eps, 1, mean) == pytest.approx(ref1, abs=1e-10)
        # eigenfunctions of the exact layer
        for n in range(4):
            lhs = kernel_expectation(lambda y: an.gaussian_kernel_eigenfunction(y, n, s, eps, mean), x, s, eps, mean)
            rhs = an.gaussian_kernel_eigenvalue(n, s, eps) * an.gaussian_kernel_eigenfunction(x, n, s, eps, mean)
            assert abs(lhs - rhs) < 1e-10 * max(1.0, abs(rhs))


def test_gaussian_features_layers():
    s, eps, K = 1.2, 0.05, 7
    x = np.linspace(-2, 2, 5)
    a = s**2 / (s**2 + eps)
    np.testing.assert_allclose(an.gaussian_features_linear(x, s, eps, K), x * a**K, rtol=1e-15)  # reaches exact
    poly = an.gaussian_features_polynomial([0.0, 1.0], x, s, eps, K)
    np.testing.assert_allclose(poly, x * a**K, rtol=1e-15, atol=1e-16)  # reaches exact
    # two layers of x^2 by nested quadrature agree with T^2
    c = [0.0, 0.0, 1.0]
    one = lambda y: an.gaussian_features_polynomial(c, y, s, eps, 1)  # noqa: E731
    for x0 in (0.3, -1.1):
        ref = kernel_expectation(one, x0, s, eps)
        assert an.gaussian_features_polynomial(c, x0, s, eps, 2) == pytest.approx(ref, rel=1e-10)
    # eps -> 0 with t = K eps / 2 fixed: the exact layers tend to the OU solution, error O(eps)
    t = 0.5
    errs = []
    for e in (0.02, 0.01):
        n = int(round(2 * t / e))
        errs.append(abs(an.gaussian_features_linear(1.0, s, e, n) - an.ou_linear_solution(1.0, t, s)))
    assert 1.8 < errs[0] / errs[1] < 2.2
    # the layer's eigenvalue gives the OU rate in the limit
    e = 1e-6
    assert math.log(an.gaussian_kernel_eigenvalue(3, s, e)) / (e / 2) == pytest.approx(an.ou_eigenvalue(3, s), rel=1e-5)


def test_gaussian_tokens_map_matches_quadrature():
    mu = np.array([0.5, -0.2])
    Sigma = np.array([[1.0, 0.4], [0.4, 0.5]])
    eps = 0.3
    A, Snew = an.gaussian_tokens_map(mu, Sigma, eps)
    np.testing.assert_allclose(A, np.linalg.inv(np.eye(2) + eps * np.linalg.inv(Sigma)), rtol=2e-15)  # reaches 2.0e-16
    np.testing.assert_allclose(Snew, A @ Sigma @ A.T, rtol=2e-15)  # reaches 1.8e-16
    # x' = E[y | x] under exp(-|x-y|^2/(2 eps)) N(y; mu, Sigma): 2-D trapezoid (spectral for Gaussians)
    g = np.linspace(-9, 9, 601)
    Y1, Y2 = np.meshgrid(g, g, indexing="ij")
    Y = np.stack([Y1, Y2], axis=-1)
    P = np.linalg.inv(Sigma)
    for x in (np.array([0.0, 0.0]), np.array([1.5, -1.0])):
        d = Y - mu
        logw = -np.sum((Y - x) ** 2, axis=-1) / (2 * eps) - 0.5 * np.einsum("...i,ij,...j->...", d, P, d)
        w = np.exp(logw - logw.max())
        ref = np.array([np.sum(w * Y1), np.sum(w * Y2)]) / np.sum(w)
        np.testing.assert_allclose(A @ x + (np.eye(2) - A) @ mu, ref, rtol=0, atol=3e-15)  # reaches 2.2e-16
    # K layers: each variance sigma^2 -> sigma^2 (sigma^2 / (sigma^2 + eps))^2 in Sigma's eigenbasis
    xK, SK = an.gaussian_tokens_evolve(np.array([[1.0, 1.0]]), mu, Sigma, eps, 3)
    lam, V = np.linalg.eigh(Sigma)
    for _ in range(3):
        lam = lam * (lam / (lam + eps)) ** 2
    np.testing.assert_allclose(SK, V @ np.diag(lam) @ V.T, rtol=7e-15, atol=1e-16)  # reaches 6.5e-16 relative
    x1 = mu + A @ (np.array([1.0, 1.0]) - mu)
    _, S1 = an.gaussian_tokens_map(mu, Sigma, eps)
    A2, S2 = an.gaussian_tokens_map(mu, S1, eps)
    A3, _ = an.gaussian_tokens_map(mu, S2, eps)
    np.testing.assert_allclose(xK[0], mu + A3 @ A2 @ (x1 - mu), rtol=1e-15)  # reaches exact


def test_walkers_stationary():
    p = np.array([0.0, 1.0, 2.0, 1.0])
    np.testing.assert_array_equal(an.walkers_stationary(p), [0, 1 / 6, 4 / 6, 1 / 6])  # exact by construction: [0, 1, 4, 1] / 6
    w = np.full(4, 0.5)
    assert np.sum(an.walkers_stationary(p, w) * w) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: an.free_heat_kernel([0.0], [1.0], 0.0), "t"),
        (lambda: an.free_heat_kernel([0.0], [1.0], -1.0), "t"),
        (lambda: an.free_heat_kernel([np.nan], [1.0], 1.0), "x"),
        (lambda: an.free_heat_kernel(0.0, 1.0, 1.0, dim=0), "dim"),
        (lambda: an.periodic_heat_kernel(0.1, 0.2, 0.1, 0.0), "lengths"),
        (lambda: an.periodic_heat_kernel(0.1, 0.2, 0.1, [1.0, -2.0]), "lengths"),
        (lambda: an.periodic_heat_kernel(0.1, np.nan, 0.1, 1.0), "y"),
        (lambda: an.periodic_heat_kernel(0.1, 0.2, np.nan, 1.0), "t"),
        (lambda: an.periodic_heat_kernel([0.1, 0.2], [0.1, 0.2, 0.3], 0.1, [1.0, 1.0]), "y"),
        (lambda: an.periodic_heat_kernel(0.1, 0.2, 0.1, 1.0, method="magic"), "method"),
        (lambda: an.wrapped_gaussian(0.1, 0.2, 0.0, 1.0), "t"),
        (lambda: an.periodic_heat_kernel_fourier(0.1, 0.2, -0.1, 1.0), "t"),
        (lambda: an.neumann_heat_kernel(0.1, 0.2, 0.1, 1.0, 0.0), "upper"),
        (lambda: an.neumann_heat_kernel(0.1, 0.2, 0.1, np.nan, 1.0), "lower"),
        (lambda: an.dirichlet_heat_kernel(0.1, 0.2, 0.0, 0.0, 1.0), "t"),
        (lambda: an.fourier_mode_solution(0.1, 1, 1.0, -0.5), "t"),
        (lambda: an.fourier_mode_solution([0.1, 0.2], [1, 1], [1.0, 1.0], 0.1, metric=-np.eye(2)), "metric"),
        (lambda: an.fourier_mode_solution(0.1, 1, 1.0, 0.1, kind="tan"), "kind"),
        (lambda: an.neumann_cosine_solution(0.1, -1, 0.0, 1.0, 0.1), "mode"),
        (lambda: an.ou_linear_solution(1.0, 0.1, 0.0), "s"),
        (lambda: an.ou_linear_solution(1.0, -0.1, 1.0), "t"),
        (lambda: an.ou_transition_kernel(1.0, 1.0, 0.0, 1.0), "t"),
        (lambda: an.hermite_eigenfunction(1.0, 1.5, 1.0), "n"),
        (lambda: an.hermite_eigenfunction(np.nan, 1, 1.0), "x"),
        (lambda: an.ou_eigenvalue(1, -1.0), "s"),
        (lambda: an.gaussian_features_linear(1.0, 1.0, 0.0, 1), "eps"),
        (lambda: an.gaussian_features_linear(1.0, -1.0, 0.1, 1), "s"),
        (lambda: an.gaussian_features_linear(1.0, 1.0, 0.1, -1), "n_layers"),
        (lambda: an.gaussian_features_linear(1.0, 1.0, np.nan, 1), "eps"),
        (lambda: an.gaussian_kernel_operator(2, 1.0, -0.1), "eps"),
        (lambda: an.gaussian_tokens_map([0.0, 0.0], [[1.0, 0.0], [0.0, -1.0]], 0.1), "Sigma"),
        (lambda: an.gaussian_tokens_map([0.0, 0.0], np.eye(2), 0.0), "eps"),
        (lambda: an.gaussian_tokens_map([0.0, np.nan], np.eye(2), 0.1), "mu"),
        (lambda: an.walkers_stationary([1.0, -1.0]), "pdf_values"),
    ],
)
def test_bad_input_raises_value_error_naming_parameter(call, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        call()
