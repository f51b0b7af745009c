"""Time steppers chosen by name (pde/steppers.py): the registry, the step rules, backends, one LU per solve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from continuum_attention import Grid, Torus
from continuum_attention.densities import cosine
from continuum_attention.pde import METHODS, STEPPERS, AttentionLimitPDE, Stepper
from continuum_attention.pde import steppers

CIRCLE = Torus(1.0)
COSINE = cosine(CIRCLE, 0.5, 1)
TORUS2 = Torus([1.0, 0.7])
FULL_M = np.array([[1.0, 0.3], [0.3, 0.8]])


def _h0(points):
    x = points[:, 0]
    return np.sin(2 * np.pi * x) + 0.5 * np.cos(4 * np.pi * x)


def _h0_2d(x):
    return np.sin(2 * np.pi * x[:, 0]) * np.cos(2 * np.pi * x[:, 1] / 0.7) + x[:, 0]


def rel_l2(a, b) -> float:
    return float(np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b)))


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------


def test_methods_come_from_the_registry_in_order():
    assert METHODS == ("explicit", "crank-nicolson", "implicit-euler", "exact")
    assert tuple(STEPPERS)[:4] == METHODS
    for name in METHODS:
        assert STEPPERS[name].name == name and issubclass(STEPPERS[name], Stepper)


def test_unknown_method_names_method_and_the_valid_names():
    pde = AttentionLimitPDE(Grid(CIRCLE, 20), COSINE)
    for call in (lambda: pde.solve(_h0, 0.01, method="rk4"), lambda: pde.default_dt("rk4")):
        with pytest.raises(ValueError, match=r"method must be one of \(.*'explicit'.*'exact'.*\), got method='rk4'"):
            call()
    with pytest.raises(ValueError, match="exact.*no default dt"):
        pde.default_dt("exact")


@pytest.fixture
def heun():
    """A second-order Runge-Kutta stepper defined here: registering it is all it takes to solve with it."""

    class Heun(Stepper):
        name = "test-heun"

        def default_dt(self) -> float:
            return self.operator.max_stable_dt()

        def advance(self, s, n_steps):
            op, s = self.operator, np.reshape(s, self.operator.shape3)
            for _ in range(n_steps):
                k1 = op.apply(s)
                k2 = op.apply(s + self.dt * k1)
                s = s + 0.5 * self.dt * (k1 + k2)
            return s

    yield Heun
    STEPPERS.pop(Heun.name)


def test_a_new_stepper_appears_by_name_and_runs(heun):
    assert STEPPERS["test-heun"] is heun and "test-heun" not in METHODS
    pde = AttentionLimitPDE(Grid(CIRCLE, 64), COSINE)
    t = 0.02
    sol = pde.solve(_h0, t, method="test-heun", n_snapshots=3)
    ref = pde.solve(_h0, t, method="exact", n_snapshots=3)
    assert sol.method == "test-heun" and sol.dt == t / 2 / (sol.n_steps // 2) and sol.dt <= pde.max_stable_dt()
    np.testing.assert_array_equal(sol.times, ref.times)
    # second order in time at dt ~ h^2 / 2 against the same operator's exact semigroup: reaches ~1.1e-5
    assert rel_l2(sol.values[-1], ref.values[-1]) < 1e-4
    assert rel_l2(sol.values[-1], sol.values[0]) > 0.1  # and it did evolve
    with pytest.raises(ValueError, match="exists already"):
        type("Again", (Stepper,), {"name": "test-heun"})


# ---------------------------------------------------------------------------------------------------------
# Step rules
# ---------------------------------------------------------------------------------------------------------


def test_default_steps_keep_their_numbers():
    grid = Grid(TORUS2, (20, 14))
    pde = AttentionLimitPDE(grid, cosine(TORUS2, 0.4, (1, 1)))
    tau = pde.max_stable_dt()
    assert pde.default_dt("explicit") == 0.9 * tau
    assert pde.default_dt("crank-nicolson") == 2 * 20 * tau / (4.0 * math.pi)
    assert pde.default_dt("implicit-euler") == 2 * tau / 3.0


def test_explicit_limit_is_enforced_just_above_and_allowed_just_below():
    pde = AttentionLimitPDE(Grid(CIRCLE, 40), COSINE)
    limit = pde.max_stable_dt()
    t = 40 * limit  # 40 steps of the limit fit just short: dt * (1 - 1e-9) needs 41
    below = pde.solve(_h0, t, method="explicit", dt=limit * (1 - 1e-9), n_snapshots=2)
    assert below.dt <= limit and below.n_steps == 41
    # at the Gershgorin limit explicit Euler keeps the maximum principle (no mixed terms)
    assert np.max(np.abs(below.values[-1])) <= np.max(np.abs(below.values[0]))
    with pytest.raises(ValueError, match="exceeds the explicit stability limit"):
        pde.solve(_h0, t, method="explicit", dt=limit * (1 + 1e-9), n_snapshots=2)


def test_steps_are_shortened_to_fill_each_snapshot_interval():
    pde = AttentionLimitPDE(Grid(CIRCLE, 32), COSINE)
    sol = pde.solve(_h0, 0.01, method="implicit-euler", dt=0.003, n_snapshots=3)
    assert sol.n_steps == 4 and sol.dt == 0.005 / 2  # interval 0.005 needs 2 steps of <= 0.003
    exact = pde.solve(_h0, 0.01, method="exact", dt=0.003, n_snapshots=3)
    assert math.isnan(exact.dt) and exact.n_steps == 0  # exact takes no step; dt unused


@pytest.mark.parametrize("method", ["crank-nicolson", "implicit-euler"])
def test_implicit_steppers_factorise_once_per_solve(method, monkeypatch):
    calls = []
    real = steppers.splu
    monkeypatch.setattr(steppers, "splu", lambda A, **kw: calls.append(A.shape) or real(A, **kw))
    pde = AttentionLimitPDE(Grid(CIRCLE, 32), COSINE)
    sol = pde.solve(_h0, 0.01, method=method, dt=1e-4, n_snapshots=5)
    assert sol.n_steps == 100 and calls == [(32, 32)]


# ---------------------------------------------------------------------------------------------------------
# Backends
# ---------------------------------------------------------------------------------------------------------


def test_numba_and_numpy_backends_agree_for_explicit_steps():
    grid = Grid(TORUS2, (20, 14))
    dens = cosine(TORUS2, 0.5, (1, 1))
    fast = AttentionLimitPDE(grid, dens, metric=FULL_M)
    ref = AttentionLimitPDE(grid, dens, metric=FULL_M, backend="numpy")
    assert fast.backend == "numba" and ref.backend == "numpy"
    a = fast.solve(_h0_2d, 0.01, method="explicit", n_snapshots=3)
    b = ref.solve(_h0_2d, 0.01, method="explicit", n_snapshots=3)
    assert a.n_steps == b.n_steps > 10
    # reaches ~1.3e-16 relative (26 steps, mixed-term stencil)
    assert np.max(np.abs(a.values - b.values)) < 1e-15 * np.max(np.abs(a.values))
    assert np.ptp(a.values[-1]) < 0.5 * np.ptp(a.values[0])  # and it did evolve
    u = _h0_2d(grid.points)  # the operator itself: reaches ~4e-16 relative
    assert np.max(np.abs(fast.apply(u) - ref.apply(u))) < 4e-15 * np.max(np.abs(fast.apply(u)))


def test_bad_backend_names_backend():
    with pytest.raises(ValueError, match=r"backend must be one of \['numba', 'numpy'\], got backend='torch'"):
        AttentionLimitPDE(Grid(CIRCLE, 20), COSINE, backend="torch")


@pytest.mark.parametrize("startup, overshoots", [(0, True), (2, False)])
def test_crank_nicolson_startup_keeps_the_maximum_principle(startup, overshoots, monkeypatch):
    """A step function with steps far above the explicit limit: plain CN rings (min -0.31 measured),
    Rannacher's two start-up steps (four implicit-Euler half steps) keep H in [0, 1] to rounding. The jump
    triggers the start-up by itself (dt ||L H0|| / ||H0|| >> 1)."""
    from continuum_attention import AttentionLimitPDE, Grid, Torus
    from continuum_attention import densities as D
    from continuum_attention.pde.steppers import CrankNicolson

    monkeypatch.setattr(CrankNicolson, "startup_steps", startup)
    circle = Torus(1.0)
    pde = AttentionLimitPDE(Grid(circle, 256), D.cosine(circle, 0.5, 1))
    sol = pde.solve(lambda x: (np.abs(x[:, 0] - 0.5) < 0.2).astype(float), 0.05, method="crank-nicolson",
                    dt=1e-2, n_snapshots=6)
    excursion = max(sol.values.max() - 1.0, -sol.values.min())
    assert (excursion > 0.1) == overshoots and (excursion < 1e-12 or overshoots)


def test_crank_nicolson_startup_runs_only_on_rough_data():
    from continuum_attention import AttentionLimitPDE, Grid, Torus
    from continuum_attention import densities as D
    from continuum_attention.pde.steppers import CrankNicolson

    circle = Torus(1.0)
    pde = AttentionLimitPDE(Grid(circle, 256), D.cosine(circle, 0.5, 1))
    x = pde.grid.points[:, 0]
    stepper = CrankNicolson(pde._op)  # the solver's FluxOperator
    stepper.prepare(1e-2)
    assert stepper._needs_startup((np.abs(x - 0.5) < 0.2).astype(float))  # ratio ~ 1e3
    assert not stepper._needs_startup(np.cos(2 * np.pi * x))  # ratio 0.4: 4 pi^2 dt, just below 1
    stepper.prepare(3e-2)
    assert stepper._needs_startup(np.cos(2 * np.pi * x))  # ratio 1.2: just above


def test_crank_nicolson_with_startup_stays_second_order():
    """Time order on a smooth problem: halving dt quarters the error (slope 2 within 0.1)."""
    from continuum_attention import AttentionLimitPDE, Grid, Torus
    from continuum_attention import densities as D

    circle = Torus(1.0)
    pde = AttentionLimitPDE(Grid(circle, 64), D.cosine(circle, 0.5, 1))
    H0 = lambda x: np.cos(2 * np.pi * x[:, 0])  # noqa: E731
    ref = pde.solve(H0, 0.02, method="exact", n_snapshots=2).values[-1]
    errs = [np.max(np.abs(pde.solve(H0, 0.02, method="crank-nicolson", dt=dt, n_snapshots=2).values[-1] - ref))
            for dt in (2e-3, 1e-3, 5e-4)]
    slopes = np.diff(np.log(errs)) / np.diff(np.log([2e-3, 1e-3, 5e-4]))
    assert np.all(np.abs(slopes - 2.0) < 0.1), slopes
