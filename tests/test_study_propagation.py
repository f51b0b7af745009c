"""Reduced propagation study: the issue-3 problem (RMS < 0.04 at N = 8000, eps = 1e-4, t = 0.01) and the error
decreasing from N = 1000 to N = 8000 along eps*(N) = c N^-2/7."""

import numpy as np
import pytest

from continuum_attention.compare import propagation_error
from continuum_attention.studies import propagation as P


def test_eps_along_divides_t_final_exactly():
    c = 1e-4 * 8000 ** (1 / 3.5)
    assert P.eps_along(8000, 0.01, c, 1) == (pytest.approx(1e-4, rel=1e-12), 200)
    for N in (1000, 2000, 4000, 32000):
        eps, K = P.eps_along(N, 0.01, c, 1)
        assert K * eps / 2 == pytest.approx(0.01, rel=1e-12)


def test_issue3_problem_and_decrease_with_N():
    problem = P.circle_problem()
    sol = P.pde_reference(problem, 512)
    c = 1e-4 * 8000 ** (1 / 3.5)
    big = P.features_run(problem, 8000, 1e-4, 0, sol, truncate=True)
    assert big["K"] == 200
    assert big["rms"][-1] < 0.04  # issue 3's acceptance bound
    eps, _ = P.eps_along(1000, 0.01, c, 1)
    small = P.features_run(problem, 1000, eps, 0, sol, truncate=True)
    assert small["rms"][-1] > big["rms"][-1]
    # the study's error is the package's propagation_error (dense operator) to truncation accuracy
    ref = propagation_error(problem, 1000, eps, 0, solution=sol).rms
    assert small["rms"][-1] == pytest.approx(ref, rel=1e-6)
