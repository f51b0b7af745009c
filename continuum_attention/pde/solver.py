"""The attention-limit PDE on a grid: :class:`AttentionLimitPDE` and its :class:`PDESolution`.

Time scales: the operator At = Delta_g + 2 <grad log p, grad .>_g relaxes a Fourier mode of wavelength l in
time l^2 / (4 pi^2) (uniform p, Euclidean metric), and the whole domain in about L^2 / (4 pi^2); one grid cell
relaxes in about h^2 / (2 d), which is the explicit step limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy import ndimage

from .._validation import describe, integer, option, positive_float, positive_int, real_array
from ..densities import Density
from ..domains import domain_from_config
from ..grid import Grid
from ..metrics import as_metric
from ..trackers import ProgressBar, SnapshotRecorder, TrackerGroup
from .operators import FORMS, FluxOperator, build_operator, resolve_metric
from .steppers import BACKENDS, EXACT_MAX_NODES, LINEAR_SOLVERS, STEPPERS, LinearSolve, Stepper, stepper_class

__all__ = ["AttentionLimitPDE", "PDESolution", "METHODS", "BACKENDS", "EXACT_MAX_NODES", "MAX_STEPS"]

#: Default limit on the time steps of one solve (``max_steps=`` raises it): t_final=1e300 is refused at once.
MAX_STEPS = 100_000_000

METHODS = tuple(STEPPERS)  # the built-in steppers, in registration order (steppers.py defines them)


@dataclass
class PDESolution:
    """Snapshots of a PDE solve.

    Attributes
    ----------
    times : (n_snapshots,) array, from 0 to t_final, equally spaced.
    values : (n_snapshots, *grid.shape) array; H for forms "features" and "heat", the walkers' density rho
        (w.r.t. dvol_g) for form "walkers".
    grid, form, method : what produced it; ``dt`` the step used (NaN for "exact"), ``n_steps`` their number.
    """

    times: np.ndarray
    values: np.ndarray
    grid: Grid
    form: str
    method: str = ""
    dt: float = math.nan
    n_steps: int = 0
    info: dict = field(default_factory=dict)

    def interpolate(self, points, index: int = -1) -> np.ndarray:
        """Cubic-spline interpolation of snapshot ``index`` at ``points`` (M, d) -> (M,).

        Cubic B-spline interpolation of the nodal values (scipy.ndimage.map_coordinates, order 3): error
        O(h^4) for smooth data. On a Torus the spline is periodic; on a Box the data are continued by even
        reflection about the walls (the no-flux condition), which is O(h^4) where the normal derivative
        vanishes at the wall and O(h^2) near a wall where it does not. Points outside a Box raise ValueError.
        """
        grid = self.grid
        x = grid.domain.validate_points(points, name="points")
        n = self.values.shape[0]
        if not -n <= int(index) < n:
            raise ValueError(f"index={index} is out of range for {n} snapshots")
        offset = 0.0 if grid.periodic else 0.5
        coords = ((x - grid.domain.lower) / grid.spacing - offset).T
        mode = "grid-wrap" if grid.periodic else "reflect"
        return ndimage.map_coordinates(self.values[int(index)], coords, order=3, mode=mode, prefilter=True)

    def to_storage(self) -> tuple[dict, dict]:
        """Arrays and plain-data configuration for :func:`continuum_attention.storage.save_result`."""
        config = {"grid": self.grid.to_config(), "form": self.form, "method": self.method, "dt": self.dt,
                  "n_steps": self.n_steps, "info": self.info}
        return {"times": self.times, "values": self.values}, config

    @classmethod
    def from_storage(cls, arrays: dict, config: dict) -> "PDESolution":
        grid = Grid(domain_from_config(config["grid"]["domain"]), config["grid"]["shape"])
        return cls(arrays["times"], arrays["values"], grid, config["form"], config["method"], float(config["dt"]),
                   int(config["n_steps"]), dict(config.get("info", {})))


class AttentionLimitPDE:
    """Finite-volume solver for the continuum limit of attention (THEORY.md section 3).

    Forms (p the density w.r.t. dvol_g, p = q / sqrt|g| for the coordinate density q of ``density``):

    * ``"features"``: dH/dt = At H = (p^2 sqrt|g|)^-1 d_i(p^2 sqrt|g| g^ij d_j H). Discretised as
      (1/w) D H with conservative face fluxes, so the p^2-weighted mean sum_n w_n H_n (the discrete
      int H p^2 dvol_g) is conserved to round-off.
    * ``"walkers"``: d rho/dt = Delta_g rho - div_g(2 rho grad log p) = (1/sqrt|g|) d_i(a^ij d_j(rho/p^2)).
      Evolved as the coordinate mass m = rho sqrt|g| with dm/dt = D(m/w): total mass conserved to round-off,
      discrete stationary state m = w exactly (rho proportional to p^2). For a diagonal metric tensor D W^-1
      has non-negative off-diagonals (the square-root-approximation / Scharfetter-Gummel-type M-matrix form),
      so explicit Euler within :meth:`max_stable_dt` and implicit Euler preserve positivity. With mixed
      (off-diagonal) metric terms positivity is NOT guaranteed (the 9-point stencil has negative corner
      weights -|a^xy|/(2 h_x h_y)); mass conservation and the exact stationary state still hold.
      Input and output are rho.

    Self-adjointness: the discrete features operator is self-adjoint in the p^2-weighted inner product
    (D symmetric) for every metric and density, mixed terms included, so its spectrum is real and the
    discrete energy sum H^T (-D) H decays, as in the continuum.
    * ``"heat"`` (Theorem 4; n = dim must not be 2): dH/dt = F Delta_g~ H, g~ = F g, F = p^(4/(n-2))
      (n = 1: F = p^-4), discretised from g~ as (F/sqrt|g~|) d_i(sqrt|g~| g~^ij d_j H).

    Parameters
    ----------
    grid : Grid
        On a Torus (periodic) or a Box (no-flux walls, cell-centred).
    density : Density
        Coordinate density q; must be positive at every node.
    metric : None, (d, d) array or metric object
        None: Euclidean. A constant SPD matrix M: Mahalanobis, g = M, Delta_g H = tr(M^-1 Hess H) (mixed
        derivatives included). An object with ``tensor(points) -> (P, d, d)``, ``is_metric`` (False raises
        ValueError: a pseudo-metric that is not a metric has no PDE limit) and optionally ``is_constant``
        (True: the tensor is evaluated once; otherwise at every node, a spatially varying metric).
    form : {"features", "walkers", "heat"}
    backend : {"numba", "numpy"}
        Kernels of the matrix-free operator (:meth:`apply`, :meth:`attention_operator`, explicit steps): Numba,
        or the plain NumPy references of ``pde/_kernels.py`` (same results to round-off). The sparse-matrix
        methods (implicit, exact) do not depend on it.
    """

    def __init__(self, grid: Grid, density: Density, *, metric=None, form: str = "features", backend: str = "numba"):
        if not isinstance(grid, Grid):
            raise TypeError(f"grid must be a Grid, got grid={describe(grid)}")
        if not isinstance(density, Density):
            raise TypeError(f"density must be a Density, got density={describe(density)}")
        if density.domain.dim != grid.dim:
            raise ValueError(f"density has dimension {density.domain.dim}, grid has dimension {grid.dim}")
        option(form, "form", FORMS)
        self.backend = option(backend, "backend", BACKENDS)
        self.grid, self.density, self.form, self.metric = grid, density, form, metric
        self._metric_field = resolve_metric(metric, grid)
        self._op, coeffs = build_operator(grid, density, self._metric_field, form)
        self._features_op: FluxOperator | None = self._op if form == "features" else None
        self._sqrtg = coeffs["sqrtg"].reshape(grid.shape)
        self._p = coeffs["p"].reshape(grid.shape)

    # -- nodal quantities ------------------------------------------------------------------------------

    @classmethod
    def from_problem(cls, problem, shape, *, form: str = "features", backend: str = "numba") -> "AttentionLimitPDE":
        """The PDE of a :class:`~continuum_attention.problem.Problem` on ``Grid(problem.domain, shape)``."""
        return cls(Grid(problem.domain, shape), problem.density, metric=problem.metric, form=form, backend=backend)

    @property
    def p(self) -> np.ndarray:
        """Density w.r.t. dvol_g at the nodes, p = q / sqrt|g| (grid.shape)."""
        return self._p

    @property
    def sqrt_det_g(self) -> np.ndarray:
        """sqrt|g| at the nodes (grid.shape)."""
        return self._sqrtg

    @property
    def weights(self) -> np.ndarray:
        """Node weights w = p^2 sqrt|g| (grid.shape): the features form conserves sum w H."""
        return self._p**2 * self._sqrtg

    def invariant(self, values) -> float:
        """The conserved quantity: int H p^2 dvol_g (features, heat) or the mass int rho dvol_g (walkers).

        ``values`` as the solution stores them (callable or array); what ``trackers.ConservationMonitor`` records.
        """
        u = self._as_grid_array(values, "values")
        factor = self._sqrtg if self.form == "walkers" else self.weights
        return float(np.sum(factor * u) * self.grid.cell_volume)

    def walker_equilibrium(self) -> np.ndarray:
        """Discrete stationary walker density rho = p^2 / int p^2 dvol_g (grid.shape)."""
        w = self.weights
        return self._p**2 / (w.sum() * self.grid.cell_volume)

    # -- operators -------------------------------------------------------------------------------------
    @property
    def _reference(self) -> bool:
        return self.backend == "numpy"

    def _to_state(self, u: np.ndarray) -> np.ndarray:
        return u * self._sqrtg if self.form == "walkers" else u

    def _from_state(self, s: np.ndarray) -> np.ndarray:
        return s / self._sqrtg if self.form == "walkers" else s

    def apply(self, values) -> np.ndarray:
        """The form's right-hand side at the nodes, matrix-free (Numba kernel), grid.shape.

        features/heat: At H; walkers: d rho/dt for the walker density rho.
        """
        u = self._as_grid_array(values, "values")
        s = self._op.apply(self._to_state(u), reference=self._reference).reshape(self.grid.shape)
        return self._from_state(s)

    def attention_operator(self, H) -> np.ndarray:
        """At H at the nodes (the features operator, whatever the form), for comparison with particles.

        ``H`` is a callable of points (P, d) -> (P,) or an array of shape grid.shape or (grid.size,).
        """
        u = self._as_grid_array(H, "H")
        if self._features_op is None:
            self._features_op, _ = build_operator(self.grid, self.density, self._metric_field, "features")
        return self._features_op.apply(u, reference=self._reference).reshape(self.grid.shape)

    def matrix(self) -> sp.csr_matrix:
        """The form's operator as a sparse (size x size) matrix on C-ordered nodal values (H or rho)."""
        L = self._op.matrix()
        if self.form != "walkers" or np.ptp(self._sqrtg) == 0:
            return L
        s = self._sqrtg.ravel()
        return sp.csr_matrix(sp.diags(1.0 / s) @ L @ sp.diags(s))

    def max_stable_dt(self) -> float:
        """Explicit Euler stability limit dt <= 1 / max_i |L_ii| (Gershgorin; see FluxOperator.max_stable_dt).

        About h^2 / (2 d max(a/w)): for uniform p and Euclidean metric exactly h^2 / (2 d).
        """
        return self._op.max_stable_dt()

    # -- input handling ----------------------------------------------------------------------------------
    def _as_grid_array(self, values, name: str) -> np.ndarray:
        grid = self.grid
        if callable(values):
            u = real_array(values(grid.points), f"{name}(points)")
            if u.size != grid.size:
                raise ValueError(f"{name}(points) must return {grid.size} values (one per node), got shape {u.shape}")
        else:
            u = real_array(values, name)
            if u.shape not in (grid.shape, (grid.size,)):
                raise ValueError(f"{name} must have shape {grid.shape} or ({grid.size},), got shape {u.shape}")
        u = u.reshape(grid.shape)
        return np.ascontiguousarray(u)

    # -- time stepping ---------------------------------------------------------------------------------
    def _stepper(self, method: str, linear_solver: str = "auto") -> Stepper:
        # "auto" is every stepper's default: not passed, so a registered stepper need not know the keyword
        options = {} if linear_solver == "auto" else {"linear_solver": linear_solver}
        return stepper_class(method)(self._op, backend=self.backend, **options)

    def default_dt(self, method: str) -> float:
        """Default step: the time error of the resolved modes stays below their O(h^2) space error.

        With tau = 1 / max|L_ii| (the explicit limit; tau = h^2 / (2 d D) for diffusivity D), d = dim and
        N = max(grid.shape):

        * explicit: 0.9 tau;
        * Crank-Nicolson: d N tau / (4 pi), i.e. dt = c h^2 / D with c = N / (8 pi). A mode with k h = theta
          has space error theta^2 / 12 and time error (c theta^2)^2 / 12 per unit lambda t, so time <= space
          for every mode up to the 4th harmonic of the longest side (theta <= 8 pi / N);
        * implicit Euler: d tau / 3 = h^2 / (6 D): its first-order error lambda dt / 2 = theta^2 / 12 per unit
          lambda t matches the space error for every mode, so it needs steps of the explicit size.

        Each rule is its stepper's ``default_dt`` (:mod:`continuum_attention.pde.steppers`); "exact" has none
        (ValueError), nor has an unknown method.
        """
        return self._stepper(method).default_dt()

    def solve(
        self,
        H0,
        t_final: float,
        *,
        method: str = "crank-nicolson",
        n_snapshots: int = 11,
        dt: float | None = None,
        progress: bool | None = None,
        trackers=None,
        max_steps: int = MAX_STEPS,
        linear_solver: str = "auto",
    ) -> PDESolution:
        """Integrate from t = 0 to ``t_final``, storing ``n_snapshots`` equally spaced snapshots (ends included).

        Parameters
        ----------
        H0 : callable (P, d) -> (P,) or array of shape grid.shape or (grid.size,)
            Initial H (features, heat) or walker density rho (walkers).
        t_final : float > 0
        method : a name in :data:`~continuum_attention.pde.steppers.STEPPERS`
            "explicit": fused Euler steps (several steps per pass over memory where the operator allows it, see
            :class:`~continuum_attention.pde.steppers.ExplicitEuler`). ``dt=None`` uses 0.9 x
            :meth:`max_stable_dt` and logs it at INFO level (logger ``continuum_attention.pde.solver``); a ``dt``
            above the limit raises ValueError. "crank-nicolson" (2nd order) / "implicit-euler" (1st order,
            positivity-preserving): sparse matrix assembled once, its linear solver set up once (see
            ``linear_solver``) and reused for every step; ``dt=None`` uses :meth:`default_dt`. "exact": expm_multiply, for grids up to EXACT_MAX_NODES
            nodes (``dt`` unused). Steps are shortened so that every snapshot interval holds a whole number of them.
        n_snapshots : int >= 2
            The snapshots of the returned solution (a :class:`~continuum_attention.trackers.SnapshotRecorder`).
        dt : float > 0, optional
        progress : bool, optional
            tqdm bar over the time steps (a :class:`~continuum_attention.trackers.ProgressBar`); None shows it
            only on a terminal, False never.
        trackers : tracker or list of trackers, optional
            Observers of the run (:mod:`continuum_attention.trackers`, ``storage.HDF5Writer``). They see the
            state as the solution stores it (H or rho, grid.shape) at the steps they ask for, with
            ``solver=self`` (:meth:`invariant`); the solver advances straight from one visited step to the next.
        max_steps : int
            Refuse, before starting, a solve of more time steps than this (default :data:`MAX_STEPS`, 10^8).
        linear_solver : {"auto", "direct", "amg"}
            The implicit methods' linear solver (:class:`~continuum_attention.pde.steppers.LinearSolve`; other
            methods ignore it): "direct" factorises the step matrix once (sparse LU), "amg" runs
            AMG-preconditioned conjugate gradients on its symmetric (p^2-weighted) form, "auto" picks by
            :func:`~continuum_attention.pde.steppers.choose_linear_solver` (direct up to 1024^2 nodes in 2-D,
            20^3 in 3-D, and while the LU's estimated memory fits half the budget; AMG above). The choice is
            logged (INFO) and stored as ``info["linear_solver"]`` of the solution. A direct solve whose
            estimated memory exceeds the budget (``_validation.memory_budget``) raises ValueError before it
            allocates.
        """
        linear_solver = option(linear_solver, "linear_solver", LINEAR_SOLVERS)
        stepper = self._stepper(method, linear_solver)
        t_final = positive_float(t_final, "t_final")
        n_snapshots = integer(n_snapshots, "n_snapshots", minimum=2)
        if dt is not None:
            dt = positive_float(dt, "dt")
        s0 = self._to_state(self._as_grid_array(H0, "H0")).ravel()
        interval = t_final / (n_snapshots - 1)
        max_steps = positive_int(max_steps, "max_steps")
        step, n_sub = stepper.step_size(dt, interval)
        n_total = n_sub * (n_snapshots - 1)
        if n_total > max_steps:
            raise ValueError(f"t_final={t_final!r} needs {n_total} steps of {method!r} (dt={step:.3g}), more than "
                             f"max_steps={max_steps}; pass max_steps= to run that long")
        stepper.prepare(step)
        reported_dt, reported_steps = stepper.reported(step, n_total)

        def time(n: int) -> float:
            # whole intervals times their length: snapshot times equal np.linspace(0, t_final, n_snapshots)
            return t_final if n == n_total else (n // n_sub) * interval + (n % n_sub) * step

        recorder = SnapshotRecorder(n_snapshots=n_snapshots)
        group = TrackerGroup([recorder, *_progress(progress), *TrackerGroup(trackers).trackers])
        visits = group.plan(n_total, step)
        info = self._run_info(method, reported_dt, reported_steps, n_total, step)
        with self._op.threads(), group.running(self._from_state(s0.reshape(self.grid.shape)), 0.0, self, info):
            for n, s in stepper.trajectory(s0, visits, time):
                group.handle(self._from_state(np.reshape(s, self.grid.shape)), time(n), n)
        provenance = self._provenance(H0)
        chosen = getattr(stepper, "solve", None)
        if isinstance(chosen, LinearSolve):
            provenance["linear_solver"] = chosen.kind
        return PDESolution(np.array(recorder.times), recorder.values, self.grid, self.form, method,
                           reported_dt, reported_steps, provenance)

    def _provenance(self, H0) -> dict:
        """What a stored solution needs to be rerun: density, metric, initial condition, backend.

        Objects without a plain-data form (a lambda, a custom density) are recorded by their repr.
        """
        def config_or_repr(obj):
            try:
                return obj.to_config()
            except (AttributeError, NotImplementedError, ValueError, TypeError):
                return repr(obj)

        initial = getattr(H0, "source", None)  # a configuration Expression
        if initial is None:
            initial = repr(H0) if callable(H0) else "array"
        return {"density": config_or_repr(self.density),
                "metric": None if self.metric is None else config_or_repr(as_metric(self.metric)),
                "initial": initial, "backend": self.backend}

    def _run_info(self, method: str, dt: float, n_steps: int, n_total: int, step: float) -> dict:
        """What trackers learn about a solve: the stored layout of its PDESolution (see Tracker.initialize)."""
        empty = np.empty((0, *self.grid.shape))
        arrays, config = PDESolution(np.empty(0), empty, self.grid, self.form, method, dt, n_steps).to_storage()
        static = {k: v for k, v in arrays.items() if k not in ("times", "values")}
        return {"description": f"{self.form} {method}", "kind": "PDESolution", "config": config,
                "arrays": static, "step_name": "steps", "n_total": n_total, "dt": step}


def _progress(progress: bool | None) -> list[ProgressBar]:
    """The ``progress=`` shorthand: a ProgressBar unless False."""
    return [] if progress is False else [ProgressBar(progress)]
