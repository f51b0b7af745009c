"""Reduced spectrum study: eigenvalues of (I - S_eps)/(eps/2) against -At; clusters counted by near-zero eigenvalues."""

import numpy as np

from continuum_attention.densities import uniform
from continuum_attention.studies import spectrum as sp_study


def test_first_five_eigenvalues_uniform_within_5_percent():
    r = sp_study.spectrum_comparison(uniform(sp_study.CIRCLE), 800, 3e-4, seed=0,
                                     reference=sp_study.exact_uniform_circle(10))
    assert np.allclose(r["reference"][:6], 4 * np.pi**2 * np.array([0, 1, 1, 4, 4, 9]))
    assert np.all(np.abs(r["relative_error"]) < 0.05), r["relative_error"]


def test_first_five_eigenvalues_cosine_density_within_5_percent_of_pde():
    r = sp_study.spectrum_comparison(sp_study.cosine_density(), 800, 3e-4, seed=1)
    assert np.all(np.abs(r["relative_error"]) < 0.05), r["relative_error"]


def test_near_zero_eigenvalues_count_the_bumps():
    r = sp_study.cluster_count(n_bumps=3, kappa=8.0, N=500, eps=3e-4, seed=0)
    assert r["count_particles"] == 3
    assert r["count_pde"] == 3
    assert r["gap_particles"] > 10.0
    r4 = sp_study.cluster_count(n_bumps=4, kappa=14.0, N=500, eps=3e-4, seed=2)
    assert r4["count_particles"] == 4 and r4["count_pde"] == 4


def test_same_seed_same_numbers():
    a = sp_study.spectrum_comparison(sp_study.cosine_density(), 300, 1e-3, seed=3, reference=np.ones(10))
    b = sp_study.spectrum_comparison(sp_study.cosine_density(), 300, 1e-3, seed=3, reference=np.ones(10))
    assert np.array_equal(a["particles"], b["particles"])
