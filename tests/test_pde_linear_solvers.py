"""The implicit methods' linear solvers (pde/steppers.py: LinearSolve, choose_linear_solver, lu_memory_estimate).

Small grids only: the rule's thresholds are moved down with monkeypatch instead of building big grids.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import splu, spsolve

from continuum_attention import Grid, Torus
from continuum_attention.densities import cosine
from continuum_attention.pde import AttentionLimitPDE, steppers
from continuum_attention.pde.steppers import LinearSolve, choose_linear_solver, lu_memory_estimate

TORUS2 = Torus([1.0, 0.7])
TORUS3 = Torus([1.0, 1.0, 1.0])
FULL_M = np.array([[1.0, 0.3], [0.3, 0.8]])


def _h0(x):
    return np.cos(2 * np.pi * x[:, 0]) * np.sin(2 * np.pi * x[:, 1] / 0.7) + 0.3 * np.sin(4 * np.pi * x[:, 0])


def _pde(shape=(24, 20), **kw) -> AttentionLimitPDE:
    return AttentionLimitPDE(Grid(TORUS2, shape), cosine(TORUS2, 0.5, (1, 1)), **kw)


def rel_l2(a, b) -> float:
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b)))


@pytest.mark.parametrize("form, metric, domain", [("features", None, TORUS2), ("features", FULL_M, TORUS2),
                                                  ("walkers", FULL_M, TORUS2), ("heat", None, TORUS3)])
@pytest.mark.parametrize("kind", ["direct", "amg"])
def test_symmetric_form_solves_the_step_system(form, metric, domain, kind):
    """M y = C_out^-1 b, x = C_in^-1 y solves (I - c L) x = b, for every form's scalings (C_out, C_in)."""
    shape = (8, 7, 6) if domain.dim == 3 else (24, 20)
    pde = AttentionLimitPDE(Grid(domain, shape), cosine(domain, 0.5, (1,) * domain.dim), metric=metric, form=form)
    op = pde._op
    c = 20 * op.max_stable_dt()  # far above the explicit limit: the system is not close to the identity
    b = np.random.default_rng(0).standard_normal(op.grid.size)
    solve = LinearSolve(op, c, kind)
    assert solve.kind == kind
    M = solve.matrix
    assert abs(M - M.T).max() == 0.0  # exactly symmetric, as CG needs
    want = spsolve(sp.csc_matrix(sp.identity(op.grid.size) - c * op.matrix()), b)
    # direct reaches 5e-16 to 1e-15 relative; AMG-CG stops at ||r|| <= 1e-10 ||b|| (7 to 9 iterations) and
    # reaches 5e-11 to 6.4e-11
    assert rel_l2(solve(b), want) < (1e-14 if kind == "direct" else 5e-10)


def test_amg_and_direct_agree_on_a_crank_nicolson_solve():
    pde = _pde((48, 40), metric=FULL_M)
    a = pde.solve(_h0, 0.02, method="crank-nicolson", dt=1e-3, n_snapshots=3, linear_solver="direct")
    b = pde.solve(_h0, 0.02, method="crank-nicolson", dt=1e-3, n_snapshots=3, linear_solver="amg")
    assert a.info["linear_solver"] == "direct" and b.info["linear_solver"] == "amg"
    assert rel_l2(a.values[-1], a.values[0]) > 0.3  # it did evolve
    # 20 steps, each CG solve to rtol 1e-10: the two differ by 2.2e-11 relative
    assert rel_l2(b.values[-1], a.values[-1]) < 2e-10


@pytest.mark.parametrize("method", ["crank-nicolson", "implicit-euler"])
@pytest.mark.parametrize("kind", ["direct", "amg"])
def test_solver_is_set_up_once_per_solve(method, kind, monkeypatch):
    import pyamg

    calls = []
    real_lu, real_amg = steppers.splu, pyamg.smoothed_aggregation_solver
    monkeypatch.setattr(steppers, "splu", lambda A, **kw: calls.append(("lu", A.shape)) or real_lu(A, **kw))
    monkeypatch.setattr(pyamg, "smoothed_aggregation_solver",
                        lambda A, **kw: calls.append(("amg", A.shape)) or real_amg(A, **kw))
    sol = _pde().solve(_h0, 0.01, method=method, dt=2.5e-4, n_snapshots=5, linear_solver=kind)
    assert sol.n_steps == 40 and calls == [("lu" if kind == "direct" else "amg", (480, 480))]


def test_auto_rule_on_both_sides_of_the_node_threshold(monkeypatch):
    monkeypatch.setitem(steppers.AUTO_DIRECT_MAX_NODES, 2, 24 * 20)
    at, above = _pde((24, 20))._op, _pde((25, 20))._op
    assert choose_linear_solver(at)[0] == "direct" and choose_linear_solver(above)[0] == "amg"
    assert "500 nodes > 480" in choose_linear_solver(above)[1]
    # an explicit choice is kept whatever the size
    assert choose_linear_solver(above, "direct")[0] == "direct" and choose_linear_solver(at, "amg")[0] == "amg"
    sol = _pde((25, 20)).solve(_h0, 0.01, method="implicit-euler", dt=1e-3, n_snapshots=2)
    assert sol.info["linear_solver"] == "amg"
    assert "linear_solver" not in _pde().solve(_h0, 0.01, method="explicit", n_snapshots=2).info


def test_auto_rule_on_both_sides_of_the_memory_threshold(monkeypatch):
    op = _pde((24, 20))._op
    estimate = lu_memory_estimate(op.grid.size, 2)
    monkeypatch.setenv("CONTINUUM_ATTENTION_MEMORY", str(2.01 * estimate))
    assert choose_linear_solver(op)[0] == "direct"
    monkeypatch.setenv("CONTINUUM_ATTENTION_MEMORY", str(1.99 * estimate))
    kind, reason = choose_linear_solver(op)
    assert kind == "amg" and "half the memory budget" in reason


def test_too_large_direct_solve_is_refused_before_factorising(monkeypatch):
    calls = []
    monkeypatch.setattr(steppers, "splu", lambda A, **kw: calls.append(A.shape))
    monkeypatch.setenv("CONTINUUM_ATTENTION_MEMORY", "1e5")  # 0.1 MB; the LU of 24 x 20 nodes needs ~0.5 MB
    pde = _pde()
    with pytest.raises(ValueError, match=r"direct \(sparse LU\) solve of an implicit step on 480 nodes.*"
                                         r"linear_solver='amg'.*GiB"):
        pde.solve(_h0, 0.01, method="crank-nicolson", linear_solver="direct")
    assert calls == []
    # auto goes to AMG instead, and solves
    assert pde.solve(_h0, 0.01, method="crank-nicolson", n_snapshots=2).info["linear_solver"] == "amg"


@pytest.mark.parametrize("domain, shape", [(TORUS2, (64, 64)), (TORUS2, (96, 80)), (TORUS3, (12, 12, 12))])
def test_lu_memory_estimate_bounds_the_factors(domain, shape):
    op = AttentionLimitPDE(Grid(domain, shape), cosine(domain, 0.5, (1,) * domain.dim))._op
    lu = splu(sp.csc_matrix(LinearSolve(op, op.max_stable_dt(), "amg").matrix), permc_spec="MMD_AT_PLUS_A",
              diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    measured = 24.0 * (lu.L.nnz + lu.U.nnz)
    # the fill model is a fit to these grids' factors: it gives 1.00 (64^2), 1.02 (96 x 80), 1.03 (12^3) of them
    assert 0.9 * measured < lu_memory_estimate(op.grid.size, domain.dim) < 1.3 * measured


def test_amg_that_does_not_converge_says_so(monkeypatch):
    monkeypatch.setattr(steppers, "AMG_MAXITER", 1)
    with pytest.raises(RuntimeError, match="did not reach rtol=1e-10 within 1 iterations"):
        _pde().solve(_h0, 0.01, method="implicit-euler", dt=1e-2, n_snapshots=2, linear_solver="amg")


def test_bad_linear_solver_names_the_parameter():
    with pytest.raises(ValueError, match=r"linear_solver must be one of \['auto', 'direct', 'amg'\], got "
                                         r"linear_solver='cholmod'"):
        _pde().solve(_h0, 0.01, method="crank-nicolson", linear_solver="cholmod")


def test_lu_memory_estimate_checks_its_input():
    with pytest.raises(ValueError, match="nodes must be an integer >= 1"):
        lu_memory_estimate(0, 2)
    with pytest.raises(ValueError, match="dim must be an integer <= 3"):
        lu_memory_estimate(100, 4)
    # 2-D grows like N log N, 3-D like N^1.6: 1024^2 is ~2.6 GiB, 128^3 far beyond any budget (~600 GiB)
    assert 2.0 * 2**30 < lu_memory_estimate(1024**2, 2) < 3.5 * 2**30
    assert lu_memory_estimate(128**3, 3) > 400 * 2**30
