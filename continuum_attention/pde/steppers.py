"""Time steppers of the attention-limit PDE, chosen by name (:data:`STEPPERS`).

Each method is a small class with a ``name``; defining a subclass with a new ``name`` registers it (py-pde's
solver registry, ``pde/solvers/base.py``, is the model), so ``AttentionLimitPDE.solve(method=name)`` finds it.
A stepper works on the solver's state ``s`` (H, or the walkers' coordinate mass m) through its
:class:`~continuum_attention.pde.operators.FluxOperator` ``L``, ``ds/dt = L s``:

* :meth:`Stepper.default_dt` and :meth:`Stepper.check_dt`: its default step and its stability rule;
* :meth:`Stepper.step_size`: the step actually used (shortened so each snapshot interval holds a whole number);
* :meth:`Stepper.prepare` (once per solve: buffers, factorisations), then :meth:`Stepper.advance` ``(s, n)``;
* :meth:`Stepper.trajectory`: the states at the visited steps (by default ``advance`` between visits).

The implicit methods solve one linear system per step with the same matrix, set up once per solve by
:class:`LinearSolve`: a sparse LU factorisation (``"direct"``) or a smoothed-aggregation AMG hierarchy
preconditioning conjugate gradients (``"amg"``, pyamg); ``linear_solver="auto"`` picks one by
:func:`choose_linear_solver`.

Time scales: with tau = 1 / max|L_ii| (the explicit limit; tau = h^2 / (2 d D) for diffusivity D), d = dim and
N = max(grid.shape), the default steps are 0.9 tau (explicit), d N tau / (4 pi) (Crank-Nicolson) and d tau / 3
(implicit Euler); see :meth:`AttentionLimitPDE.default_dt` for why.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, ClassVar, Iterator

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import expm_multiply, splu

from .._validation import check_memory, integer, memory_budget, option, positive_float, positive_int
from .operators import FluxOperator

__all__ = ["Stepper", "ExplicitEuler", "CrankNicolson", "ImplicitEuler", "Exact", "STEPPERS", "BACKENDS",
           "EXACT_MAX_NODES", "stepper_class", "LINEAR_SOLVERS", "AUTO_DIRECT_MAX_NODES", "AMG_RTOL",
           "LinearSolve", "choose_linear_solver", "lu_memory_estimate"]

# The solver's documented logger (AttentionLimitPDE.solve says where the explicit default step is reported).
logger = logging.getLogger("continuum_attention.pde.solver")

BACKENDS = ("numba", "numpy")  # the matrix-free kernels: Numba, or the NumPy references of pde/_kernels.py
EXACT_MAX_NODES = 20_000  # expm_multiply costs ~ ||t L||_1 matrix products: a reference for small grids only
_EXPLICIT_SAFETY = 0.9  # default explicit step as a fraction of the Gershgorin limit
_LIMIT_SLACK = 1e-12  # a dt computed as the limit elsewhere may exceed it by rounding

LINEAR_SOLVERS = ("auto", "direct", "amg")  # the implicit methods' linear solvers (see LinearSolve)
# linear_solver="auto" factorises (sparse LU) up to this many nodes per grid dimension and uses AMG-preconditioned
# CG above (and wherever the LU's estimated memory exceeds half the budget). Measured on the 2-core VM with the
# ordering below: a 512^2 factorisation takes 3 s and 0.34 GiB; at 1024^2 Crank-Nicolson (benchmarks/
# implicit_bench.py, load 8) took 17 s to set up and 0.97 s a step with LU (peak 2.2 GiB) against 33 s and 1.74 s
# with AMG-CG (0.95 GiB). In 3-D the fill grows like N^1.6 (20^3: 0.5 s, 28^3: 3.9 s, 128^3 would need ~600 GiB),
# while an AMG hierarchy costs O(N) in both.
AUTO_DIRECT_MAX_NODES = {1: 1 << 62, 2: 1024 * 1024, 3: 20**3}
AMG_RTOL = 1e-10  # AMG-CG stops at ||r|| <= AMG_RTOL ||b|| (far below the time-discretisation error of a step)
AMG_MAXITER = 500
# BLAS threads inside pyamg (its norms and dot products: level-1 BLAS on long vectors, memory-bound): OpenBLAS's
# threads made the AMG set-up 4x and each solve 3.4x slower on the loaded 2-core VM (256^2: 3.31 s and 1.19 s
# against 0.82 s and 0.35 s with one thread), so AMG runs with BLAS_THREADS_AMG BLAS threads.
BLAS_THREADS_AMG = 1
# Bytes of a SuperLU factorisation per stored nonzero of L + U: 8 (value) + 4 (row index), times the measured
# 1.2-1.5 of SuperLU's supernodal bookkeeping (peak RSS growth over 12 nnz: 1.29 at 256^2, 1.20 at 512^2, 1.46 at
# 20^3, 1.18 at 28^3), rounded up to 24 so that the estimate errs on the large side.
_LU_BYTES_PER_NONZERO = 24.0

STEPPERS: dict[str, type["Stepper"]] = {}


class Stepper:
    """Base class: one time-stepping method of ``ds/dt = L s`` (subclasses set ``name``; see the module).

    Parameters
    ----------
    operator : FluxOperator
        The discrete operator L of the solver's form.
    backend : {"numba", "numpy"}
        Kernels of the matrix-free steps (steppers built on sparse matrices ignore it).
    linear_solver : {"auto", "direct", "amg"}
        Linear solver of the implicit methods (:class:`LinearSolve`; the others ignore it).
    """

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.name in STEPPERS:
                raise ValueError(f"a stepper named {cls.name!r} exists already ({STEPPERS[cls.name].__qualname__})")
            STEPPERS[cls.name] = cls

    def __init__(self, operator: FluxOperator, *, backend: str = "numba", linear_solver: str = "auto"):
        self.operator = operator
        self.backend = option(backend, "backend", BACKENDS)
        self.linear_solver = option(linear_solver, "linear_solver", LINEAR_SOLVERS)
        self.dt = math.nan

    # -- the step --------------------------------------------------------------------------------------
    def default_dt(self) -> float:
        """The step used when ``dt=None``."""
        raise NotImplementedError

    def check_dt(self, dt: float | None) -> float:
        """The step to use for a requested ``dt`` (None: :meth:`default_dt`); ValueError where it is refused."""
        return self.default_dt() if dt is None else dt

    def step_size(self, dt: float | None, interval: float) -> tuple[float, int]:
        """``(step, n)``: n equal steps per snapshot ``interval``, none longer than :meth:`check_dt` allows."""
        dt = self.check_dt(dt)
        ratio = interval / dt
        if not math.isfinite(ratio) or ratio > 2.0**62:  # math.ceil would overflow
            raise ValueError(f"a snapshot interval of {interval!r} is {ratio:.3g} steps of dt={dt!r}: too many to run")
        n_sub = max(1, math.ceil(ratio))
        if interval / n_sub > dt:  # ceil can round down by an ulp: never step beyond what was allowed
            n_sub += 1
        return interval / n_sub, n_sub

    def reported(self, dt: float, n_steps: int) -> tuple[float, int]:
        """The ``(dt, n_steps)`` a solution reports for this run."""
        return dt, n_steps

    # -- advancing -------------------------------------------------------------------------------------
    def prepare(self, dt: float) -> None:
        """Set up steps of size ``dt`` (once per solve)."""
        self.dt = dt

    def advance(self, s: np.ndarray, n_steps: int) -> np.ndarray:
        """The state ``n_steps`` steps after ``s`` (may be a buffer the next call overwrites)."""
        raise NotImplementedError

    def trajectory(self, s0: np.ndarray, visits: np.ndarray, time: Callable[[int], float]
                   ) -> Iterator[tuple[int, np.ndarray]]:
        """``(step, state)`` at every visited step after 0, in order (``time(step)``: its time)."""
        s, done = s0, 0
        for n in visits:
            if n > done:
                s = self.advance(s, int(n - done))
                done = int(n)
                yield done, s


class ExplicitEuler(Stepper):
    """Explicit (forward) Euler, s <- s + dt L s, matrix-free.

    Stability: dt <= 1 / max_i |L_ii| (Gershgorin; :meth:`FluxOperator.max_stable_dt`, capped further where mixed
    metric terms are present). A dt above that limit (by more than 1e-12 relative) is refused with ValueError;
    ``dt=None`` uses 0.9 times the limit and logs it at INFO level (logger ``continuum_attention.pde.solver``).

    Where the operator fuses steps (:attr:`FluxOperator.can_fuse_steps`: features form, constant diagonal
    metric), n steps run as groups of :meth:`FluxOperator.steps_per_call` steps, each group one pass of the
    multi-step kernel (temporal blocking), or on a grid that stays in cache one call that loops single passes
    (:attr:`FluxOperator.in_cache`), then one shorter group for the remainder (a single step runs the
    single-step kernel); otherwise as n single fused steps. The result equals n single steps bitwise.
    Backend "numpy" runs the same groups with the NumPy reference kernels.
    """

    name = "explicit"

    def default_dt(self) -> float:
        return _EXPLICIT_SAFETY * self.operator.max_stable_dt()

    def check_dt(self, dt: float | None) -> float:
        limit = self.operator.max_stable_dt()
        if dt is None:
            dt = self.default_dt()
            logger.info("explicit: dt=None, using dt=%.6g (0.9 x stability limit %.6g)", dt, limit)
        elif dt > limit * (1.0 + _LIMIT_SLACK):
            raise ValueError(
                f"dt={dt:.6g} exceeds the explicit stability limit max_stable_dt()={limit:.6g} "
                "(1 / max|L_ii|); use a smaller dt, dt=None, or an implicit method"
            )
        return dt

    def prepare(self, dt: float) -> None:
        super().prepare(dt)
        op = self.operator
        self._buffers = [np.empty(op.shape3), np.empty(op.shape3)]
        self._scratch = np.empty(op.shape3) if op.cin is not None else None
        self._group = op.steps_per_call() if op.can_fuse_steps else 1
        self._turn = 0

    def advance(self, s: np.ndarray, n_steps: int) -> np.ndarray:
        op, reference = self.operator, self.backend == "numpy"
        s = np.reshape(s, op.shape3)
        while n_steps > 0:
            k = min(self._group, n_steps)
            out = self._buffers[self._turn]
            self._turn ^= 1  # alternate buffers: the input of a group is the previous group's output
            if k > 1:
                s = op.euler_steps(s, out, self.dt, k, reference=reference)
            else:
                s = op.euler_step(s, out, self.dt, self._scratch, reference=reference)
            n_steps -= k
        return s


def lu_memory_estimate(nodes: int, dim: int, *, mixed: bool = False) -> float:
    """Estimated bytes of the sparse LU factors of an implicit step's matrix (:class:`LinearSolve`, "direct").

    ``nodes``: grid size N; ``dim``: grid dimension; ``mixed``: mixed (off-diagonal) metric terms present
    (:attr:`FluxOperator.has_mixed`).

    Fill model of the minimum-degree ordering on A + A^T (SuperLU's MMD_AT_PLUS_A), fitted to the factors of
    the 5/7-point operators on periodic grids (nonzeros of L + U per node, N nodes):

    * 1-D: 8 (a periodic tridiagonal matrix fills one column and one row);
    * 2-D: max(10, 7.45 log2 N - 38) (measured 51 at 64^2, 66 at 128^2, 81 at 256^2, 97 at 512^2);
    * 3-D: 2.1 N^0.6 (measured 178 at 12^3, 275 at 16^3, 467 at 20^3, 580 at 24^3, 805 at 28^3),

    doubled where mixed metric terms make the stencil 9/19-point, times 24 bytes per nonzero (value, index and
    SuperLU's bookkeeping, rounded up from the measured peak). A Box fills less than a Torus: the estimate is
    an upper bound there.
    """
    n = positive_int(nodes, "nodes")
    dim = integer(dim, "dim", minimum=1, maximum=3)
    if dim == 1:
        per_node = 8.0
    elif dim == 2:
        per_node = max(10.0, 7.45 * math.log2(max(n, 2)) - 38.0)
    else:
        per_node = 2.1 * n**0.6
    if mixed:
        per_node *= 2.0
    return _LU_BYTES_PER_NONZERO * per_node * n


def _estimate(operator: FluxOperator) -> float:
    return lu_memory_estimate(operator.grid.size, operator.grid.dim, mixed=operator.has_mixed)


def choose_linear_solver(operator: FluxOperator, requested: str = "auto") -> tuple[str, str]:
    """``(solver, reason)``: the linear solver an implicit step uses, "direct" or "amg".

    Rule for ``requested="auto"``: "direct" (sparse LU, factorised once) when the grid has at most
    :data:`AUTO_DIRECT_MAX_NODES` ``[dim]`` nodes (1-D: any, 2-D: 1024^2, 3-D: 20^3) and
    :func:`lu_memory_estimate` is at most half of :func:`~continuum_attention._validation.memory_budget`;
    "amg" otherwise. An explicit "direct" or "amg" is kept (a direct solve too large for the budget is refused
    later, by :class:`LinearSolve`, with the estimate in the message).
    """
    requested = option(requested, "linear_solver", LINEAR_SOLVERS)
    if requested != "auto":
        return requested, f"linear_solver={requested!r} requested"
    n, dim = operator.grid.size, operator.grid.dim
    limit = AUTO_DIRECT_MAX_NODES[dim]
    estimate, budget = _estimate(operator), memory_budget()
    if n > limit:
        return "amg", f"auto: {n} nodes > {limit} (AUTO_DIRECT_MAX_NODES[{dim}])"
    if estimate > 0.5 * budget:
        return "amg", (f"auto: LU estimate {estimate / 2**30:.3g} GiB > half the memory budget "
                       f"({budget / 2**30:.3g} GiB)")
    return "direct", f"auto: {n} nodes <= {limit} and LU estimate {estimate / 2**30:.3g} GiB fits the budget"


_CONTROLLER = []  # one threadpoolctl controller (finding the loaded BLAS libraries costs milliseconds)


def _blas_threads(n: int):
    """Context limiting the BLAS thread pools to ``n`` threads (threadpoolctl, a dependency)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=n, user_api="blas")


class LinearSolve:
    """x = A^-1 b for the implicit step matrix A = I - c L, set up once and reused for every step.

    With L = C_out D C_in (:class:`FluxOperator`: D symmetric and negative semi-definite, C_out, C_in positive
    diagonal scalings; features: C_out = 1/w, walkers: C_in = 1/w, heat: C_out = F/sqrt|g~|), A is not
    symmetric, but

        C_out^-1 A C_in^-1 = M = (C_out C_in)^-1 - c D

    is symmetric positive definite (the p^2-weighted form of THEORY.md section 3). So A x = b is solved as
    M y = C_out^-1 b, x = C_in^-1 y: by a sparse LU of M (``"direct"``: scipy ``splu``, minimum-degree
    ordering on M + M^T, no pivoting, which is safe for SPD matrices; about half the fill of the default
    COLAMD ordering on these grids), or by conjugate gradients preconditioned with a smoothed-aggregation
    AMG V-cycle (``"amg"``: pyamg), started from the previous state and stopped at
    ||r|| <= ``rtol`` ||b|| (RuntimeError if it has not converged within ``maxiter`` iterations).

    Parameters
    ----------
    operator : FluxOperator
    c : float > 0
        theta dt of the step.
    linear_solver : {"auto", "direct", "amg"}
        See :func:`choose_linear_solver`. A direct solve whose :func:`lu_memory_estimate` exceeds the memory
        budget is refused with ValueError before anything is allocated.
    rtol : float > 0
        AMG-CG's relative residual tolerance (ignored by "direct").

    Attributes
    ----------
    kind : "direct" or "amg"; ``reason`` why; ``iterations``: CG iterations of every AMG solve so far.
    """

    def __init__(self, operator: FluxOperator, c: float, linear_solver: str = "auto", *, rtol: float = AMG_RTOL):
        c = positive_float(c, "c")
        self.rtol = positive_float(rtol, "rtol")
        self.kind, self.reason = choose_linear_solver(operator, linear_solver)
        if self.kind == "direct":
            check_memory(_estimate(operator),
                         f"the direct (sparse LU) solve of an implicit step on {operator.grid.size} nodes "
                         "(use linear_solver='amg')")
        size = operator.grid.size
        self._cout = np.ravel(operator.cout)
        self._cin = np.ones(size) if operator.cin is None else np.ravel(operator.cin)
        L = operator.matrix()
        D = sp.diags(1.0 / self._cout) @ L @ sp.diags(1.0 / self._cin)
        M = sp.diags(1.0 / (self._cout * self._cin)) - c * D
        self.matrix = sp.csr_matrix(0.5 * (M + M.T))  # symmetric to round-off already: make it exact for CG
        self.iterations: list[int] = []
        logger.info("implicit step on %d nodes: linear solver %s (%s)", size, self.kind, self.reason)
        if self.kind == "direct":
            self._lu = splu(sp.csc_matrix(self.matrix), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                            options={"SymmetricMode": True})
        else:
            import pyamg  # a dependency (setup.cfg); imported here so that importing the package stays light

            with _blas_threads(BLAS_THREADS_AMG):
                self._amg = pyamg.smoothed_aggregation_solver(self.matrix, symmetry="symmetric")

    def __call__(self, b: np.ndarray, x0: np.ndarray | None = None) -> np.ndarray:
        """A^-1 b (``x0``: a starting guess for AMG-CG, e.g. the previous state)."""
        rhs = b / self._cout
        if self.kind == "direct":
            y = self._lu.solve(rhs)
        else:
            residuals: list[float] = []
            with _blas_threads(BLAS_THREADS_AMG):
                y, info = self._amg.solve(rhs, x0=None if x0 is None else x0 * self._cin, tol=self.rtol,
                                          maxiter=AMG_MAXITER, accel="cg", residuals=residuals, return_info=True)
            self.iterations.append(max(len(residuals) - 1, 0))
            if info != 0:
                raise RuntimeError(f"AMG-preconditioned CG did not reach rtol={self.rtol:g} within {AMG_MAXITER} "
                                   f"iterations (residual {residuals[-1]:.3g}); use linear_solver='direct'")
        return y / self._cin


class _Theta(Stepper):
    """(I - theta dt L) s_new = (I + (1 - theta) dt L) s: matrix assembled and its solver set up once per solve.

    :attr:`solve` (a :class:`LinearSolve`: the LU factors or the AMG hierarchy) is built in :meth:`prepare` and
    serves every step of the solve.
    """

    theta: ClassVar[float] = 1.0

    def prepare(self, dt: float) -> None:
        super().prepare(dt)
        L = self._L = self.operator.matrix()
        self.solve = LinearSolve(self.operator, self.theta * dt, self.linear_solver)
        eye = sp.identity(L.shape[0], format="csr")
        self._rhs = None if self.theta == 1.0 else sp.csr_matrix(eye + ((1.0 - self.theta) * dt) * L)

    def advance(self, s: np.ndarray, n_steps: int) -> np.ndarray:
        s = np.ravel(s)
        for _ in range(n_steps):
            s = self.solve(s if self._rhs is None else self._rhs @ s, s)
        return s


class CrankNicolson(_Theta):
    """Crank-Nicolson (theta = 1/2, second order); default step d N tau / (4 pi) (see the module docstring).

    Its amplification factor (1 - z/2) / (1 + z/2), z = |lambda| dt, tends to -1 for the stiff modes: with
    steps far above the explicit limit, rough data (a step function, a point source) would ring and leave
    the maximum principle. Rannacher's start-up damps them: the first :attr:`startup_steps` steps are each
    replaced by two implicit-Euler half steps, (I - dt/2 L) s_new = s, which reuse the Crank-Nicolson
    matrix's solver (:class:`LinearSolve`: no second factorisation) and damp mode z by (1 + z/2)^-4 per
    replaced step, while the method stays second order (Rannacher 1984).

    The start-up costs accuracy on smooth data (its half steps are first order: a relative error of about
    (lambda dt)^2 / 2 per replaced step), so it runs only when the initial state has content that the step
    would not damp: when ``dt ||L s0|| > ROUGHNESS ||s0||`` (a smooth mode of eigenvalue lambda gives
    |lambda| dt, far below 1 at the default step; a jump gives ~ dt / h^2, far above). :attr:`startup_used`
    tells which way a solve went.
    """

    name = "crank-nicolson"
    theta = 0.5
    startup_steps: ClassVar[int] = 2
    ROUGHNESS: ClassVar[float] = 1.0

    def prepare(self, dt: float) -> None:
        super().prepare(dt)
        self._steps_done = 0
        self.startup_used: bool | None = None

    def _needs_startup(self, s: np.ndarray) -> bool:
        norm = float(np.linalg.norm(s))
        return norm > 0 and self.dt * float(np.linalg.norm(self._L @ s)) > self.ROUGHNESS * norm

    def advance(self, s: np.ndarray, n_steps: int) -> np.ndarray:
        s = np.ravel(s)
        if self.startup_used is None:
            self.startup_used = self._needs_startup(s)
        wanted = self.startup_steps if self.startup_used else 0
        startup = max(0, min(n_steps, wanted - self._steps_done))
        for _ in range(startup):
            s = self.solve(self.solve(s, s), s)  # two implicit-Euler half steps
        self._steps_done += startup
        if n_steps > startup:
            s = super().advance(s, n_steps - startup)
            self._steps_done += n_steps - startup
        return s

    def default_dt(self) -> float:
        grid = self.operator.grid
        return grid.dim * max(grid.shape) * self.operator.max_stable_dt() / (4.0 * math.pi)


class ImplicitEuler(_Theta):
    """Implicit (backward) Euler (first order, positivity-preserving); default step d tau / 3."""

    name = "implicit-euler"
    theta = 1.0

    def default_dt(self) -> float:
        return self.operator.grid.dim * self.operator.max_stable_dt() / 3.0


class Exact(Stepper):
    """exp(t L) s by scipy's expm_multiply: a reference for grids of at most EXACT_MAX_NODES nodes.

    It takes no time step: its "steps" are the snapshot intervals (``dt`` is unused and the solution reports
    dt = NaN, n_steps = 0), and all states up to the last visit come from one expm_multiply call on the
    equally spaced times.
    """

    name = "exact"

    def default_dt(self) -> float:
        raise ValueError("method='exact' takes no time step (expm_multiply): it has no default dt")

    def step_size(self, dt: float | None, interval: float) -> tuple[float, int]:
        return interval, 1

    def reported(self, dt: float, n_steps: int) -> tuple[float, int]:
        return math.nan, 0

    def prepare(self, dt: float) -> None:
        size = self.operator.grid.size
        if size > EXACT_MAX_NODES:
            raise ValueError(
                f"method='exact' is a reference for small grids (at most {EXACT_MAX_NODES} nodes); "
                f"this grid has {size}: use 'crank-nicolson' or 'implicit-euler'"
            )
        super().prepare(dt)

    def trajectory(self, s0, visits, time):
        if visits.size == 0 or visits[-1] == 0:
            return
        last = int(visits[-1])
        L = sp.csc_matrix(self.operator.matrix())
        states = expm_multiply(L, s0, start=0.0, stop=time(last), num=last + 1, endpoint=True)
        for n in visits:
            if n > 0:
                yield int(n), states[n]


def stepper_class(method: str) -> type[Stepper]:
    """The stepper registered as ``method`` (ValueError naming the valid methods otherwise)."""
    if not isinstance(method, str) or method not in STEPPERS:
        raise ValueError(f"method must be one of {tuple(STEPPERS)}, got method={method!r}")
    return STEPPERS[method]
