"""Trackers: objects that observe a run of :class:`~continuum_attention.particles.ParticleSolver` or
:class:`~continuum_attention.pde.AttentionLimitPDE` (py-pde's ``pde/trackers`` is the model).

A run is a sequence of steps 0, 1, ..., n_total (layers of the particle solver, time steps of the PDE solver;
for the PDE's ``"exact"`` method the snapshot intervals). Each tracker says which steps it wants to see
(:meth:`Tracker.steps`); the solver visits only the union of those steps, so between two visits it may
advance many steps at once (the explicit PDE solver fuses them). The protocol, in the order the solver calls it:

1. ``steps(n_total, dt)``: the step indices (0 <= step <= n_total) the tracker wants to see;
2. ``initialize(state, t, solver, info)``: once, with the initial state; ``solver`` is the solver object
   (it supplies ``invariant(state)``), ``info`` a plain-data description of the run (see :meth:`Tracker.initialize`);
3. ``handle(state, t, step)``: at each of its steps, step 0 included when asked for;
4. ``finalize()`` after the last step, or ``abort()`` when the run stops on an exception.

The ``state`` handed to a tracker is what the solution stores (H, the walker density rho, the walkers'
probability vector, token positions) and is valid only during the call: copy it to keep it.

This module depends on numpy, tqdm and the validation layer only; :class:`continuum_attention.storage.HDF5Writer` (HDF5 streaming)
is a tracker that lives in the storage room, so that the solvers never import storage.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import numpy as np
from tqdm.auto import tqdm

from ._validation import describe, positive_int, real_array

__all__ = [
    "Tracker",
    "ScheduledTracker",
    "SnapshotRecorder",
    "ConservationMonitor",
    "ProgressBar",
    "TrackerGroup",
    "schedule",
]

# Requested times may sit beyond the final time by rounding (t_final given as K eps / 2 computed elsewhere).
_TIME_SLACK = 1e-9


def _times_array(value: Any) -> np.ndarray:
    return real_array(value, "times", ndim=1)


def schedule(n_total: int, dt: float, *, interval: int | None = None, n_snapshots: int | None = None,
             times=None) -> np.ndarray:
    """Sorted unique step indices in [0, n_total] from exactly one of three rules.

    Parameters
    ----------
    n_total : int >= 0
        Last step of the run.
    dt : float > 0
        Time per step (converts ``times`` to steps).
    interval : int >= 1, optional
        Every ``interval`` steps from step 0; the final step is always included.
    n_snapshots : int >= 1, optional
        That many equally spaced steps, rounded to integers (ends included; 1: the final step only). Where
        n_total is a multiple of n_snapshots - 1 the steps are exact multiples, which is what the PDE solver's
        step shortening guarantees.
    times : sequence of float, optional
        Each time goes to its nearest step (t / dt rounded); times must lie in [0, n_total dt].
    """
    given = [name for name, v in (("interval", interval), ("n_snapshots", n_snapshots), ("times", times))
             if v is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of interval, n_snapshots and times, got {given or 'none'}")
    if interval is not None:
        k = positive_int(interval, "interval")
        return np.union1d(np.arange(0, n_total + 1, k, dtype=np.int64), [n_total]).astype(np.int64)
    if n_snapshots is not None:
        m = positive_int(n_snapshots, "n_snapshots")
        if m == 1:
            return np.array([n_total], dtype=np.int64)
        return np.unique(np.round(np.linspace(0, n_total, m)).astype(np.int64))
    return _steps_of_times(times, n_total, dt)


def _steps_of_times(times, n_total: int, dt: float) -> np.ndarray:
    t = _times_array(times)
    t_final = n_total * dt
    if t.size == 0 or np.any(t < 0.0) or np.any(t > t_final * (1.0 + _TIME_SLACK)):
        raise ValueError(f"times must be a non-empty list of times within [0, {t_final!r}], "
                         f"got times={describe(times)}")
    return np.unique(np.clip(np.round(t / dt), 0, n_total).astype(np.int64))


class Tracker:
    """Base class of the trackers; subclasses override the hooks they need (all are no-ops here).

    A tracker may be reused for several runs: :meth:`initialize` starts afresh.
    """

    def steps(self, n_total: int, dt: float) -> np.ndarray:
        """Step indices (integers in [0, n_total]) this tracker wants to see; none by default."""
        return np.empty(0, dtype=np.int64)

    def initialize(self, state: np.ndarray, t: float, solver: Any, info: dict) -> None:
        """Called once before the first step.

        ``info`` is plain data from the solver: ``description`` (a short label), ``kind`` (the name of the
        result type the run returns), ``config`` (that result's stored configuration), ``arrays`` (its arrays
        that do not change during the run, e.g. the particle positions), ``step_name`` ("layers" or
        "steps"), ``n_total`` and ``dt``.
        """

    def handle(self, state: np.ndarray, t: float, step: int) -> None:
        """Called at each step returned by :meth:`steps` (``state`` is valid only during the call)."""

    def finalize(self) -> None:
        """Called after the last step of a completed run."""

    def abort(self) -> None:
        """Called instead of :meth:`finalize` when the run stops on an exception."""


class ScheduledTracker(Tracker):
    """A tracker visiting the steps of :func:`schedule` (``interval``, ``n_snapshots`` or ``times``)."""

    def __init__(self, *, interval: int | None = None, n_snapshots: int | None = None, times=None):
        self._rule = {"interval": interval, "n_snapshots": n_snapshots, "times": times}
        if sum(v is not None for v in self._rule.values()) != 1:
            raise ValueError(f"give exactly one of interval, n_snapshots and times, got "
                             f"interval={interval!r}, n_snapshots={n_snapshots!r}, times={describe(times)}")
        if interval is not None:  # validate what can be validated before the run
            positive_int(interval, "interval")
        if n_snapshots is not None:
            positive_int(n_snapshots, "n_snapshots")

    def steps(self, n_total: int, dt: float) -> np.ndarray:
        return schedule(n_total, dt, **self._rule)


class SnapshotRecorder(ScheduledTracker):
    """Keeps a copy of the state at its steps: ``steps``, ``times`` (lists) and ``states`` (list of arrays).

    Exactly one of ``interval`` (every k steps or layers, the final one included), ``n_snapshots`` (equally
    spaced, ends included) or ``times`` (nearest steps) -- see :func:`schedule`. The solvers' ``n_snapshots=``
    argument is this recorder; :attr:`values` stacks the states.
    """

    def __init__(self, *, interval: int | None = None, n_snapshots: int | None = None, times=None):
        super().__init__(interval=interval, n_snapshots=n_snapshots, times=times)
        self.steps_seen: list[int] = []
        self.times: list[float] = []
        self.states: list[np.ndarray] = []

    def initialize(self, state, t, solver, info) -> None:
        self.steps_seen, self.times, self.states = [], [], []

    def handle(self, state, t, step) -> None:
        self.steps_seen.append(int(step))
        self.times.append(t)
        self.states.append(np.array(state, copy=True))

    @property
    def values(self) -> np.ndarray:
        """The recorded states stacked, (n_recorded, *state.shape)."""
        return np.stack(self.states)


class ConservationMonitor(ScheduledTracker):
    """Records ``solver.invariant(state)`` at its steps (every step unless told otherwise) and its drift.

    The invariant is the quantity the dynamics conserves: for the PDE the p^2-weighted mean (features, heat)
    or the mass (walkers), see :meth:`AttentionLimitPDE.invariant`; for particles ``ParticleSolver.invariant``
    (walkers: the total probability; features: pi . H with pi the left invariant vector of S). ``reference``
    is its value at t = 0, ``steps_seen``/``times``/``invariants`` the visits; :attr:`max_drift` the largest
    |I - I_0| / |I_0| (per component for vector invariants; absolute where I_0 = 0).
    """

    def __init__(self, *, interval: int | None = None, n_snapshots: int | None = None, times=None):
        if interval is None and n_snapshots is None and times is None:
            interval = 1
        super().__init__(interval=interval, n_snapshots=n_snapshots, times=times)
        self.reference: np.ndarray | None = None
        self.steps_seen: list[int] = []
        self.times: list[float] = []
        self.invariants: list[np.ndarray] = []
        self._invariant = None

    def initialize(self, state, t, solver, info) -> None:
        invariant = getattr(solver, "invariant", None)
        if not callable(invariant):
            raise ValueError(f"ConservationMonitor needs a solver with invariant(state); {solver!r} has none")
        self._invariant = invariant
        self.reference = np.asarray(invariant(state), dtype=np.float64)
        self.steps_seen, self.times, self.invariants = [], [], []

    def handle(self, state, t, step) -> None:
        self.steps_seen.append(int(step))
        self.times.append(t)
        self.invariants.append(np.asarray(self._invariant(state), dtype=np.float64))

    @property
    def drift(self) -> np.ndarray:
        """Relative drift |I - I_0| / |I_0| at each visit (n_visits,), the max over components."""
        if self.reference is None or not self.invariants:
            return np.empty(0)
        ref = np.abs(self.reference)
        scale = np.where(ref > 0, ref, 1.0)
        rel = np.abs(np.stack(self.invariants) - self.reference) / scale
        return rel.reshape(len(self.invariants), -1).max(axis=1)

    @property
    def max_drift(self) -> float:
        """The largest relative drift over the visits (0.0 before any visit)."""
        d = self.drift
        return float(d.max()) if d.size else 0.0


class ProgressBar(Tracker):
    """A tqdm bar over the steps, updated at most ``max_updates`` times (evenly spaced visits).

    ``enabled=None`` shows it only on a terminal (tqdm's ``disable=None``), False never; a hidden bar asks for
    no visits at all, so it never changes how a solver groups its steps.
    """

    def __init__(self, enabled: bool | None = None, *, desc: str | None = None, max_updates: int = 100, file=None):
        self.enabled = enabled
        self.desc = desc
        self.max_updates = positive_int(max_updates, "max_updates")
        self.file = file
        self._bar = None
        self._last = 0

    def _active(self) -> bool:
        if self.enabled is not None:
            return bool(self.enabled)
        stream = self.file if self.file is not None else sys.stderr  # tqdm's own rule for disable=None
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())

    def steps(self, n_total: int, dt: float) -> np.ndarray:
        if not self._active() or n_total == 0:
            return np.empty(0, dtype=np.int64)
        return schedule(n_total, dt, n_snapshots=min(n_total, self.max_updates) + 1)[1:]

    def initialize(self, state, t, solver, info) -> None:
        self._last = 0
        self._bar = tqdm(total=int(info.get("n_total", 0)), desc=self.desc or info.get("description"),
                         disable=not self._active(), file=self.file)

    def handle(self, state, t, step) -> None:
        self._bar.update(step - self._last)
        self._last = step

    def finalize(self) -> None:
        self._close()

    def abort(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _abort(trackers: list) -> None:
    for tracker in trackers:
        abort = getattr(tracker, "abort", None)
        if callable(abort):
            abort()


def _check_tracker(obj: Any) -> Any:
    if not all(callable(getattr(obj, name, None)) for name in ("steps", "initialize", "handle", "finalize")):
        raise TypeError(f"trackers must have steps, initialize, handle and finalize methods, got {describe(obj)}")
    return obj


class TrackerGroup:
    """The trackers of one run, as the solvers drive them: :meth:`plan`, then :meth:`running` and :meth:`handle`.

    ``trackers`` is None, one tracker, or an iterable of them (anything with ``steps``, ``initialize``,
    ``handle`` and ``finalize``; ``abort`` is optional). They are called in the order given.
    """

    def __init__(self, trackers: Any = None):
        if trackers is None:
            trackers = []
        elif hasattr(trackers, "handle"):
            trackers = [trackers]
        elif not isinstance(trackers, Iterable) or isinstance(trackers, (str, bytes)):
            raise TypeError(f"trackers must be a tracker or a list of trackers, got {describe(trackers)}")
        self.trackers = [_check_tracker(t) for t in trackers]
        self._wanted: list[frozenset[int]] = []

    def plan(self, n_total: int, dt: float) -> np.ndarray:
        """The sorted union of the steps the trackers ask for (each checked to lie in [0, n_total])."""
        self._wanted = []
        union: set[int] = set()
        for tracker in self.trackers:
            steps = np.asarray(tracker.steps(n_total, dt))
            if steps.size and (steps.dtype.kind not in "iu" or steps.min() < 0 or steps.max() > n_total):
                raise ValueError(f"{tracker!r}.steps() must return integers in [0, {n_total}], got {describe(steps)}")
            wanted = frozenset(int(s) for s in steps.ravel())
            self._wanted.append(wanted)
            union |= wanted
        return np.array(sorted(union), dtype=np.int64)

    @contextmanager
    def running(self, state: np.ndarray, t: float, solver: Any, info: dict) -> Iterator["TrackerGroup"]:
        """Initialize every tracker (and hand it step 0 if it asked), then finalize, or abort on an exception."""
        started = []
        try:
            for tracker in self.trackers:
                tracker.initialize(state, t, solver, info)
                started.append(tracker)
            self.handle(state, t, 0)
            yield self
        except BaseException:
            _abort(started)
            raise
        for i, tracker in enumerate(self.trackers):
            try:
                tracker.finalize()
            except BaseException:
                _abort(self.trackers[i + 1 :])  # the rest never finished: let them clean up
                raise

    def handle(self, state: np.ndarray, t: float, step: int) -> None:
        """Hand ``state`` to every tracker that asked for ``step``."""
        for tracker, wanted in zip(self.trackers, self._wanted):
            if step in wanted:
                tracker.handle(state, t, step)
