"""Reduced best-bandwidth study: the d = 1 exponent of eps*(N) within 0.08 of -2/7 (THEORY section 4).

Same sizes as the quick study in d = 1 (N = 1e3 .. 6.4e4, 8 seeds, eps grid of ratio 10^0.1) but the error is
evaluated at 200 instead of 400 sample points per sample: the RMS error is a random field with correlation
length ~ sqrt(eps), which 200 points per circle already resolve, so the seed-to-seed spread barely changes.
"""

import numpy as np

from continuum_attention.studies import best_bandwidth as B
from continuum_attention.studies.consistency import circle_case


def test_best_eps_exponent_in_one_dimension():
    out = B.measure(circle_case(), [1000, 4000, 16000, 64000], 1e-3 * 10 ** (0.1 * np.arange(11)), range(8), n_rows=200)
    assert out["interior"]
    assert abs(out["exponent_eps"][0] - B.theory_exponent(1)) <= 0.08, out["exponent_eps"]
    assert abs(out["exponent_error"][0] - B.theory_exponent(1)) <= 0.08, out["exponent_error"]
    assert np.all(np.diff(out["best_eps"]) < 0)


def test_theory_exponents():
    assert [round(B.theory_exponent(d), 3) for d in (1, 2, 3)] == [-0.286, -0.25, -0.222]
