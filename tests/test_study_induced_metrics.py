"""Reduced checks of the induced_metrics study (issue 4 item 8): the metric f induces is the one that matters."""

import numpy as np
from scipy.special import eval_legendre

from continuum_attention.studies import induced_metrics as im


def test_sphere_reduction_decays_legendre_polynomials_at_exact_rate_second_order():
    # uniform p on S^2, Delta_g = 2 Delta_round: P_l(cos th) decays as exp(-2 l (l+1) t)
    coarse, fine = im.legendre_rates(128), im.legendre_rates(256)
    np.testing.assert_array_equal(coarse["exact"], [4.0, 12.0, 24.0, 40.0])
    assert coarse["max_rel_error"] < im.LEGENDRE_TOL  # measured 1.1e-3
    assert fine["max_rel_error"] < 5e-4  # measured 2.8e-4
    # a wrong reduction would leave an O(1) error; the right one converges at the scheme's O(h^2)
    ratio = coarse["max_rel_error"] / fine["max_rel_error"]
    assert abs(ratio - 4.0) < 0.5


def test_sphere_reduction_operator_matches_axisymmetric_attention_limit():
    # non-uniform p: the solver's At on the reduced problem equals (p^2 sin th)^-1 d(p^2 sin th 2 dH) to O(h^2)
    density = im.SphereDensity()
    pde = im.sphere_pde(density, 400)
    th = pde.grid.points[:, 0]
    H = lambda s: im.sphere_initial(s)  # noqa: E731
    At = pde.attention_operator(H(th)).ravel()
    d = 1e-4

    def flux(s):
        return density.pdf_theta(s) ** 2 * np.sin(s) * 2.0 * (H(s + d) - H(s - d)) / (2 * d)

    exact = (flux(th + d) - flux(th - d)) / (2 * d) / (density.pdf_theta(th) ** 2 * np.sin(th))
    rel = np.max(np.abs(At - exact)) / np.max(np.abs(exact))  # all cells, the pole cells included
    assert rel < 1e-3  # measured 1.4e-4 at 400 cells


def test_sphere_particles_follow_induced_metric_not_round_metric():
    r = im.sphere_comparison(3000, 0.02, 15, seed=0)
    assert r["t"] == 0.15
    assert r["rel_g"] < im.REL_MAX  # measured 0.058
    assert r["err_round"] / r["err_g"] > im.MISMATCH_MIN  # measured 5.6


def test_torus_particles_follow_mahalanobis_pde_not_euclidean():
    r = im.torus_comparison(6000, 0.004, 10, seed=0)
    assert abs(np.linalg.det(r["M"]) - 1.0) < 1e-12
    assert r["rel_M"] < im.REL_MAX  # measured 0.061
    assert r["err_E"] / r["err_M"] > im.MISMATCH_MIN  # measured 3.7


def test_same_seed_same_numbers():
    a = im.sphere_comparison(800, 0.04, 4, seed=3)
    b = im.sphere_comparison(800, 0.04, 4, seed=3)
    np.testing.assert_array_equal(a["particles"], b["particles"])
    assert a["err_g"] == b["err_g"]
