"""Where particles meet the PDE: errors, convergence studies and rate fits (THEORY.md section 4).

* :func:`limit_operator` -- At f = (p^2 sqrt|g|)^-1 d_i(p^2 sqrt|g| g^ij d_j f) at arbitrary points, by
  finite differences of a callable f (p = q / sqrt|g|, q the sampling density).
* :func:`consistency_error` -- (S_eps - I) f / (eps/2) against At f at the sample points.
* :func:`propagation_error` -- K attention layers against the PDE at t = K eps / 2.
* :func:`walker_error` -- the walkers' mass as a density against the Fokker-Planck solution (L1, and W1 in 1-D).
* :class:`ConvergenceStudy` -- a sweep over N, eps and seeds with resumable HDF5 cells, confidence intervals,
  fitted slopes and the empirical best eps(N).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from ._validation import nonnegative_int, option, positive_float, positive_int, real_array
from .domains import Torus, as_points
from .metrics import as_metric
from .particles import n_layers_for
from .problem import Problem

__all__ = [
    "limit_operator",
    "consistency_error",
    "propagation_error",
    "walker_error",
    "ErrorResult",
    "ConvergenceStudy",
    "ConvergenceResult",
    "CellStore",
    "fit_slope",
    "circular_wasserstein1",
    "n_layers_for",
    "RunResult",
    "run_problem",
    "reference_solution",
    "cell_key",
    "measure_cell",
    "completed",
]


# ---------------------------------------------------------------------------------------------------------
# The limit operator at points
# ---------------------------------------------------------------------------------------------------------


def _inverse_tensor(metric, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """g^-1 (M, d, d) and sqrt|g| (M,) at points (Euclidean when metric is None)."""
    m, d = points.shape
    metric = as_metric(metric)
    if not metric.is_metric:
        raise ValueError(f"{metric!r} is not a metric: it has no attention-limit PDE (THEORY section 3)")
    g = np.asarray(metric.tensor(points), dtype=np.float64).reshape(m, d, d)
    return np.linalg.inv(g), np.sqrt(np.linalg.det(g))


def limit_operator(
    f: Callable[[np.ndarray], np.ndarray], density, points, metric=None, *, step: float | None = None
) -> np.ndarray:
    """At f at the given points, by central finite differences (error O(step^2)).

    At f = (p^2 sqrt|g|)^-1 d_i( p^2 sqrt|g| g^ij d_j f ) with p = q / sqrt|g| (THEORY section 3), i.e.
    At f = w^-1 div(w g^-1 grad f) with w = q^2 / sqrt|g|. Units: 1/length^2 times those of f; one attention
    layer advances time by eps/2 along dH/dt = At H.
    """
    domain = density.domain
    x = domain.validate_points(points) if domain.bounded else as_points(points, domain.dim)
    d = x.shape[1]
    scale = float(np.min(domain.lengths)) if domain.bounded else 1.0
    h = step if step is not None else 2e-4 * scale

    def fw(y):
        return np.asarray(f(domain.wrap(y)), dtype=np.float64)

    def grad(fn, y):
        out = np.empty_like(y)
        for i in range(d):
            e = np.zeros(d)
            e[i] = h
            out[:, i] = (fn(y + e) - fn(y - e)) / (2 * h)
        return out

    if as_metric(metric).is_constant:
        ginv, _ = _inverse_tensor(metric, x[:1])
        ginv = ginv[0]
        hess_term = np.zeros(len(x))
        f0 = fw(x)
        for i, j in itertools.product(range(d), range(d)):
            if ginv[i, j] == 0:
                continue
            ei, ej = np.eye(d)[i] * h, np.eye(d)[j] * h
            if i == j:
                second = (fw(x + ei) - 2 * f0 + fw(x - ei)) / h**2
            else:
                second = (fw(x + ei + ej) - fw(x + ei - ej) - fw(x - ei + ej) + fw(x - ei - ej)) / (4 * h**2)
            hess_term += ginv[i, j] * second
        glog = density.grad_log_pdf(domain.wrap(x))  # grad log p = grad log q for constant g
        return hess_term + 2 * np.einsum("mi,ij,mj->m", glog, ginv, grad(fw, x))

    def flux(y):  # w g^-1 grad f, w = q^2 / sqrt|g|
        yw = domain.wrap(y)
        ginv, sqrtg = _inverse_tensor(metric, yw)
        w = density.pdf(yw) ** 2 / sqrtg
        return w[:, None] * np.einsum("mij,mj->mi", ginv, grad(fw, y))

    div = np.zeros(len(x))
    for i in range(d):
        e = np.zeros(d)
        e[i] = h
        div += (flux(x + e)[:, i] - flux(x - e)[:, i]) / (2 * h)
    _, sqrtg = _inverse_tensor(metric, domain.wrap(x))
    return div / (density.pdf(domain.wrap(x)) ** 2 / sqrtg)


# ---------------------------------------------------------------------------------------------------------
# Errors for one (N, eps, seed)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ErrorResult:
    """Errors of one particle run against the continuum reference, at the sample points.

    ``rms`` and ``max`` are absolute; ``relative`` is rms divided by the RMS of the reference.
    """

    quantity: str
    N: int
    eps: float
    seed: int
    rms: float
    max: float
    relative: float
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {"rms": self.rms, "max": self.max, "relative": self.relative, **self.extra}


def _errors(quantity, N, eps, seed, approx, exact, **extra) -> ErrorResult:
    diff = np.asarray(approx) - np.asarray(exact)
    rms = float(np.sqrt(np.mean(diff**2)))
    ref = float(np.sqrt(np.mean(np.asarray(exact) ** 2)))
    return ErrorResult(quantity, int(N), float(eps), int(seed), rms, float(np.max(np.abs(diff))), rms / ref if ref > 0 else np.inf, extra)


def _prepare(problem, eps, form, solution, grid_shape, method):
    """Validated eps, the layer count K and the PDE solution of ``form`` (computed if not given)."""
    eps = positive_float(eps, "eps")
    if not isinstance(problem, Problem):
        raise TypeError(f"problem must be a Problem, got problem={problem!r}")
    K = n_layers_for(problem.t_final, eps)
    if solution is None:
        solution = reference_solution(problem, form, grid_shape, method)
    return eps, K, solution


def consistency_error(
    problem: Problem, N: int, eps: float, seed: int = 0, *, f: Callable | None = None, operator_kwargs: dict | None = None
) -> ErrorResult:
    """Pointwise consistency error | (S_eps - I) f / (eps/2) - At f | at N sample points.

    Expected (THEORY section 4): bias O(eps) plus sampling error O(N^-1/2 eps^-(1/2 + d/4)).
    ``f`` defaults to the problem's initial condition.
    """
    from .attention import AttentionOperator

    eps, N, seed = positive_float(eps, "eps"), positive_int(N, "N"), nonnegative_int(seed, "seed")
    f = f if f is not None else problem.initial
    if f is None:
        raise ValueError("consistency_error needs a test function f (or a problem with an initial condition)")
    points = problem.density.sample(N, seed)
    op = AttentionOperator(points, eps, metric=problem.metric, domain=problem.domain, **(operator_kwargs or {}))
    fx = f(points)
    discrete = (op.apply(fx) - fx) / (eps / 2)
    exact = limit_operator(f, problem.density, points, problem.metric)
    return _errors("consistency", N, eps, seed, discrete, exact)


def reference_solution(problem: Problem, form: str, grid_shape: int | Sequence[int] = 256,
                       method: str = "crank-nicolson"):
    """The PDE of ``problem`` in ``form`` solved to ``problem.t_final`` (snapshots at 0 and t_final).

    It does not depend on N, eps or the seed: sweeps compute it once and pass it as ``solution``.
    """
    return _pde(problem, form, grid_shape).solve(problem.initial, problem.t_final, method=method, n_snapshots=2)


def _pde(problem: Problem, form: str, grid_shape):
    from .pde import AttentionLimitPDE

    if not problem.domain.bounded:
        raise ValueError(f"the PDE needs a bounded domain (Torus or Box), got {problem.domain!r}")
    return AttentionLimitPDE.from_problem(problem, grid_shape, form=form)


def _features_run(problem, N, eps, seed, solution, grid_shape, method, operator_kwargs):
    from .particles import ParticleSolver

    eps, K, solution = _prepare(problem, eps, "features", solution, grid_shape, method)
    solver = ParticleSolver.from_problem(problem, N, eps, seed=seed, mode="features", **(operator_kwargs or {}))
    points = solver.points
    values = solver.run(problem.initial, n_layers=K, n_snapshots=2, progress=False).values[-1]
    exact = solution.interpolate(points, index=-1)
    return points, values, exact, _errors("propagation", N, eps, seed, values, exact, layers=K)


def propagation_error(
    problem: Problem,
    N: int,
    eps: float,
    seed: int = 0,
    *,
    grid_shape: int | Sequence[int] = 256,
    method: str = "crank-nicolson",
    solution=None,
    operator_kwargs: dict | None = None,
) -> ErrorResult:
    """K = t_final / (eps/2) attention layers on N points against the PDE solution at t_final.

    ``solution`` may pass a precomputed :class:`~continuum_attention.pde.PDESolution` (it does not depend on
    N, eps or the seed) to save work in sweeps.
    """
    return _features_run(problem, N, eps, seed, solution, grid_shape, method, operator_kwargs)[-1]


def circular_wasserstein1(x: np.ndarray, wx: np.ndarray, y: np.ndarray, wy: np.ndarray, length: float) -> float:
    """W1 between two weighted measures on a circle of the given length (Rabin et al.: median shift of CDFs)."""
    pts = np.concatenate([np.mod(x, length), np.mod(y, length)])
    wts = np.concatenate([wx / wx.sum(), -wy / wy.sum()])
    order = np.argsort(pts, kind="stable")
    pts, cdf = pts[order], np.cumsum(wts[order])
    gaps = np.diff(np.append(pts, length + pts[0]))
    # minimise sum |cdf - c| gaps over c: a weighted median of cdf
    o = np.argsort(cdf)
    cw = np.cumsum(gaps[o])
    c = cdf[o][np.searchsorted(cw, 0.5 * cw[-1])]
    return float(np.sum(np.abs(cdf - c) * gaps))


def _walkers_run(problem, N, eps, seed, solution, grid_shape, method, operator_kwargs):
    from .particles import ParticleSolver

    eps, K, solution = _prepare(problem, eps, "walkers", solution, grid_shape, method)
    solver = ParticleSolver.from_problem(problem, N, eps, seed=seed, mode="walkers", **(operator_kwargs or {}))
    points = solver.points
    q = problem.density.pdf(points)
    _, sqrtg = _inverse_tensor(problem.metric, points)
    mu0 = problem.initial(points) * sqrtg / q
    if np.any(mu0 < 0):
        raise ValueError("the walkers' initial density must be non-negative")
    mu = solver.run(mu0 / mu0.sum(), n_layers=K, n_snapshots=2, progress=False).values[-1]
    rho_hat = mu * N * q / sqrtg
    grid = solution.grid
    mass = grid.integrate(solution.values[-1] * _inverse_tensor(problem.metric, grid.points)[1].reshape(grid.shape))
    rho = solution.interpolate(points, index=-1) / mass
    extra = {"l1": float(np.mean(np.abs(rho_hat - rho) * sqrtg / q)), "layers": K}
    if problem.dim == 1:
        nodes = grid.points[:, 0]
        # node masses of rho dvol_g: rho sqrt|g| times the (uniform) cell size
        weights = np.clip(solution.values[-1].ravel(), 0, None) * _inverse_tensor(problem.metric, grid.points)[1]
        if isinstance(problem.domain, Torus):
            extra["w1"] = circular_wasserstein1(points[:, 0], mu, nodes, weights, float(problem.domain.lengths[0]))
        else:
            from scipy.stats import wasserstein_distance

            extra["w1"] = float(wasserstein_distance(points[:, 0], nodes, mu, weights))
    return points, rho_hat, rho, _errors("walkers", N, eps, seed, rho_hat, rho, **extra)


def walker_error(
    problem: Problem,
    N: int,
    eps: float,
    seed: int = 0,
    *,
    grid_shape: int | Sequence[int] = 256,
    method: str = "crank-nicolson",
    solution=None,
    operator_kwargs: dict | None = None,
) -> ErrorResult:
    """Walkers' density against the Fokker-Planck solution at t_final (L1 error; W1 too in 1-D).

    The walkers start from mu_i proportional to rho0(x_i) sqrt|g(x_i)| / q(x_i), the mass of rho0 in the
    cell of x_i (rho0 = the problem's initial condition, normalised); after K layers
    rho_hat(x_i) = mu_i N q(x_i) / sqrt|g(x_i)|. The L1 error int |rho_hat - rho| dvol_g is estimated by its
    Monte Carlo mean over the sample points (``extra['l1']``); ``rms``/``max`` are pointwise.
    """
    return _walkers_run(problem, N, eps, seed, solution, grid_shape, method, operator_kwargs)[-1]


# ---------------------------------------------------------------------------------------------------------
# Sweeps and rates
# ---------------------------------------------------------------------------------------------------------


def fit_slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope of log y against log x and its standard error (0 with two points)."""
    x, y = real_array(x, "x", ndim=1), real_array(y, "y", ndim=1)
    if x.size != y.size:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    for name, v in (("x", x), ("y", y)):
        if np.any(v <= 0):
            raise ValueError(f"a log-log slope needs positive {name}, got {name}={v.tolist()}")
    lx, ly = np.log(x), np.log(y)
    if lx.size < 2:
        raise ValueError(f"a slope needs at least two points, got {lx.size}")
    A = np.vstack([lx, np.ones_like(lx)]).T
    coef, *_ = np.linalg.lstsq(A, ly, rcond=None)
    if lx.size == 2:
        return float(coef[0]), 0.0
    resid = ly - A @ coef
    s2 = resid @ resid / (lx.size - 2)
    cov = s2 * np.linalg.inv(A.T @ A)
    return float(coef[0]), float(np.sqrt(cov[0, 0]))


def cell_key(N: int, eps: float) -> str:
    """The name of the (N, eps) cell in a sweep's store (repr: distinct floats never share a cell)."""
    return f"N={int(N)}_eps={float(eps)!r}"


@dataclass
class ConvergenceResult:
    """Errors of a sweep: ``errors[i, j, s]`` for N_values[i], eps_values[j], seeds[s].

    ``mean`` and the 95% confidence half-width ``ci`` (Student t over seeds) are per (N, eps) cell.
    """

    N_values: np.ndarray
    eps_values: np.ndarray
    seeds: np.ndarray
    errors: np.ndarray
    config: dict = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        return self.errors.mean(axis=2)

    @property
    def ci(self) -> np.ndarray:
        from scipy.stats import t

        s = self.errors.shape[2]
        if s < 2:
            return np.full(self.mean.shape, np.nan)
        return t.ppf(0.975, s - 1) * self.errors.std(axis=2, ddof=1) / np.sqrt(s)

    def slope_in_N(self, eps_index: int = 0) -> tuple[float, float]:
        """Fitted exponent a in error ~ N^a at eps_values[eps_index], with its standard error."""
        return fit_slope(self.N_values, self.mean[:, eps_index])

    def slope_in_eps(self, N_index: int = -1) -> tuple[float, float]:
        """Fitted exponent b in error ~ eps^b at N_values[N_index], with its standard error."""
        return fit_slope(self.eps_values, self.mean[N_index, :])

    def best_eps(self) -> np.ndarray:
        """Empirical eps*(N): minimiser of the mean error, refined by a parabola in (log eps, log error)."""
        out = np.empty(len(self.N_values))
        le = np.log(self.eps_values)
        for i, row in enumerate(np.log(self.mean)):
            j = int(np.argmin(row))
            if 0 < j < len(le) - 1:
                c = np.polyfit(le[j - 1 : j + 2], row[j - 1 : j + 2], 2)
                out[i] = np.exp(np.clip(-c[1] / (2 * c[0]), le[j - 1], le[j + 1])) if c[0] > 0 else np.exp(le[j])
            else:
                out[i] = np.exp(le[j])
        return out

    def best_error(self) -> np.ndarray:
        """Smallest mean error over the eps grid, per N."""
        return self.mean.min(axis=1)

    def best_eps_exponent(self) -> tuple[float, float]:
        """Fitted exponent c in eps*(N) ~ N^c (theory: -1/(3 + d/2))."""
        return fit_slope(self.N_values, self.best_eps())

    def to_storage(self):
        arrays = {"N_values": self.N_values, "eps_values": self.eps_values, "seeds": self.seeds, "errors": self.errors}
        return arrays, self.config

    @classmethod
    def from_storage(cls, arrays, config):
        return cls(arrays["N_values"], arrays["eps_values"], arrays["seeds"], arrays["errors"], dict(config))


class CellStore(Protocol):
    """Where a :class:`ConvergenceStudy` keeps finished cells (``storage.SweepFile`` is the HDF5 one)."""

    def check(self, config: Mapping[str, Any]) -> None:
        """Raise ValueError when the store holds cells of another configuration."""

    def cells(self) -> dict[str, dict[str, Any]]:
        """Stored cells by key, each a mapping with an ``errors`` array (one value per seed)."""

    def write(self, key: str, arrays: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        """Keep one finished cell (atomically: an interruption leaves the previous state intact)."""

    def finish(self, result: "ConvergenceResult") -> Any:
        """Called once with the assembled result."""


class ConvergenceStudy:
    """A sweep of ``measure(N, eps, seed) -> float`` over a grid of N, eps and seeds.

    With a ``store`` (e.g. ``continuum_attention.storage.SweepFile(path)``, an HDF5 file) every finished
    (N, eps) cell is written as it completes, and a rerun skips the cells already there (an interrupted sweep
    resumes where it stopped). The constructor only stores its parameters.

    Parameters
    ----------
    measure : callable
        ``measure(N, eps, seed)`` returning the error (a float, or an :class:`ErrorResult`, whose ``key``
        field is used).
    N_values, eps_values : sequences
    seeds : sequence of int
    key : str
        Field of an ErrorResult used as the error ("rms", "max", "relative", or an ``extra`` entry).
    store : CellStore, optional
        Where cells are kept between runs (:class:`CellStore`); None keeps nothing.
    config : dict
        Stored with the cells (describe the problem here so the sweep can be rerun).
    """

    def __init__(
        self,
        measure: Callable[[int, float, int], Any],
        N_values: Sequence[int],
        eps_values: Sequence[float],
        seeds: Sequence[int] = (0,),
        *,
        key: str = "rms",
        store: "CellStore | None" = None,
        config: dict | None = None,
    ):
        self.measure = measure
        self.N_values = N_values
        self.eps_values = eps_values
        self.seeds = seeds
        self.key = key
        self.store = store
        self.config = config

    def _validated(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lists = {}
        for name in ("N_values", "eps_values", "seeds"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) == 0:
                raise TypeError(f"{name} must be a non-empty sequence, got {name}={value!r}")
            lists[name] = list(value)
        N = np.array([positive_int(n, "N_values") for n in lists["N_values"]], dtype=np.int64)
        eps = np.array([positive_float(e, "eps_values") for e in lists["eps_values"]], dtype=np.float64)
        seeds = np.array([nonnegative_int(s, "seeds") for s in lists["seeds"]], dtype=np.int64)
        return N, eps, seeds


    def run(self, *, progress: bool | None = None, executor: Any = None) -> ConvergenceResult:
        """Measure every cell not already stored; return the full :class:`ConvergenceResult`.

        ``executor``: None measures the cells here, one after the other; anything with ``submit(fn, *args)``
        returning a future with ``result()`` (a ``concurrent.futures`` executor, a ``dask.distributed.Client``)
        measures them there, one task a cell. Either way only this process writes the store, as each cell
        arrives, so interruption and resume work as for a serial run, and the numbers are the same bit for
        bit (a cell's value depends on (N, eps, seed) only). A task lost with its worker is the executor's to
        rerun (Dask does); a cell that never arrives is measured again by the next run.
        """
        from tqdm.auto import tqdm

        N, eps, seeds = self._validated()
        config = {**(self.config or {}), "N_values": N.tolist(), "eps_values": eps.tolist(), "seeds": seeds.tolist(), "key": self.key}
        store = self.store
        if store is not None:  # the whole configuration (problem, grids, seeds, key) must match the stored sweep
            store.check(config)
        stored = store.cells() if store is not None else {}
        errors = np.empty((N.size, eps.size, seeds.size))
        todo = []
        for i, j in itertools.product(range(N.size), range(eps.size)):
            key = cell_key(N[i], eps[j])
            if key in stored:
                cell = np.asarray(stored[key]["errors"])
                if cell.shape != (seeds.size,):
                    raise ValueError(f"{store!r}: cell {key} holds {cell.size} seeds, expected {seeds.size}")
                errors[i, j] = cell
            else:
                todo.append((i, j, key))
        args = [(self.measure, self.key, int(N[i]), float(eps[j]), seeds.tolist()) for i, j, _ in todo]
        bar = tqdm(total=len(todo), desc="convergence", disable=None if progress is None else not progress)
        with bar:
            for index, values in _cells_as_they_come(executor, args):
                i, j, key = todo[index]
                errors[i, j] = [_finite(v, f"{key}, seed={s}") for v, s in zip(values, seeds.tolist())]
                if store is not None:
                    store.write(key, {"errors": errors[i, j]}, config)
                bar.update(1)
        result = ConvergenceResult(N, eps, seeds, errors, config)
        if store is not None:
            store.finish(result)
        return result


def measure_cell(measure: Callable, key: str, N: int, eps: float, seeds: Sequence[int]) -> list[float]:
    """The errors of one (N, eps) cell, one a seed (what a worker runs for a ConvergenceStudy)."""
    return [float(out.as_dict()[key]) if isinstance(out, ErrorResult) else float(out)
            for out in (measure(N, eps, int(s)) for s in seeds)]


def _finite(value: float, cell: str) -> float:
    if not np.isfinite(value):  # a NaN table would hide the failure until the fit
        raise ValueError(f"measure returned {value!r} for {cell}: a sweep stores finite errors only")
    return value


def _cells_as_they_come(executor, args: list):
    """(index, values) for every cell: computed here in order, or submitted and yielded as they complete."""
    if executor is None:
        for index, a in enumerate(args):
            yield index, measure_cell(*a)
        return
    if not callable(getattr(executor, "submit", None)):
        raise TypeError(f"executor must have submit(fn, *args) (a concurrent.futures executor or a Dask client), "
                        f"got executor={executor!r}")
    futures = {executor.submit(measure_cell, *a): index for index, a in enumerate(args)}
    for future in completed(list(futures)):
        yield futures[future], future.result()


def completed(futures: list):
    """Futures as they complete: concurrent.futures or Dask ones; any other kind in submission order."""
    import concurrent.futures as cf

    if all(isinstance(f, cf.Future) for f in futures):
        return cf.as_completed(futures)
    try:  # Dask futures
        from distributed import as_completed
    except ImportError:  # any other future: in submission order
        return iter(futures)
    return as_completed(futures)


# ---------------------------------------------------------------------------------------------------------
# One problem end to end
# ---------------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """Particles and PDE for one problem: values at the points, the PDE on its grid, and the error."""

    mode: str
    points: np.ndarray
    particle_values: np.ndarray
    reference_at_points: np.ndarray
    grid_axes: list
    pde_values: np.ndarray
    t_final: float
    errors: dict
    config: dict = field(default_factory=dict)

    def to_storage(self):
        arrays = {
            "points": self.points,
            "particle_values": self.particle_values,
            "reference_at_points": self.reference_at_points,
            "grid_axes": {f"{i}": a for i, a in enumerate(self.grid_axes)},
            "pde_values": self.pde_values,
            "errors": {k: np.float64(v) for k, v in self.errors.items()},
        }
        return arrays, {**self.config, "mode": self.mode, "t_final": self.t_final}

    @classmethod
    def from_storage(cls, arrays, config):
        axes = [arrays["grid_axes"][k] for k in sorted(arrays["grid_axes"], key=int)]
        errors = {k: float(v) for k, v in arrays["errors"].items()}
        cfg = {k: v for k, v in config.items() if k not in ("mode", "t_final")}
        return cls(
            config["mode"], arrays["points"], arrays["particle_values"], arrays["reference_at_points"], axes,
            arrays["pde_values"], float(config["t_final"]), errors, cfg,
        )


def run_problem(
    problem: Problem,
    N: int,
    eps: float,
    seed: int = 0,
    *,
    mode: str = "features",
    grid_shape: int | Sequence[int] = 256,
    method: str = "crank-nicolson",
    truncate: bool | str = "auto",
) -> RunResult:
    """Run particles (features or walkers) and the matching PDE form to t_final; compare at the points."""
    runs = {"features": _features_run, "walkers": _walkers_run}
    option(mode, "mode", tuple(runs))
    N, seed = positive_int(N, "N"), nonnegative_int(seed, "seed")
    pde = _pde(problem, mode, grid_shape)
    solution = pde.solve(problem.initial, problem.t_final, method=method, n_snapshots=2)
    points, values, reference, err = runs[mode](problem, N, eps, seed, solution, grid_shape, method, {"truncate": truncate})
    config = {
        "problem": problem.to_config(), "N": int(N), "eps": float(eps), "seed": int(seed),
        "grid_shape": [int(n) for n in np.atleast_1d(grid_shape)], "method": method, "truncate": truncate,
    }
    return RunResult(mode, points, values, reference, pde.grid.axes, solution.values[-1], problem.t_final, err.as_dict(), config)
