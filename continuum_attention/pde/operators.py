"""Conservative finite-volume discretisation of the attention-limit operator (THEORY.md section 3).

Every form of the PDE is written as ``ds/dt = L s`` with

    L s = C_out D (C_in s),     D u = sum_i d_i( A^{ij} d_j u )   (flux form, see :mod:`._kernels`),

for a nodal coefficient tensor A and nodal diagonal scalings C_out, C_in:

=========  =====================  =========  =========  =======================================
form       state s                A^{ij}     C_out      C_in
=========  =====================  =========  =========  =======================================
features   H                      a^{ij}     1 / w      1
walkers    m = rho sqrt|g|        a^{ij}     1          1 / w
heat       H                      b^{ij}     F/sqrt|g~| 1
=========  =====================  =========  =========  =======================================

with p = q / sqrt|g| (q the coordinate density of :class:`~continuum_attention.densities.Density`, p the
density w.r.t. dvol_g), w = p^2 sqrt|g|, a^{ij} = p^2 sqrt|g| g^{ij}, and for the heat form (n = dim != 2)
F = p^(4/(n-2)), g~ = F g, b^{ij} = sqrt|g~| g~^{ij}. Algebraically b = a and F / sqrt|g~| = 1 / w (that is
Theorem 4); the heat form is nevertheless assembled from g~ through the same varying-tensor path, so the
identity is checked numerically rather than assumed.

Face coefficients are the arithmetic mean of the two nodal values (second order; it is also what keeps
D applied to a constant exactly zero). On a Box the wall faces get coefficient 0 (no flux); tangential
differences at a wall use the reflected (Neumann) ghost value. Time scale of the operator: one cell diffuses
in about h^2 / (2 d max a/w); see :meth:`FluxOperator.max_stable_dt`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numba
import numpy as np
import scipy.sparse as sp

from ..densities import Density
from ..grid import Grid
from ..metrics import as_metric
from ._kernels import (advance_numba, advance_numpy, apply_numba, apply_numpy, nodal_to_faces, repeat_2d,
                       repeat_2d_parallel, repeat_numba, repeat_numpy)

__all__ = ["FORMS", "MetricField", "resolve_metric", "FluxOperator", "build_operator"]

FORMS = ("features", "walkers", "heat")

# Explicit Euler steps fused into one pass over memory by :func:`._kernels.advance_numba` (temporal blocking).
# A single step streams u, s and the output; a group of k steps streams them once and does the k steps'
# arithmetic on planes held in cache (rings of 3 planes per intermediate step). On the 2-core benchmark machine
# (2048^2 Torus, docs/performance.md) 8 steps per pass were faster per step than 2 or 4; the group is shortened
# where the rings (3 (k-1) planes of a 3-D grid) would not fit in FUSED_RING_BYTES (the per-core L2 cache).
FUSED_STEPS = 8
FUSED_RING_BYTES = 1 << 20
# Temporal blocking pays only where the arrays a step streams (state, s, output: 24 bytes a node) do not stay in
# cache. Below this many bytes the steps run as single passes, all of a call's steps inside one kernel call
# (:func:`._kernels.repeat_numba`: no Python between steps). Measured on the 2-core AMD EPYC VM (1 MiB L2 per
# core, 32 MiB L3; one thread, load 5): at 512^2 (6 MiB) single passes 390 us a step, 8 fused 462 us; at 1024^2
# (24 MiB) single 1870 us, fused 1320 us.
IN_CACHE_BYTES = 8 << 20
# Steps of one euler_steps call on an in-cache grid (bounds the time between returns to Python, where a
# KeyboardInterrupt is seen)
IN_CACHE_STEPS_PER_CALL = 4096

# Below this many nodes a step takes microseconds and waking a second thread costs more than it saves (on a
# loaded machine an OpenMP wake-up was measured at ~20 ms), so the kernel runs on one thread.
PARALLEL_MIN_NODES = 1 << 16
# The 2-D in-cache kernels (all of a call's steps inside one kernel, one parallel region a step) pay for the second
# thread from this many nodes: on the quiet 2-core VM (2026-12-02, load below 0.4) two threads of
# repeat_2d_parallel against one of repeat_2d were 0.5x at 64^2, 0.8x at 96^2, 1.56x at 128^2 (median of 10
# rounds through the stepper: 2.04e9 against 1.31e9 cell-steps/s), 1.7x at 256^2 and 1.6x at 512^2.
PARALLEL_2D_MIN_NODES = 1 << 14


# ---------------------------------------------------------------------------------------------------------
# Metric: anything metrics.as_metric takes (None, a constant SPD matrix, a PseudoMetric)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricField:
    """Metric tensor g at the grid nodes: ``constant`` (d, d) or ``field`` (P, d, d), exactly one set."""

    constant: np.ndarray | None
    field: np.ndarray | None

    def tensors(self, size: int) -> np.ndarray:
        """g at every node, (P, d, d)."""
        if self.field is not None:
            return self.field
        return np.broadcast_to(self.constant, (size, *self.constant.shape))


def _check_spd(g: np.ndarray, d: int, what: str) -> np.ndarray:
    g = np.asarray(g, dtype=np.float64)
    if g.shape[-2:] != (d, d):
        raise ValueError(f"{what} must have shape (..., {d}, {d}) for a {d}-D grid, got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError(f"{what} contains NaN or infinite entries")
    gt = np.swapaxes(g, -1, -2)
    if not np.allclose(g, gt, rtol=1e-12, atol=1e-12 * np.max(np.abs(g))):
        raise ValueError(f"{what} must be symmetric")
    eig = np.linalg.eigvalsh(0.5 * (g + gt))
    if np.any(eig <= 0):
        raise ValueError(f"{what} must be positive definite, smallest eigenvalue {eig.min():.3g}")
    return np.ascontiguousarray(0.5 * (g + gt))


def resolve_metric(metric, grid: Grid) -> MetricField:
    """g at the nodes of ``grid`` for ``metrics.as_metric(metric)`` (see :class:`AttentionLimitPDE`)."""
    d = grid.dim
    m = as_metric(metric)
    if not m.is_metric:
        raise ValueError(
            f"metric={m!r} is a pseudo-metric but not a metric (is_metric is False): "
            "it induces no Riemannian tensor, so there is no PDE limit"
        )
    if m.dim is not None and m.dim != d:
        raise ValueError(f"metric={m!r} has dimension {m.dim}, the grid has dimension {d}")
    if m.is_constant:  # one evaluation serves every node
        const = np.asarray(m.tensor(grid.points[:1]), dtype=np.float64).reshape(d, d)
        return MetricField(_check_spd(const, d, "metric.tensor"), None)
    field = np.asarray(m.tensor(grid.points), dtype=np.float64)
    if field.shape != (grid.size, d, d):
        raise ValueError(f"metric.tensor(points) must return shape ({grid.size}, {d}, {d}), got {field.shape}")
    return MetricField(None, _check_spd(field, d, "metric.tensor(points)"))


# ---------------------------------------------------------------------------------------------------------
# Nodal coefficients of the three forms
# ---------------------------------------------------------------------------------------------------------


def _det_inv(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Determinant and inverse of (..., d, d); diagonal tensors inverted entrywise (keeps exact zeros)."""
    d = g.shape[-1]
    off = g - np.eye(d) * np.diagonal(g, axis1=-2, axis2=-1)[..., None, :]
    if not np.any(off):
        diag = np.diagonal(g, axis1=-2, axis2=-1)
        return np.prod(diag, axis=-1), np.eye(d) * (1.0 / diag)[..., None, :]
    return np.linalg.det(g), np.linalg.inv(g)


def nodal_coefficients(grid: Grid, density: Density, metric: MetricField, form: str):
    """Nodal (A, c_out, c_in, sqrt|g|, p) of a form; A is (P, d, d) or (d, d) times a (P,) factor.

    Returns a dict with ``tensor`` (P, d, d) or None, ``scalar`` (P,) and ``unit`` (d, d) such that
    A = tensor, or A = scalar * unit when the metric is constant (saves memory on big grids); plus ``cout``,
    ``cin`` (or None), ``sqrtg`` (P,) and ``p`` (P,).
    """
    points = grid.points
    q = np.asarray(density.pdf(points), dtype=np.float64).reshape(-1)
    if q.shape[0] != grid.size or not np.all(np.isfinite(q)) or np.any(q <= 0):
        bad = int(np.argmin(np.where(np.isfinite(q), q, -np.inf)))
        raise ValueError(
            f"density must be finite and positive at every grid node (the operator divides by p^2); "
            f"got q={q[bad]!r} at x={points[bad]}"
        )
    n = grid.dim
    if metric.constant is not None:
        detg, ginv = _det_inv(metric.constant)
        sqrtg = np.full(grid.size, np.sqrt(detg))
    else:
        detg, ginv = _det_inv(metric.field)
        sqrtg = np.sqrt(detg)
    p = q / sqrtg
    w = p * p * sqrtg
    out = {"sqrtg": sqrtg, "p": p, "tensor": None, "scalar": None, "unit": None}
    if form in ("features", "walkers"):
        if metric.constant is not None:
            out["scalar"], out["unit"] = w, ginv
        else:
            out["tensor"] = w[:, None, None] * ginv
        out["cout"], out["cin"] = (1.0 / w, None) if form == "features" else (np.ones_like(w), 1.0 / w)
        out["nodal"] = form == "features" and metric.constant is not None  # A = w U and cout = 1 / w
        return out
    if n == 2:
        raise ValueError(
            "form='heat' needs dim != 2: the conformal factor F = p^(4/(n-2)) of Theorem 4 does not exist for "
            "n = 2 (a 2-D conformal change leaves the Laplacian's principal part unchanged, so no F Delta_g~ "
            "can carry the drift); use form='features'"
        )
    F = p ** (4.0 / (n - 2))
    gt = F[:, None, None] * metric.tensors(grid.size)
    det_t, gt_inv = _det_inv(gt)
    sqrt_t = np.sqrt(det_t)
    out["tensor"] = sqrt_t[:, None, None] * gt_inv
    out["cout"], out["cin"] = F / sqrt_t, None
    return out


# ---------------------------------------------------------------------------------------------------------
# The discrete operator
# ---------------------------------------------------------------------------------------------------------


def _neighbour_tables(shape3: tuple[int, int, int], periodic: bool) -> tuple[np.ndarray, np.ndarray]:
    """Tangential neighbour indices (3, nmax): wrap-around on a torus, reflection (clamp) at a wall."""
    nmax = max(shape3)
    tp = np.zeros((3, nmax), dtype=np.int64)
    tm = np.zeros((3, nmax), dtype=np.int64)
    for a, n in enumerate(shape3):
        i = np.arange(n)
        if periodic:
            tp[a, :n], tm[a, :n] = (i + 1) % n, (i - 1) % n
        else:
            tp[a, :n], tm[a, :n] = np.minimum(i + 1, n - 1), np.maximum(i - 1, 0)
    return tp, tm


class FluxOperator:
    """``L s = cout * D(cin * s)`` on a grid, in the 3-D kernel layout (leading singleton axes).

    Build it with :func:`build_operator`. All arrays are float64, C-contiguous, shape ``shape3``.
    """

    def __init__(self, grid: Grid, coeffs: dict):
        self.grid = grid
        d = grid.dim
        self.offset = 3 - d
        self.shape3 = (1,) * self.offset + grid.shape
        self.periodic = grid.periodic
        inv_h = np.ones(3)
        inv_h[self.offset :] = 1.0 / grid.spacing
        self.inv_h = inv_h
        self.tp, self.tm = _neighbour_tables(self.shape3, self.periodic)
        self.wrap = 1.0 if self.periodic else 0.0
        self.unit = np.ones(3)
        self.has_mixed = False
        comps = {}
        for a in range(d):
            for b in range(d):
                comps[a, b] = self._component(coeffs, a, b)
                if a != b and np.any(comps[a, b]):
                    self.has_mixed = True
        if coeffs.get("nodal") and not self.has_mixed:
            # Kernel's nodal mode: A^{aa} = w U_aa, faces averaged on the fly (fewer arrays streamed per step).
            self.coef = np.ascontiguousarray(np.reshape(coeffs["scalar"], (1, *self.shape3)), dtype=np.float64)
            self.unit[self.offset :] = np.diagonal(coeffs["unit"])
        else:
            self.coef = np.zeros((3, *self.shape3))
            for a in range(d):
                self.coef[a + self.offset] = self._face_average(comps[a, a], a + self.offset)
        if self.has_mixed:  # nodal: the kernels average a^{ab} T_b u over each face's nodes (symmetric D)
            self.mixed = np.zeros((3, 3, *self.shape3))
            for (a, b), c in comps.items():
                if a != b:
                    self.mixed[a + self.offset, b + self.offset] = c
        else:
            self.mixed = np.zeros((3, 3, 1, 1, 1))  # same array type either way: one Numba compilation
        self.cout = np.ascontiguousarray(np.reshape(coeffs["cout"], self.shape3), dtype=np.float64)
        cin = coeffs["cin"]
        self.cin = None if cin is None else np.ascontiguousarray(np.reshape(cin, self.shape3), dtype=np.float64)
        self._matrix: sp.csr_matrix | None = None
        self._max_dt: float | None = None

    @property
    def nodal(self) -> bool:
        """True when the kernel averages a nodal scalar on the fly instead of reading face coefficients."""
        return self.coef.shape[0] == 1

    def face_coefficients(self) -> np.ndarray:
        """Diagonal face coefficients A^{aa} at the faces, (3, *shape3) (wall faces 0)."""
        if self.nodal:
            return nodal_to_faces(self.coef[0], self.unit, self.wrap)
        return self.coef

    def _component(self, coeffs: dict, a: int, b: int) -> np.ndarray:
        if coeffs["tensor"] is not None:
            return np.reshape(coeffs["tensor"][:, a, b], self.shape3)
        unit = coeffs["unit"][a, b]
        if unit == 0:
            return np.zeros(self.shape3)
        return np.reshape(coeffs["scalar"] * unit, self.shape3)

    def _face_average(self, nodal: np.ndarray, axis: int) -> np.ndarray:
        # Arithmetic mean of the two nodes of each face; wall faces (last index on a Box) carry no flux.
        face = 0.5 * (nodal + np.roll(nodal, -1, axis=axis))
        if not self.periodic:
            index = [slice(None)] * 3
            index[axis] = -1
            face[tuple(index)] = 0.0
        return np.ascontiguousarray(face)

    # -- application -----------------------------------------------------------------------------------
    @contextmanager
    def threads(self) -> Iterator[None]:
        """Run the kernel on one thread inside this block when the grid is small (see PARALLEL_MIN_NODES and,
        for the 2-D in-cache kernel, PARALLEL_2D_MIN_NODES)."""
        if self.grid.size >= self._parallel_min_nodes():
            yield
            return
        old = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            yield
        finally:
            numba.set_num_threads(old)

    def _args(self):
        return self.coef, self.mixed, self.cout, self.inv_h, self.tp, self.tm, self.unit, self.wrap

    def differenced(self, s: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The array the fluxes difference: ``cin * s`` (or s itself)."""
        if self.cin is None:
            return s
        return np.multiply(s, self.cin, out=out)

    def apply(self, s: np.ndarray, *, reference: bool = False) -> np.ndarray:
        """L s for s of shape ``shape3`` (Numba kernel, or the NumPy reference when ``reference``)."""
        s = np.ascontiguousarray(s, dtype=np.float64).reshape(self.shape3)
        out = np.empty(self.shape3)
        kernel = apply_numpy if reference else apply_numba
        with self.threads():
            kernel(self.differenced(s), s, out, *self._args(), 1.0, 0.0, self.has_mixed)
        return out

    def euler_step(self, s: np.ndarray, out: np.ndarray, dt: float, scratch: np.ndarray | None = None, *,
                   reference: bool = False) -> np.ndarray:
        """One explicit Euler step ``out = s + dt L s`` in a single fused pass (``out`` must not alias s).

        ``reference`` runs the NumPy reference kernel instead of the Numba one.
        """
        v = self.differenced(s, scratch)
        kernel = apply_numpy if reference else apply_numba
        return kernel(v, s, out, *self._args(), float(dt), 1.0, self.has_mixed)

    @property
    def can_fuse_steps(self) -> bool:
        """True when :meth:`euler_steps` fuses steps (nodal mode: features form, constant diagonal metric)."""
        return self.nodal and self.cin is None

    @property
    def in_cache(self) -> bool:
        """True when a step's arrays (24 bytes a node) fit in IN_CACHE_BYTES: steps then run as single passes."""
        return 24 * self.grid.size <= IN_CACHE_BYTES

    def steps_per_call(self) -> int:
        """Steps the explicit stepper hands to one :meth:`euler_steps` call where steps fuse (can_fuse_steps):
        :meth:`fused_steps` (one pass of temporal blocking), or IN_CACHE_STEPS_PER_CALL single passes on an
        in-cache grid (:attr:`in_cache`)."""
        return IN_CACHE_STEPS_PER_CALL if self.in_cache else self.fused_steps()

    def fused_steps(self) -> int:
        """Steps per pass of the multi-step kernel: FUSED_STEPS, fewer where the plane rings outgrow the cache."""
        n1, n2 = (1, self.shape3[2]) if self.shape3[0] == 1 else self.shape3[1:]
        plane_bytes = 8 * n1 * n2
        k = FUSED_STEPS
        while k > 2 and 3 * (k - 1) * plane_bytes > FUSED_RING_BYTES:
            k //= 2
        return k

    def _inline_2d(self) -> bool:
        # A 2-D grid whose fused steps run in cache: the kernels with the rows inlined apply
        n0, n1, n2 = self.shape3
        return self.can_fuse_steps and self.in_cache and n0 == 1 and n1 > 1 and n2 > 1

    def _parallel_min_nodes(self) -> int:
        return PARALLEL_2D_MIN_NODES if self._inline_2d() else PARALLEL_MIN_NODES

    def _repeat_kernel(self):
        """The in-cache kernel: for a 2-D grid the rows inlined, :func:`._kernels.repeat_2d` (one thread) below
        PARALLEL_2D_MIN_NODES and :func:`._kernels.repeat_2d_parallel` from there; :func:`._kernels.repeat_numba`
        otherwise. All of them bitwise the single steps."""
        if not self._inline_2d():
            return repeat_numba
        return repeat_2d if self.grid.size < PARALLEL_2D_MIN_NODES else repeat_2d_parallel

    def _fused_layout(self, a: np.ndarray) -> np.ndarray:
        # A 2-D grid (1, n1, n2) is swept as (n1, 1, n2): its rows become the planes of the wavefront.
        if self.shape3[0] == 1 and self.shape3[1] > 1:
            return a.reshape(self.shape3[1], 1, self.shape3[2])
        return a

    def _fused_args(self):
        inv_h, unit = self.inv_h, self.unit
        if self.shape3[0] == 1 and self.shape3[1] > 1:
            inv_h, unit = inv_h[[1, 0, 2]], unit[[1, 0, 2]]
        return self._fused_layout(self.coef[0]), inv_h, unit, self.wrap

    def euler_steps(
        self, s: np.ndarray, out: np.ndarray, dt: float, steps: int, *, reference: bool = False
    ) -> np.ndarray:
        """``steps`` explicit Euler steps ``out = (1 + dt L)^steps s`` (``out`` must not alias s).

        In nodal mode (:attr:`can_fuse_steps`) one pass of :func:`._kernels.advance_numba` does all of them
        (temporal blocking; the same floating-point operations as repeated :meth:`euler_step` calls), or, on a
        grid whose arrays stay in cache (:attr:`in_cache`), one call of :func:`._kernels.repeat_numba` (single
        passes, no return to Python between steps; bitwise the same); otherwise, or with ``steps`` = 1, single
        fused steps. ``reference`` runs the NumPy reference.
        ``out``: C-contiguous float64 of shape ``shape3``. The caller keeps dt within :meth:`max_stable_dt`.
        """
        steps = int(steps)
        if steps < 1:
            raise ValueError(f"steps must be a positive integer, got steps={steps}")
        if out.shape != self.shape3 or out.dtype != np.float64 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous float64 array of shape {self.shape3}")
        s = np.ascontiguousarray(s, dtype=np.float64).reshape(self.shape3)
        if not self.can_fuse_steps:
            if reference:
                raise ValueError("euler_steps(reference=True) exists only where steps fuse (can_fuse_steps)")
            if steps == 1:
                return self.euler_step(s, out, dt)
            buffers = (out, np.empty(self.shape3))  # step n writes buffers[(steps-1-n) % 2]: the last one, out
            scratch = np.empty(self.shape3) if self.cin is not None else None
            cur = s
            for n in range(steps):
                cur = self.euler_step(cur, buffers[(steps - 1 - n) % 2], dt, scratch)
            return out
        if steps == 1 and not reference:
            return self.euler_step(s, out, dt)
        if self.in_cache:
            kernel = repeat_numpy if reference else self._repeat_kernel()
            kernel(s, out, np.empty(self.shape3), self.coef[0], self.inv_h, self.unit, self.wrap, float(dt), steps)
            return out
        kernel = advance_numpy if reference else advance_numba
        threads = numba.get_num_threads()
        kernel(self._fused_layout(s), self._fused_layout(out), *self._fused_args(), float(dt), steps, threads)
        return out

    # -- sparse matrix ---------------------------------------------------------------------------------
    def matrix(self) -> sp.csr_matrix:
        """L as a CSR matrix (size x size, C order), assembled once from the same face fluxes as the kernel."""
        if self._matrix is None:
            self._matrix = self._assemble()
        return self._matrix

    def _assemble(self) -> sp.csr_matrix:
        size = self.grid.size
        idx = np.arange(size).reshape(self.shape3)
        faces = self.face_coefficients()
        rows, cols, vals = [], [], []

        def add_flux(lo, up, col, val):
            # A face flux enters its lower node with + and its upper node with - (telescoping).
            rows.extend((lo, up))
            cols.extend((col, col))
            vals.extend((val, -val))

        for a in range(3):
            if self.shape3[a] == 1:
                continue
            up = np.roll(idx, -1, axis=a).ravel()
            lo = idx.ravel()
            c = faces[a].ravel() * self.inv_h[a] ** 2
            add_flux(lo, up, up, c)
            add_flux(lo, up, lo, -c)
            if not self.has_mixed:
                continue
            for b in range(3):
                if b == a or self.shape3[b] == 1:
                    continue
                nb = self.shape3[b]
                plus = np.take(idx, self.tp[b, :nb], axis=b)
                minus = np.take(idx, self.tm[b, :nb], axis=b)
                open_face = self._face_average(np.ones(self.shape3), a).ravel()  # 0 on wall faces
                scale = 0.25 * self.inv_h[a] * self.inv_h[b] * open_face
                for node in (idx, np.roll(idx, -1, axis=a)):
                    m = np.take(self.mixed[a, b].ravel(), node.ravel()) * scale
                    add_flux(lo, up, np.take(plus.ravel(), node.ravel()), m)
                    add_flux(lo, up, np.take(minus.ravel(), node.ravel()), -m)
        D = sp.coo_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(size, size)
        ).tocsr()
        D.eliminate_zeros()
        L = sp.diags(self.cout.ravel()) @ D
        if self.cin is not None:
            L = L @ sp.diags(self.cin.ravel())
        return sp.csr_matrix(L)

    # -- stability -------------------------------------------------------------------------------------
    def diagonal(self) -> np.ndarray:
        """Diagonal of L (size,), without assembling the matrix when there are no mixed terms."""
        if self.has_mixed:
            return self.matrix().diagonal()
        diag = np.zeros(self.shape3)
        faces = self.face_coefficients()
        for a in range(3):
            if self.shape3[a] > 1:
                diag -= (faces[a] + np.roll(faces[a], 1, axis=a)) * self.inv_h[a] ** 2
        diag *= self.cout
        if self.cin is not None:
            diag *= self.cin
        return diag.ravel()

    def max_stable_dt(self) -> float:
        """Largest explicit Euler step: dt <= 1 / max_i |L_ii| (Gershgorin).

        Without mixed terms every row of D (and column of D W^-1 for walkers) is weakly diagonally dominant
        with non-negative off-diagonals, so this bound guarantees stability, a maximum principle (features,
        heat) and positivity (walkers). With mixed terms the 9-point stencil has negative corner weights and
        the off-diagonal row sums R_i exceed |L_ii|; the bound is then also capped by the Gershgorin radius,
        dt <= 2 / min(max_i(|L_ii| + R_i), max_j(|L_jj| + C_j)), which bounds |lambda| for every eigenvalue;
        it guarantees stability, not positivity: D is symmetric for every metric and density (the mixed
        flux averages a^{ab} T_b u over each face's two nodes, so its divergence is the node-centred
        stencil, whose matrix is symmetric), hence L = W^-1 D has a real spectrum bounded by this radius.
        """
        if self._max_dt is None:
            diag = np.abs(self.diagonal())
            limit = 1.0 / diag.max()
            if self.has_mixed:
                L = abs(self.matrix())
                row = np.asarray(L.sum(axis=1)).ravel()
                col = np.asarray(L.sum(axis=0)).ravel()
                limit = min(limit, 2.0 / min(row.max(), col.max()))
            self._max_dt = float(limit)
        return self._max_dt


def build_operator(grid: Grid, density: Density, metric: MetricField, form: str) -> tuple[FluxOperator, dict]:
    """The discrete operator of ``form`` and its nodal coefficients (see the module docstring)."""
    coeffs = nodal_coefficients(grid, density, metric, form)
    return FluxOperator(grid, coeffs), coeffs
