import numpy as np
import pytest

from continuum_attention import Box, Density, Euclidean, Grid, Torus
from continuum_attention import densities as D


def _mean_of(dens, fn, n=200_000, seed=0):
    return fn(dens.sample(n, seed)).mean()


def test_numerical_normalisation_of_a_custom_pdf():
    T = Torus(1.0)
    dens = Density(T, lambda x: 7.0 * (1 + 0.5 * np.cos(2 * np.pi * x[:, 0])))
    g = Grid(T, 64)
    assert g.integrate(dens.pdf(g.points)) == pytest.approx(1.0, rel=1e-13)
    box = Box([-1.0, -1.0], [1.0, 2.0])
    dens2 = Density(box, lambda x: np.exp(-np.sum(x**2, axis=1)))
    from scipy.special import erf

    mass = (np.sqrt(np.pi) * erf(1)) * (np.sqrt(np.pi) / 2 * (erf(2) + erf(1)))
    assert dens2._norm == pytest.approx(mass, rel=1e-12)


def test_finite_difference_grad_log_matches_exact():
    T = Torus(1.0)
    exact = D.cosine(T, 0.5, 1)
    numeric = Density(T, lambda x: 1 + 0.5 * np.cos(2 * np.pi * x[:, 0]))
    x = np.linspace(0, 1, 37)[:, None]
    np.testing.assert_allclose(numeric.grad_log_pdf(x), exact.grad_log_pdf(x), rtol=0, atol=5e-8)  # reaches 5.3e-9 (finite differences)


@pytest.mark.parametrize(
    "pdf, match",
    [
        (lambda x: np.cos(2 * np.pi * x[:, 0]), "non-negative"),
        (lambda x: np.full(len(x), np.nan), "NaN"),
        (lambda x: np.zeros(len(x)), "not normalisable"),
        (lambda x: np.ones(3), "values"),
    ],
)
def test_bad_pdfs_are_refused(pdf, match):
    with pytest.raises(ValueError, match=match):
        Density(Torus(1.0), pdf)


def test_unbounded_custom_density_needs_support():
    with pytest.raises(ValueError, match="support"):
        Density(Euclidean(1), lambda x: np.exp(-x[:, 0] ** 2))
    dens = Density(Euclidean(1), lambda x: np.exp(-x[:, 0] ** 2), support=Box(-10, 10))
    assert dens.pdf([[0.0]])[0] == pytest.approx(1 / np.sqrt(np.pi), rel=1e-12)


def test_samplers_reproduce_moments():
    T = Torus(1.0)
    # E cos(2 pi x) = a / 2 for p = 1 + a cos(2 pi x); standard error ~ 0.0016 at n = 2e5
    assert _mean_of(D.cosine(T, 0.5, 1), lambda x: np.cos(2 * np.pi * x[:, 0])) == pytest.approx(0.25, abs=0.01)
    custom = Density(T, lambda x: 1 + 0.5 * np.cos(2 * np.pi * x[:, 0]))
    assert _mean_of(custom, lambda x: np.cos(2 * np.pi * x[:, 0])) == pytest.approx(0.25, abs=0.01)
    cov = np.array([[1.0, 0.6], [0.6, 2.0]])
    x = D.gaussian([1.0, -1.0], cov).sample(200_000, 3)
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.03)
    vm = D.von_mises(T, 0.3, 4.0)
    from scipy.special import iv

    got = _mean_of(vm, lambda x: np.cos(2 * np.pi * (x[:, 0] - 0.3)))
    assert got == pytest.approx(iv(1, 4.0) / iv(0, 4.0), abs=0.01)


def test_same_seed_same_points():
    dens = D.mixture([D.von_mises(Torus(1.0), 0.25, 10), D.von_mises(Torus(1.0), 0.75, 10)], [1, 3])
    np.testing.assert_array_equal(dens.sample(50, 7), dens.sample(50, 7))
    assert dens.sample(40_000, 1)[:, 0].__lt__(0.5).mean() == pytest.approx(0.25, abs=0.02)


def test_builtins_are_normalised_and_gradients_consistent():
    T2 = Torus([1.0, 2.0])
    g = Grid(T2, (48, 48))
    for dens in (D.uniform(T2), D.cosine(T2, 0.4, (1, 2), 0.3), D.von_mises(T2, [0.2, 1.0], [2.0, 0.5])):
        assert g.integrate(dens.pdf(g.points)) == pytest.approx(1.0, rel=1e-12)
        pts = dens.sample(20, 0)
        fd = Density(T2, dens.pdf).grad_log_pdf(pts)
        np.testing.assert_allclose(dens.grad_log_pdf(pts), fd, rtol=0, atol=1e-7)  # reaches 8.8e-9 (finite differences)
    box = Box(-1.0, 2.0)
    trunc = D.gaussian(0.5, 0.3, box)
    gb = Grid(box, 2000)
    assert gb.integrate(trunc.pdf(gb.points)) == pytest.approx(1.0, abs=1e-6)
    assert box.contains(trunc.sample(1000, 0)).all()


def test_bad_builtin_parameters():
    T = Torus(1.0)
    with pytest.raises(ValueError, match="amplitude"):
        D.cosine(T, 1.5)
    with pytest.raises(ValueError, match="cov"):
        D.gaussian([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="kappa"):
        D.von_mises(T, 0.0, -1.0)
    with pytest.raises(ValueError, match="weights"):
        D.mixture([D.uniform(T)], [-1.0])
    with pytest.raises(ValueError, match="n must"):
        D.uniform(T).sample(0)


def test_density_config_round_trip():
    T = Torus([1.0, 1.0])
    dens = D.mixture([D.cosine(T, 0.3, (1, 0)), D.von_mises(T, [0.5, 0.5], 3.0)], [0.4, 0.6])
    again = D.density_from_config(dens.to_config(), T)
    pts = dens.sample(10, 0)
    np.testing.assert_array_equal(again.pdf(pts), dens.pdf(pts))  # exact by construction: the same parameters


def test_rejection_sampler_same_seed_same_points_even_after_raising_its_envelope():
    """A peaked pdf given with normalize=False: the envelope must adapt without making draws depend on history."""
    T = Torus(1.0)
    vm = D.von_mises(T, 0.5, 10.0)
    dens = Density(T, vm.pdf, normalize=False)  # peak ~ 3.6 / |T|, no quadrature at construction
    first = dens.sample(1000, 0)
    np.testing.assert_array_equal(dens.sample(1000, 0), first)
    np.testing.assert_array_equal(Density(T, vm.pdf, normalize=False).sample(1000, 0), first)
    from scipy.special import iv

    assert np.cos(2 * np.pi * (first[:, 0] - 0.5)).mean() == pytest.approx(iv(1, 10) / iv(0, 10), abs=0.02)
