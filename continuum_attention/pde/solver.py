"""The attention-limit PDE on a grid: :class:`AttentionLimitPDE` and its :class:`PDESolution`.

Time scales: the operator At = Delta_g + 2 <grad log p, grad .>_g relaxes a Fourier mode of wavelength l in
time l^2 / (4 pi^2) (uniform p, Euclidean metric), and the whole domain in about L^2 / (4 pi^2); one grid cell
relaxes in about h^2 / (2 d), which is the explicit step limit.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.sparse.linalg import expm_multiply, splu
from tqdm.auto import tqdm

from .._validation import positive_float
from ..densities import Density
from ..domains import domain_from_config
from ..grid import Grid
from .operators import FORMS, FluxOperator, build_operator, resolve_metric

__all__ = ["AttentionLimitPDE", "PDESolution", "METHODS", "EXACT_MAX_NODES"]

logger = logging.getLogger(__name__)

METHODS = ("explicit", "crank-nicolson", "implicit-euler", "exact")
EXACT_MAX_NODES = 20_000  # expm_multiply costs ~ ||t L||_1 matrix products: a reference for small grids only
_EXPLICIT_SAFETY = 0.9  # default explicit step as a fraction of the Gershgorin limit (see solve)


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
    """

    def __init__(self, grid: Grid, density: Density, *, metric=None, form: str = "features"):
        if not isinstance(grid, Grid):
            raise ValueError(f"grid must be a Grid, got grid={grid!r}")
        if not isinstance(density, Density):
            raise ValueError(f"density must be a Density, got density={density!r}")
        if density.domain.dim != grid.dim:
            raise ValueError(f"density has dimension {density.domain.dim}, grid has dimension {grid.dim}")
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got form={form!r}")
        self.grid, self.density, self.form, self.metric = grid, density, form, metric
        self._metric_field = resolve_metric(metric, grid)
        self._op, coeffs = build_operator(grid, density, self._metric_field, form)
        self._features_op: FluxOperator | None = self._op if form == "features" else None
        self._sqrtg = coeffs["sqrtg"].reshape(grid.shape)
        self._p = coeffs["p"].reshape(grid.shape)

    # -- nodal quantities ------------------------------------------------------------------------------

    @classmethod
    def from_problem(cls, problem, shape, *, form: str = "features") -> "AttentionLimitPDE":
        """The PDE of a :class:`~continuum_attention.problem.Problem` on ``Grid(problem.domain, shape)``."""
        return cls(Grid(problem.domain, shape), problem.density, metric=problem.metric, form=form)
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
        """The conserved quantity: int H p^2 dvol_g (features, heat) or the mass int rho dvol_g (walkers)."""
        u = self._as_grid_array(values, "values")
        factor = self._sqrtg if self.form == "walkers" else self.weights
        return float(np.sum(factor * u) * self.grid.cell_volume)

    def walker_equilibrium(self) -> np.ndarray:
        """Discrete stationary walker density rho = p^2 / int p^2 dvol_g (grid.shape)."""
        w = self.weights
        return self._p**2 / (w.sum() * self.grid.cell_volume)

    # -- operators -------------------------------------------------------------------------------------
    def _to_state(self, u: np.ndarray) -> np.ndarray:
        return u * self._sqrtg if self.form == "walkers" else u

    def _from_state(self, s: np.ndarray) -> np.ndarray:
        return s / self._sqrtg if self.form == "walkers" else s

    def apply(self, values) -> np.ndarray:
        """The form's right-hand side at the nodes, matrix-free (Numba kernel), grid.shape.

        features/heat: At H; walkers: d rho/dt for the walker density rho.
        """
        u = self._as_grid_array(values, "values")
        s = self._op.apply(self._to_state(u)).reshape(self.grid.shape)
        return self._from_state(s)

    def attention_operator(self, H) -> np.ndarray:
        """At H at the nodes (the features operator, whatever the form), for comparison with particles.

        ``H`` is a callable of points (P, d) -> (P,) or an array of shape grid.shape or (grid.size,).
        """
        u = self._as_grid_array(H, "H")
        if self._features_op is None:
            self._features_op, _ = build_operator(self.grid, self.density, self._metric_field, "features")
        return self._features_op.apply(u).reshape(self.grid.shape)

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
            u = np.asarray(values(grid.points), dtype=np.float64)
            if u.size != grid.size:
                raise ValueError(f"{name}(points) must return {grid.size} values (one per node), got shape {u.shape}")
        else:
            u = np.asarray(values, dtype=np.float64)
            if u.shape not in (grid.shape, (grid.size,)):
                raise ValueError(f"{name} must have shape {grid.shape} or ({grid.size},), got shape {u.shape}")
        u = u.reshape(grid.shape)
        if not np.all(np.isfinite(u)):
            raise ValueError(f"{name} contains NaN or infinite values")
        return np.ascontiguousarray(u)

    # -- time stepping ---------------------------------------------------------------------------------
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
        """
        tau = self.max_stable_dt()
        if method == "explicit":
            return _EXPLICIT_SAFETY * tau
        d, n = self.grid.dim, max(self.grid.shape)
        if method == "crank-nicolson":
            return d * n * tau / (4.0 * math.pi)
        if method == "implicit-euler":
            return d * tau / 3.0
        raise ValueError(f"method must be one of {METHODS}, got method={method!r}")

    def solve(
        self,
        H0,
        t_final: float,
        *,
        method: str = "crank-nicolson",
        n_snapshots: int = 11,
        dt: float | None = None,
        progress: bool | None = None,
    ) -> PDESolution:
        """Integrate from t = 0 to ``t_final``, storing ``n_snapshots`` equally spaced snapshots (ends included).

        Parameters
        ----------
        H0 : callable (P, d) -> (P,) or array of shape grid.shape or (grid.size,)
            Initial H (features, heat) or walker density rho (walkers).
        t_final : float > 0
        method : {"explicit", "crank-nicolson", "implicit-euler", "exact"}
            "explicit": fused Numba Euler steps (several steps per pass over memory where the operator
            allows it, see :meth:`_explicit_advance`). ``dt=None`` uses 0.9 x :meth:`max_stable_dt` and logs it at
            INFO level (logger ``continuum_attention.pde.solver``); a ``dt`` above the limit raises ValueError.
            "crank-nicolson" (2nd order) / "implicit-euler" (1st order, positivity-preserving): sparse matrix
            assembled once, LU-factorised once (splu) and reused for every step; ``dt=None`` uses
            :meth:`default_dt`. "exact": expm_multiply, for grids up to EXACT_MAX_NODES nodes (``dt`` unused).
            Steps are shortened so that every snapshot interval holds a whole number of them.
        n_snapshots : int >= 2
        dt : float > 0, optional
        progress : bool, optional
            tqdm bar over the time steps; None shows it only on a terminal, False never.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got method={method!r}")
        t_final = positive_float(t_final, "t_final")
        if int(n_snapshots) != n_snapshots or n_snapshots < 2:
            raise ValueError(f"n_snapshots must be an integer >= 2, got n_snapshots={n_snapshots!r}")
        n_snapshots = int(n_snapshots)
        if dt is not None:
            dt = positive_float(dt, "dt")
        s0 = self._to_state(self._as_grid_array(H0, "H0")).ravel()
        times = np.linspace(0.0, t_final, n_snapshots)
        if method == "exact":
            states, step, n_steps = self._solve_exact(s0, t_final, n_snapshots), math.nan, 0
        else:
            step, n_sub = self._step_size(method, dt, t_final / (n_snapshots - 1))
            if method == "explicit":
                advance = self._explicit_advance(step)
            else:
                stepper = self._implicit_stepper(method, step)

                def advance(s, n):
                    for _ in range(n):
                        s = stepper(s)
                    return s

            states = [s0]
            s = s0
            bar = tqdm(total=n_sub * (n_snapshots - 1), desc=f"{self.form} {method}", disable=None if progress is None else not progress)
            with self._op.threads(), bar:
                for _ in range(n_snapshots - 1):
                    s = advance(s, n_sub)
                    states.append(np.array(s, copy=True))
                    bar.update(n_sub)
            n_steps = n_sub * (n_snapshots - 1)
        values = np.stack([self._from_state(np.reshape(s, self.grid.shape)) for s in states])
        return PDESolution(times, values, self.grid, self.form, method, step, n_steps)

    def _step_size(self, method: str, dt: float | None, interval: float) -> tuple[float, int]:
        if method == "explicit":
            limit = self.max_stable_dt()
            if dt is None:
                dt = self.default_dt("explicit")
                logger.info("explicit: dt=None, using dt=%.6g (0.9 x stability limit %.6g)", dt, limit)
            elif dt > limit * (1.0 + 1e-12):
                raise ValueError(
                    f"dt={dt:.6g} exceeds the explicit stability limit max_stable_dt()={limit:.6g} "
                    "(1 / max|L_ii|); use a smaller dt, dt=None, or an implicit method"
                )
        elif dt is None:
            dt = self.default_dt(method)
        n_sub = max(1, math.ceil(interval / dt))
        if interval / n_sub > dt:  # ceil can round down by an ulp: never step beyond what was allowed
            n_sub += 1
        return interval / n_sub, n_sub

    def _explicit_advance(self, dt: float) -> Callable[[np.ndarray, int], np.ndarray]:
        """``advance(s, n)``: n explicit Euler steps of size dt (one snapshot interval), into alternating buffers.

        Where the operator fuses steps (:attr:`FluxOperator.can_fuse_steps`: features form, constant diagonal
        metric), the n steps run as groups of :meth:`FluxOperator.fused_steps` steps, each group one pass of the
        multi-step kernel (temporal blocking), then one shorter group for the remainder (a single step runs the
        single-step kernel); otherwise as n single fused steps. Every step has the same dt, so the snapshot times
        are unchanged, and the result equals n single steps to round-off.
        """
        op = self._op
        buffers = [np.empty(op.shape3), np.empty(op.shape3)]
        scratch = np.empty(op.shape3) if op.cin is not None else None
        group = op.fused_steps() if op.can_fuse_steps else 1
        turn = [0]

        def advance(s: np.ndarray, n: int) -> np.ndarray:
            s = np.reshape(s, op.shape3)
            while n > 0:
                k = min(group, n)
                out = buffers[turn[0]]
                turn[0] ^= 1
                s = op.euler_steps(s, out, dt, k) if k > 1 else op.euler_step(s, out, dt, scratch)
                n -= k
            return s

        return advance

    def _implicit_stepper(self, method: str, dt: float) -> Callable[[np.ndarray], np.ndarray]:
        L = self._op.matrix()
        eye = sp.identity(L.shape[0], format="csr")
        theta = 0.5 if method == "crank-nicolson" else 1.0
        lu = splu(sp.csc_matrix(eye - (theta * dt) * L))
        if theta == 1.0:
            return lambda s: lu.solve(np.ravel(s))
        rhs = sp.csr_matrix(eye + (0.5 * dt) * L)
        return lambda s: lu.solve(rhs @ np.ravel(s))

    def _solve_exact(self, s0: np.ndarray, t_final: float, n_snapshots: int) -> list[np.ndarray]:
        if self.grid.size > EXACT_MAX_NODES:
            raise ValueError(
                f"method='exact' is a reference for small grids (at most {EXACT_MAX_NODES} nodes); "
                f"this grid has {self.grid.size}: use 'crank-nicolson' or 'implicit-euler'"
            )
        L = sp.csc_matrix(self._op.matrix())
        out = expm_multiply(L, s0, start=0.0, stop=t_final, num=n_snapshots, endpoint=True)
        return list(out)


