"""Trackers observing particle runs and PDE solves: schedules, snapshots, invariants, progress, HDF5 streaming."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest

from continuum_attention import Grid, Torus, storage
from continuum_attention.densities import cosine
from continuum_attention.particles import ParticleSolver
from continuum_attention.pde import AttentionLimitPDE
from continuum_attention.trackers import (ConservationMonitor, ProgressBar, SnapshotRecorder, Tracker, TrackerGroup,
                                          schedule)

X = np.random.default_rng(3).random((300, 2))
TORUS2 = Torus([1.0, 1.0])
EPS = 0.01


def _h0(p):
    return np.cos(2 * np.pi * p[:, 0]) + 0.5 * np.sin(2 * np.pi * p[:, 1])


def _pde(**kwargs) -> AttentionLimitPDE:
    return AttentionLimitPDE(Grid(TORUS2, (20, 14)), cosine(TORUS2, 0.5, (1, 1)), **kwargs)


def _features() -> ParticleSolver:
    return ParticleSolver(X, EPS, domain=TORUS2)


class Boom(Tracker):
    """Raises from handle at a given step (an interrupted run)."""

    def __init__(self, at: int):
        self.at = at

    def steps(self, n_total, dt):
        return np.array([self.at])

    def handle(self, state, t, step):
        raise RuntimeError(f"stopped at step {step}")


# ---------------------------------------------------------------------------------------------------------
# Schedules and snapshots
# ---------------------------------------------------------------------------------------------------------


def test_schedule_rules():
    np.testing.assert_array_equal(schedule(10, 0.1, interval=3), [0, 3, 6, 9, 10])  # the final step always
    np.testing.assert_array_equal(schedule(10, 0.1, interval=20), [0, 10])
    np.testing.assert_array_equal(schedule(12, 0.1, n_snapshots=4), [0, 4, 8, 12])
    np.testing.assert_array_equal(schedule(10, 0.1, n_snapshots=1), [10])
    np.testing.assert_array_equal(schedule(10, 0.1, times=[0.0, 0.26, 0.24, 1.0]), [0, 2, 3, 10])  # nearest steps
    with pytest.raises(ValueError, match="exactly one"):
        schedule(10, 0.1, interval=2, n_snapshots=3)
    with pytest.raises(ValueError, match="interval"):
        SnapshotRecorder(interval=0)
    with pytest.raises(TypeError, match="n_snapshots"):
        SnapshotRecorder(n_snapshots="3")
    with pytest.raises(ValueError, match="times"):
        schedule(10, 0.1, times=[1.5])


def test_snapshot_recorder_interval_on_particles_equals_plain_snapshots():
    solver = _features()
    recorder = SnapshotRecorder(interval=3)
    sol = solver.run(_h0, n_layers=10, n_snapshots=11, trackers=[recorder], progress=False)
    assert recorder.steps_seen == [0, 3, 6, 9, 10]
    np.testing.assert_array_equal(recorder.times, np.array([0, 3, 6, 9, 10]) * (EPS / 2))
    np.testing.assert_array_equal(recorder.values, sol.values[[0, 3, 6, 9, 10]])  # the same arithmetic: bitwise
    plain = solver.run(_h0, n_layers=10, n_snapshots=11, progress=False)
    for name in ("times", "layers", "values"):
        np.testing.assert_array_equal(getattr(sol, name), getattr(plain, name))
    assert not np.allclose(sol.values[0], sol.values[-1])  # and it did evolve


def test_snapshot_recorder_on_the_explicit_pde_keeps_the_solution_bitwise():
    pde = _pde()
    plain = pde.solve(_h0, 0.02, method="explicit", n_snapshots=3, progress=False)
    n_sub = plain.n_steps // 2
    assert n_sub > 8  # visits every 3 steps break the fused groups of 8: the solution must not notice
    every3, at_times = SnapshotRecorder(interval=3), SnapshotRecorder(times=[0.01, 0.02])
    sol = pde.solve(_h0, 0.02, method="explicit", n_snapshots=3, progress=False, trackers=[every3, at_times])
    for name in ("times", "values", "dt", "n_steps"):
        np.testing.assert_array_equal(getattr(sol, name), getattr(plain, name))
    np.testing.assert_array_equal(sol.times, np.linspace(0.0, 0.02, 3))
    assert every3.steps_seen[-1] == plain.n_steps and every3.steps_seen[:3] == [0, 3, 6]
    assert at_times.steps_seen == [n_sub, 2 * n_sub]
    np.testing.assert_array_equal(at_times.values, plain.values[1:])
    i = every3.steps_seen.index(3)
    assert every3.times[i] == pytest.approx(3 * plain.dt, rel=1e-14)


@pytest.mark.parametrize("method", ["crank-nicolson", "exact"])
def test_recorders_see_the_snapshots_of_other_methods(method):
    pde = _pde()
    recorder = SnapshotRecorder(n_snapshots=5)
    sol = pde.solve(_h0, 0.01, method=method, n_snapshots=5, trackers=recorder)  # a single tracker is accepted
    np.testing.assert_array_equal(recorder.values, sol.values)
    np.testing.assert_array_equal(recorder.times, sol.times)


# ---------------------------------------------------------------------------------------------------------
# Conservation
# ---------------------------------------------------------------------------------------------------------


def test_conservation_monitor_on_walkers():
    solver = ParticleSolver(X, 0.02, domain=TORUS2, mode="walkers")
    mu0 = np.zeros(300)
    mu0[0] = 1.0
    monitor = ConservationMonitor()
    sol = solver.run(mu0, n_layers=200, n_snapshots=2, trackers=[monitor], progress=False)
    assert monitor.steps_seen == list(range(201)) and monitor.reference == 1.0
    # reaches 6.0e-15 over 200 layers (1.4e-15 with the tiled kernels' normalisers: rounding walks, not a bias)
    assert monitor.max_drift < 3e-14
    assert sol.values[-1].max() < 0.1  # the walkers spread


def test_conservation_monitor_on_pde_features():
    pde = _pde()
    H0 = lambda p: 1.0 + _h0(p)  # noqa: E731 -- p^2-weighted mean well away from 0
    for method, tol in (("explicit", 2e-15), ("crank-nicolson", 4e-15)):  # reach ~2e-16 and ~4e-16
        monitor = ConservationMonitor()
        sol = pde.solve(H0, 0.05, method=method, n_snapshots=3, trackers=[monitor])
        assert monitor.steps_seen == list(range(sol.n_steps + 1))
        assert monitor.reference == pytest.approx(pde.invariant(H0))
        assert monitor.max_drift < tol, method
        assert np.ptp(sol.values[-1]) < 0.5 * np.ptp(sol.values[0])  # it did evolve


def test_conservation_monitor_on_particle_features_uses_the_invariant_weights():
    solver = _features()
    H0 = np.stack([1.0 + _h0(X), X[:, 1]], axis=1)  # two feature columns: a (2,) invariant
    pi = solver.operator.invariant_weights()
    S = solver.operator.dense()
    assert np.max(np.abs(pi @ S - pi)) < 1e-14 * pi.max() and abs(pi.sum() - 1) < 1e-15  # ~1.6e-15, ~1e-16
    monitor = ConservationMonitor(interval=5)
    sol = solver.run(H0, n_layers=40, n_snapshots=2, trackers=[monitor], progress=False)
    np.testing.assert_allclose(monitor.reference, pi @ H0, rtol=1e-15)  # reaches exact
    assert monitor.steps_seen == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert monitor.max_drift < 7e-15  # reaches ~7e-16
    plain = np.abs(sol.values[-1].mean(axis=0) - H0.mean(axis=0)) / np.abs(H0.mean(axis=0))
    assert plain.max() > 1e-3  # the unweighted mean is not conserved: the weights matter


def test_tokens_have_no_invariant():
    solver = ParticleSolver(X, EPS, mode="tokens")
    with pytest.raises(ValueError, match="no invariant"):
        solver.run(n_layers=2, trackers=[ConservationMonitor()], progress=False)


# ---------------------------------------------------------------------------------------------------------
# Progress bar and the tracker group
# ---------------------------------------------------------------------------------------------------------


def test_progress_bar_asks_for_at_most_100_visits_and_changes_nothing():
    assert ProgressBar(False).steps(10_000, 0.1).size == 0
    assert ProgressBar(None, file=io.StringIO()).steps(10_000, 0.1).size == 0  # not a terminal: quiet
    steps = ProgressBar(True).steps(10_000, 0.1)
    assert steps.size == 100 and steps[-1] == 10_000 and np.all(np.diff(steps) == 100)
    np.testing.assert_array_equal(ProgressBar(True).steps(7, 0.1), np.arange(1, 8))
    pde = _pde()
    plain = pde.solve(_h0, 0.01, method="explicit", n_snapshots=2, progress=False)
    out = io.StringIO()
    shown = pde.solve(_h0, 0.01, method="explicit", n_snapshots=2, progress=False,
                      trackers=[ProgressBar(True, desc="pde", file=out)])
    np.testing.assert_array_equal(shown.values, plain.values)
    assert f"{plain.n_steps}/{plain.n_steps}" in out.getvalue() and "pde" in out.getvalue()


def test_tracker_group_validates_trackers_and_their_steps():
    with pytest.raises(TypeError, match="trackers"):
        TrackerGroup([object()])
    with pytest.raises(TypeError, match="trackers"):
        TrackerGroup(3)

    class OutOfRange(Tracker):
        def steps(self, n_total, dt):
            return np.array([n_total + 1])

    with pytest.raises(ValueError, match="steps"):
        _features().run(_h0, n_layers=3, trackers=[OutOfRange()], progress=False)


def test_an_exception_in_a_tracker_aborts_every_started_tracker():
    events = []

    class Log(Tracker):
        def finalize(self):
            events.append("finalize")

        def abort(self):
            events.append("abort")

    with pytest.raises(RuntimeError, match="stopped at step 2"):
        _features().run(_h0, n_layers=5, trackers=[Log(), Boom(2)], progress=False)
    assert events == ["abort"]
    _features().run(_h0, n_layers=1, trackers=[Log()], progress=False)
    assert events == ["abort", "finalize"]


# ---------------------------------------------------------------------------------------------------------
# HDF5 streaming
# ---------------------------------------------------------------------------------------------------------


def test_hdf5_writer_streams_the_particle_solution(tmp_path):
    path = tmp_path / "run.h5"
    for mode, initial in (("features", _h0), ("tokens", None)):
        solver = ParticleSolver(X, EPS, domain=TORUS2, mode=mode)
        sol = solver.run(initial, n_layers=6, n_snapshots=4, trackers=[storage.HDF5Writer(path, n_snapshots=4)],
                         progress=False)
        back = storage.load_result(path)
        assert type(back) is type(sol) and back.mode == mode and back.eps == sol.eps and back.metadata == sol.metadata
        for name in ("times", "layers", "values", "points"):
            np.testing.assert_array_equal(getattr(back, name), getattr(sol, name))
        with h5py.File(path) as f:
            assert f["values"].maxshape[0] is None and f.attrs["kind"] == "ParticleSolution"
            assert f.attrs["git_commit"] is not None and "numpy" in f.attrs["versions"]
    assert [p.name for p in tmp_path.iterdir()] == ["run.h5"]  # no temporary file left


def test_hdf5_writer_streams_the_pde_solution_while_writing_beside_the_target(tmp_path):
    path = tmp_path / "pde.h5"
    seen = []

    class Watch(Tracker):  # runs after the writer at each visit: the target must not exist yet
        def steps(self, n_total, dt):
            return np.arange(n_total + 1)

        def handle(self, state, t, step):
            seen.append((path.exists(), len(list(tmp_path.glob(".pde.h5.*.tmp")))))

    pde = _pde()
    sol = pde.solve(_h0, 0.01, method="implicit-euler", n_snapshots=5,
                    trackers=[storage.HDF5Writer(path, n_snapshots=5), Watch()])
    assert seen and set(seen) == {(False, 1)}
    back = storage.load_result(path)
    assert back.method == sol.method and back.dt == sol.dt and back.n_steps == sol.n_steps and back.form == sol.form
    np.testing.assert_array_equal(back.times, sol.times)
    np.testing.assert_array_equal(back.values, sol.values)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["steps"][()], np.arange(5) * (sol.n_steps // 4))


def test_interrupted_run_leaves_no_file_at_the_target(tmp_path):
    path = tmp_path / "cut.h5"
    with pytest.raises(RuntimeError, match="stopped at step 3"):
        _features().run(_h0, n_layers=6, trackers=[storage.HDF5Writer(path, interval=1), Boom(3)], progress=False)
    assert list(tmp_path.iterdir()) == []
    # an older file at the target stays as it was
    storage.save(path, {"x": np.arange(3.0)}, {"old": True})
    with pytest.raises(RuntimeError, match="stopped at step 2"):
        _pde().solve(_h0, 0.01, method="explicit", trackers=[storage.HDF5Writer(path, interval=1), Boom(2)])
    arrays, meta = storage.load(path)
    assert meta["config"] == {"old": True} and list(arrays) == ["x"]
    assert list(tmp_path.iterdir()) == [path]


def test_a_writer_that_fails_to_start_leaves_nothing(tmp_path):
    writer = storage.HDF5Writer(tmp_path / "bad.h5", interval=1)
    with pytest.raises(ValueError, match="cannot be stored"):
        writer.initialize(np.zeros(3), 0.0, None, {"kind": "arrays", "config": {"a": object()}})
    assert list(tmp_path.iterdir()) == []
