"""Particle dynamics of stacked attention layers (THEORY.md section 2).

Three modes, each layer one explicit Euler step of length eps/2 (t = K eps / 2 after K layers):

* ``"features"``: points fixed, H <- S_eps H (backward/Kolmogorov equation dH/dt = At H in the limit);
* ``"walkers"``: a probability vector mu <- mu S_eps (forward/Fokker-Planck equation; stationary mu_i
  proportional to the degrees, continuum density proportional to p^2);
* ``"tokens"``: x_i <- x_i + sum_j S_ij (x_j - x_i) with minimum-image differences, S recomputed from the
  moved points every layer. On R^d this is x <- S x; for the Euclidean metric it is blurring mean-shift,
  x <- x + eps grad log p_hat_eps(x) with p_hat_eps the Gaussian KDE of variance eps.

Everything is deterministic: no random numbers, and the kernels sum every entry in a fixed order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._validation import nonnegative_float, nonnegative_int, option, positive_float, positive_int, real_array
from .attention import DENSE_BUDGET, AttentionOperator
from .domains import Domain
from .trackers import ProgressBar, SnapshotRecorder, TrackerGroup

__all__ = ["ParticleSolver", "ParticleSolution", "MODES", "MAX_LAYERS", "n_layers_for"]

MODES = ("features", "walkers", "tokens")


@dataclass
class ParticleSolution:
    """Snapshots of a particle run.

    Attributes
    ----------
    times : (n_snap,) array
        t = K eps / 2 at the snapshot layers.
    layers : (n_snap,) int array
        Layer counts K of the snapshots (0 is the initial state).
    values : array
        features (n_snap, N) or (n_snap, N, k); walkers (n_snap, N); tokens the positions (n_snap, N, d)
        (the same array as ``points``).
    points : array
        (N, d) for features and walkers; (n_snap, N, d) for tokens.
    eps : float
    mode : str
    metadata : dict
        Plain data: normalization, backend, truncation, metric and domain configurations (when serialisable).
    """

    times: np.ndarray
    layers: np.ndarray
    values: np.ndarray
    points: np.ndarray
    eps: float
    mode: str
    metadata: dict = field(default_factory=dict)

    def to_storage(self) -> tuple[dict, dict]:
        """Arrays and plain-data configuration for :func:`continuum_attention.storage.save_result`."""
        arrays = {"times": self.times, "layers": self.layers, "values": self.values}
        if self.mode != "tokens":  # tokens: points is the values array itself
            arrays["points"] = self.points
        return arrays, {"eps": self.eps, "mode": self.mode, "metadata": self.metadata}

    @classmethod
    def from_storage(cls, arrays: dict, config: dict) -> "ParticleSolution":
        values = arrays["values"]
        points = values if config["mode"] == "tokens" else arrays["points"]
        return cls(arrays["times"], arrays["layers"], values, points, float(config["eps"]), config["mode"],
                   dict(config.get("metadata", {})))


#: Default limit on the layers of one run (``max_layers=`` raises it): a typo such as t_final=1e300 or
#: n_layers=1e9 is refused at once instead of running for days.
MAX_LAYERS = 1_000_000


def _layers_for(eps: float, t_final, n_layers, max_layers: int) -> int:
    """Number of layers K from exactly one of t_final (a multiple of eps/2) and n_layers, K <= max_layers."""
    if (t_final is None) == (n_layers is None):
        raise ValueError(f"give exactly one of t_final and n_layers, got t_final={t_final!r}, n_layers={n_layers!r}")
    K = nonnegative_int(n_layers, "n_layers") if n_layers is not None else n_layers_for(t_final, eps)
    if K > max_layers:
        raise ValueError(f"{K} layers exceed max_layers={max_layers} (t = {K * eps / 2:.3g}); pass max_layers= "
                         "to run that long")
    return K


def n_layers_for(t_final: float, eps: float) -> int:
    """Number of layers K with K eps / 2 = t_final (one layer is an Euler step of length eps/2).

    Refuses a t_final that is not such a multiple within 1e-9 relative, naming the nearest valid values.
    """
    t = nonnegative_float(t_final, "t_final")
    eps = positive_float(eps, "eps")
    ratio = t / (eps / 2.0)
    if not math.isfinite(ratio) or ratio > 2.0**62:
        raise ValueError(f"t_final={t_final!r} is {ratio:.3g} layers of eps/2={eps / 2.0!r}: too many to run")
    k = round(ratio)
    if abs(k * eps / 2.0 - t) > 1e-9 * max(t, eps / 2.0):
        raise ValueError(f"t_final={t_final!r} is not a multiple of the layer time eps/2={eps / 2.0!r} "
                         f"(within 1e-9 relative); nearest: n_layers={k}, t_final={k * eps / 2.0!r}")
    return int(k)


class ParticleSolver:
    """Stacked attention layers on N points: features, walkers or tokens (see the module docstring).

    Parameters
    ----------
    points : (N, d) array_like
        Sample points (for tokens: the initial positions unless ``run`` is given others).
    eps : float
        Kernel scale; one layer advances time by eps/2.
    metric, domain, normalization, truncate, tolerance, backend, dense_budget, device, dtype :
        Passed to :class:`~continuum_attention.attention.AttentionOperator`.
    mode : "features", "walkers" or "tokens"
    """

    def __init__(self, points, eps: float, *, metric=None, domain: Domain | None = None, mode: str = "features",
                 normalization="row", truncate: bool | str = "auto", tolerance: float = 1e-12,
                 backend: str = "numba", dense_budget: float = DENSE_BUDGET, device: str | None = None,
                 dtype: str = "float64"):
        self.mode = option(mode, "mode", MODES)
        self._options = dict(metric=metric, domain=domain, normalization=normalization, truncate=truncate,
                             tolerance=tolerance, backend=backend, dense_budget=dense_budget, device=device,
                             dtype=dtype)
        # Built once for features/walkers; for tokens it validates the input and gives layer 0.
        self.operator = AttentionOperator(points, eps, **self._options)
        self.eps, self.points, self.n = self.operator.eps, self.operator.points, self.operator.n
        self._pi: np.ndarray | None = None  # invariant weights, computed on first use

    @classmethod
    def from_problem(cls, problem, N: int, eps: float, *, seed=0, mode: str = "features", **options) -> "ParticleSolver":
        """N points sampled from ``problem.density`` (``seed``: same seed, same points), with the problem's
        metric and domain; ``options`` go to the constructor (normalization, truncate, tolerance, backend)."""
        points = problem.density.sample(positive_int(N, "N"), seed)
        return cls(points, eps, metric=problem.metric, domain=problem.domain, mode=mode, **options)

    # ----------------------------------------------------------------------------------- initial data
    def _initial(self, initial) -> np.ndarray:
        if self.mode == "tokens":
            if initial is None:
                return self.points.copy()
            if callable(initial):
                raise ValueError("initial for mode='tokens' must be None or an (N, d) array of positions")
            x = self.operator.metric.validate_points(self.operator.domain.validate_points(initial, name="initial"))
            if x.shape != self.points.shape:
                raise ValueError(f"initial positions must have shape {self.points.shape}, got {x.shape}")
            return x
        values = initial(self.points) if callable(initial) else initial
        if values is None:
            raise ValueError(f"initial is required for mode={self.mode!r}")
        values = np.array(real_array(values, "initial"), dtype=np.float64)
        if values.ndim not in (1, 2) or values.shape[0] != self.n:
            raise ValueError(f"initial must have shape ({self.n},) or ({self.n}, k), got shape {values.shape}")
        if self.mode == "walkers":
            self._check_probability(values)
        return values

    def _check_probability(self, mu: np.ndarray) -> None:
        if mu.ndim != 1:
            raise ValueError(f"initial for walkers must be a probability vector of shape ({self.n},), got {mu.shape}")
        if np.any(mu < 0):
            raise ValueError(f"initial for walkers has negative entries (min {mu.min():.3e})")
        if abs(mu.sum() - 1.0) > 1e-10:
            raise ValueError(f"initial for walkers must sum to 1 (within 1e-10), got sum {mu.sum()!r}")

    # ----------------------------------------------------------------------------------------- layers
    def _step(self, state: np.ndarray) -> np.ndarray:
        if self.mode == "features":
            return self.operator.apply(state)
        if self.mode == "walkers":
            return self.operator.apply_transpose(state)
        op = AttentionOperator(state, self.eps, **self._options)
        return op.domain.wrap(state + op.displacement())

    def run(self, initial=None, *, t_final: float | None = None, n_layers: int | None = None,
            n_snapshots: int = 11, progress: bool | None = None, trackers=None,
            max_layers: int = MAX_LAYERS) -> ParticleSolution:
        """Apply K layers and keep ``n_snapshots`` evenly spaced states (layer 0 and layer K included).

        Parameters
        ----------
        initial : callable or array
            features: H0 (N,) or (N, k), or a callable of the points returning it; walkers: a probability
            vector (N,) (non-negative, sum 1); tokens: None (the solver's points) or (N, d) positions.
        t_final : float, optional
            Final time; must be a multiple of eps/2 within 1e-9 relative (ValueError naming the nearest
            valid n_layers otherwise). Exactly one of t_final and n_layers.
        n_layers : int, optional
            Number of layers K (t = K eps / 2).
        n_snapshots : int
            Number of stored states (1: the final state only): a
            :class:`~continuum_attention.trackers.SnapshotRecorder` whose states the solution holds.
        progress : bool, optional
            tqdm progress bar (a :class:`~continuum_attention.trackers.ProgressBar`); None shows it only on a
            terminal, False never.
        trackers : tracker or list of trackers, optional
            Observers of the run (:mod:`continuum_attention.trackers`, ``storage.HDF5Writer``), handed the state
            (H, mu or the positions) after the layers they ask for, with ``solver=self`` (:meth:`invariant`).
        max_layers : int
            Refuse runs longer than this (default :data:`MAX_LAYERS`, 10^6 layers) before starting.
        """
        K = _layers_for(self.eps, t_final, n_layers, positive_int(max_layers, "max_layers"))
        recorder = SnapshotRecorder(n_snapshots=n_snapshots)
        state = self._initial(initial)
        bar = [] if progress is False else [ProgressBar(progress)]
        group = TrackerGroup([recorder, *bar, *TrackerGroup(trackers).trackers])
        layer_time = self.eps / 2.0
        visits = set(group.plan(K, layer_time).tolist())
        with group.running(state, 0.0, self, self._run_info(K)):
            for layer in range(1, K + 1):
                state = self._step(state)
                if layer in visits:
                    group.handle(state, layer * layer_time, layer)
        layers = np.array(recorder.steps_seen, dtype=np.int64)
        values = recorder.values
        points = values if self.mode == "tokens" else self.points
        return ParticleSolution(times=layers * layer_time, layers=layers, values=values, points=points,
                                eps=self.eps, mode=self.mode, metadata=self._metadata())

    def invariant(self, state) -> float | np.ndarray:
        """The quantity a layer conserves, for ``trackers.ConservationMonitor``.

        walkers: the total probability sum(mu) (S is row-stochastic, so conserved to round-off); features:
        pi . H with pi = ``operator.invariant_weights()`` the left invariant vector of S (pi S = pi, sum 1;
        symmetric pseudo-metrics only, ValueError otherwise), a (k,) array for H of shape (N, k); tokens have
        no invariant (ValueError).
        """
        if self.mode == "tokens":
            raise ValueError("mode='tokens' has no invariant: S changes with the points every layer")
        state = np.asarray(state, dtype=np.float64)
        if self.mode == "walkers":
            return float(np.sum(state))
        if self._pi is None:
            self._pi = self.operator.invariant_weights()
        out = self._pi @ state
        return float(out) if np.ndim(out) == 0 else out

    def _run_info(self, n_layers: int) -> dict:
        """What trackers learn about a run: the stored layout of its ParticleSolution (see Tracker.initialize)."""
        empty = np.empty(0)
        template = ParticleSolution(empty, np.empty(0, dtype=np.int64), empty, self.points, self.eps, self.mode,
                                    self._metadata())
        arrays, config = template.to_storage()
        static = {k: v for k, v in arrays.items() if k not in ("times", "layers", "values")}
        return {"description": f"{self.mode} layers", "kind": "ParticleSolution", "config": config,
                "arrays": static, "step_name": "layers", "n_total": n_layers, "dt": self.eps / 2.0}

    def _metadata(self) -> dict:
        op = self.operator
        meta = {"n": self.n, "normalization": list(op.normalization), "backend": op.backend, "device": op.device,
                "dtype": op.dtype,
                "truncated": op.truncated, "plan": op.plan, "tolerance": op.tolerance, "domain": op.domain.to_config()}
        try:
            meta["metric"] = op.metric.to_config()
        except ValueError:
            meta["metric"] = repr(op.metric)
        return meta
