"""Reduced heat_form study: Theorem 4 (At = F Delta_g~) numerically, in 1-D and 3-D."""

import numpy as np
import pytest

from continuum_attention.compare import fit_slope
from continuum_attention.studies import heat_form as hf


def test_heat_form_1d_converges_at_h2_and_package_identity():
    r = hf.heat_vs_features_1d(ns=(32, 64, 128))
    slope, _ = fit_slope(r["h"], r["difference"])
    assert slope == pytest.approx(2.0, abs=0.3)  # second-order discretisations of the same operator
    assert r["difference"][-1] < 5e-3  # measured 1.7e-3 at n = 128
    assert r["identity"].max() < 1e-10  # package form='heat' equals form='features' to round-off


def test_heat_form_3d_converges_at_h2():
    r = hf.heat_vs_features_3d(ns=(8, 12, 16))
    slope, _ = fit_slope(r["h"], r["difference"])
    assert slope == pytest.approx(2.0, abs=0.3)
    assert r["difference"][-1] < 1e-2  # measured 6.3e-3 at 16^3
    assert r["identity"].max() < 1e-10


def test_heat_form_refuses_n2_with_explanation():
    ok, msg = hf.n2_refusal()
    assert ok, msg


def test_conformal_factor_exponents():
    p = np.array([0.5, 2.0])
    assert np.allclose(hf.conformal_factor(p, 1), p**-4.0)
    assert np.allclose(hf.conformal_factor(p, 3), p**4.0)
    with pytest.raises(ValueError):
        hf.conformal_factor(p, 2)
