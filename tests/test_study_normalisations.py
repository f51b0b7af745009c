"""Reduced normalisations study: alpha = 0, 1/2, 1 -> drift 2, 1, 0; Sinkhorn like alpha = 1/2."""

import numpy as np

from continuum_attention.compare import fit_slope
from continuum_attention.studies import normalisations as Nm
from continuum_attention.studies.consistency import circle_case


def test_continuum_drift_coefficients_and_sinkhorn_difference():
    eps = np.geomspace(1e-4, 2e-3, 5)
    inf = Nm.continuum(circle_case(), eps)
    own = np.array([c for _, c in Nm.NORMALISATIONS.values()])
    np.testing.assert_allclose(inf["c_hat"][0], own, atol=0.02)  # c_hat -> c as eps -> 0 (O(eps))
    assert np.all(np.abs(inf["c_hat"][0] - own) < np.abs(inf["c_hat"][-1] - own) + 1e-12)
    slope, _ = fit_slope(eps, inf["sinkhorn_vs_half"])
    assert abs(slope - 1.0) <= 0.2, slope  # Sinkhorn - alpha=1/2 generators differ by O(eps)


def test_each_normalisation_is_closest_to_its_own_limit():
    out = Nm.measure(circle_case(), 3000, [2e-3], seeds=[0])
    E = out["errors"][0, 0]  # (normalisation, c)
    for n, (_, c) in enumerate(Nm.NORMALISATIONS.values()):
        assert Nm.C_VALUES[int(np.argmin(E[n]))] == c
        assert abs(out["c_hat"][0, 0, n] - c) <= 0.2
    assert out["sinkhorn_vs_half"][0, 0] < 0.05
