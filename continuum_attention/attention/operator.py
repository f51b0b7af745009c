"""The time-scaled attention operator S_eps, matrix-free (THEORY.md sections 1 and 4).

    S_eps[i, j] = exp(-f(x_i, x_j) / (2 eps)) / sum_k exp(-f(x_i, x_k) / (2 eps))

One application of S_eps is one attention layer, i.e. one explicit Euler step of length eps/2 of the
attention-limit equation; K layers reach t = K eps / 2.

Every normalisation is a row normalisation of the kernel with a column potential s:

    S_ij = exp(-f_ij / (2 eps) - s_j - r_i),   r_i = log sum_j exp(-f_ij / (2 eps) - s_j)

* ``"row"``: s = 0 (attention);
* ``("alpha", a)`` (Coifman-Lafon): s = a log q with q the degrees; the row factor q_i^-a cancels;
* ``"sinkhorn"``: s = -log u with diag(u) K diag(u) doubly stochastic (then r = -log u too);
* a ``key_potential`` w (row normalisation only): s = max(w) - w, i.e. keys weighted by e^w (a constant
  shift of s cancels in the row normalisation). THEORY.md section 7: a dot-product head is a Mahalanobis
  metric with such a potential.

So the single primitive is the weighted kernel sum ``sum_j exp(-f_ij/(2 eps) - r_i - s_j) V_j`` (``_kernels``).

Stability. For a metric f >= 0 = f_ii: the self-term is the exact maximum of each row, every weight is <= 1
and every row sum >= its self-term > 0, so r is a plain sum (one pass) and nothing overflows or turns into
0/0 for any eps. For a general pseudo-metric (DotProduct) r comes from an online running-max
log-sum-exp pass, after which every weight is <= 1 as well.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from .. import metrics as _metrics
from .._validation import (check_memory, describe, memory_budget, nonnegative_float, option, positive_float,
                           positive_int, real_array, real_number)
from ..domains import Domain, as_points
from ..domains import Euclidean as EuclideanSpace
from . import _kernels

__all__ = ["AttentionOperator", "DENSE_LIMIT", "DENSE_BUDGET", "AUTO_SPARSE_FRACTION", "AUTO_SPARSE_MIN_N",
           "ROWS_BIN_COST"]

DENSE_LIMIT = 20000  # dense(): 20000^2 float64 is 3.2 GB; refuse beyond
#: truncate="auto" stores the kernel sparsely (CSR) when N >= AUTO_SPARSE_MIN_N and a row keeps at most this
#: fraction of the N points within the cutoff (probed on 64 rows): a CSR product costs a few dense ones per
#: pair (an index load and a gather), so below a quarter of the pairs it is the faster and smaller form.
AUTO_SPARSE_FRACTION = 0.25
AUTO_SPARSE_MIN_N = 2000
#: Otherwise S is cached as an (N, N) array when 8 N^2 bytes fit in dense_budget (default 1 GiB: N <= 11585)
#: and in half the available memory; beyond that it is recomputed from the points every pass (O(N) memory).
DENSE_BUDGET = float(2**30)
#: apply_rows of a truncated operator bins the points into cells (O(N)) when that saves more than it costs: when
#: len(rows) x (1 - the fraction of the points a row visits) >= ROWS_BIN_COST. The binning took about as long as
#: 40 to 110 exact rows (benchmarks/rows_bench.py at N = 10^7, 2026-12-02); 100 is the middle of that.
ROWS_BIN_COST = 100.0
_BACKENDS = ("numba", "numpy", "torch")
_DTYPES = ("float64", "float32")


# ------------------------------------------------------------------------------------------- helpers
def _check_eps(eps) -> float:
    return positive_float(eps, "eps")


def _check_normalization(normalization) -> tuple[str, float]:
    """Canonical (kind, alpha): ("row", 0), ("alpha", a) or ("sinkhorn", 0)."""
    if normalization in ("row", "sinkhorn"):
        return normalization, 0.0
    if isinstance(normalization, (tuple, list)) and len(normalization) == 2 and normalization[0] == "alpha":
        try:
            a = real_number(normalization[1], "alpha")
        except (TypeError, ValueError):
            a = math.nan
        if 0.0 <= a <= 1.0:  # the Coifman-Lafon family; outside it the kernel weights grow without bound
            return "alpha", a
    raise ValueError(f"normalization must be 'row', 'sinkhorn' or ('alpha', a) with 0 <= a <= 1, "
                     f"got normalization={normalization!r}")


def _check_tolerance(tolerance) -> float:
    t = real_number(tolerance, "tolerance")
    if not 0.0 < t < 1.0:
        raise ValueError(f"tolerance must lie in (0, 1), got tolerance={tolerance!r}")
    return t


@dataclass(frozen=True)
class _Geometry:
    """Kernel inputs for one point set: f(i, j) = score(family, rows[i], cols[j]) (see ``_kernels``)."""

    family: int
    rows: np.ndarray
    cols: np.ndarray
    M: np.ndarray
    use_M: bool
    period: np.ndarray
    symmetric: bool

    @functools.cached_property
    def rows_t(self) -> np.ndarray:
        return np.ascontiguousarray(self.rows.T)

    @functools.cached_property
    def cols_t(self) -> np.ndarray:
        return np.ascontiguousarray(self.cols.T)

    def args(self, transpose: bool = False) -> tuple:
        """Kernel arguments (family, A, B^T, M, use_M, period); transpose swaps the roles of rows and cols.

        B^T is made once per geometry (cached), not once per product: the torch backend keeps it on the device.
        """
        if transpose:
            return self.family, self.cols, self.rows_t, self.M, self.use_M, self.period
        return self.family, self.rows, self.cols_t, self.M, self.use_M, self.period


def _geometry(metric: _metrics.PseudoMetric, x: np.ndarray, domain: Domain) -> _Geometry:
    """The metric's kernel form (:meth:`PseudoMetric.kernel_form`) as kernel arguments."""
    form = metric.kernel_form(x, domain)
    families = {_metrics.SQUARED: _kernels.SQUARED, _metrics.DOT: _kernels.DOT}
    if form.family not in families:
        raise ValueError(f"{metric!r}.kernel_form() returned family={form.family!r}; "
                         f"the kernels know {sorted(families)}")
    m = form.rows.shape[1]
    M = np.eye(m) if form.M is None else np.ascontiguousarray(form.M, dtype=np.float64)
    return _Geometry(families[form.family], np.ascontiguousarray(form.rows), np.ascontiguousarray(form.cols), M,
                     form.M is not None, np.ascontiguousarray(form.period, dtype=np.float64), bool(form.symmetric))


def _probe(space, n: int) -> float:
    """Mean number of points in the search ball of 64 evenly spaced rows (brute force, O(64 N))."""
    z = np.ascontiguousarray(space.coords, dtype=np.float64)
    rows = np.arange(0, n, max(1, n // 64), dtype=np.int64)
    periodic = space.box is not None
    box = np.asarray(space.box, dtype=np.float64) if periodic else np.ones(z.shape[1])
    if periodic:
        z = np.mod(z, box)
    return float(np.mean(_kernels.probe_counts(z, rows, box, periodic, space.radius**2)))


def _tree(z: np.ndarray, box):
    if box is None:
        return cKDTree(z)
    z = np.mod(z, box)
    z = np.where(z >= box, 0.0, z)  # mod can round up to exactly L; cKDTree wants [0, L)
    return cKDTree(z, boxsize=box)


def _exact_rows(geom: _Geometry, k: dict, c: float, idx: np.ndarray, s: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of diag(1/row sums) K diag(e^-s) V for a metric, O(len(idx) N): the self-term makes every
    row sum >= e^-s_i > 0, so the unshifted sums are safe."""
    sub = dataclasses.replace(geom, rows=np.ascontiguousarray(geom.rows[idx]))
    W = k["sum"](*sub.args(), c, np.zeros(idx.size), s, np.hstack([V, np.ones((V.shape[0], 1))]))
    return W[:, :-1] / W[:, -1:]


# ------------------------------------------------------------------------------------------- engines
class _DenseEngine:
    """Matrix-free: every pass recomputes f from the points (memory O(N k))."""

    truncated = False

    def __init__(self, geom: _Geometry, c: float, kernels: dict, is_metric: bool, x, domain):
        self.geom, self.c, self.k, self.is_metric = geom, c, kernels, is_metric
        self.x, self.xperiod = x, np.ascontiguousarray(domain.period)
        self.n = geom.rows.shape[0]
        self._normaliser = None  # (r, s) of the last log_row_sums: then S V = softmax form (torch only)

    def weighted_sum(self, r, s, V, transpose=False) -> np.ndarray:
        if not transpose and "softmax" in self.k and self._normaliser is not None \
                and self._normaliser[0] is r and self._normaliser[1] is s:
            out = self.k["softmax"](*self.geom.args(), self.c, s, V)  # r is the row normaliser: rows of S
            if out is not None:
                return out
        if transpose:  # (mu S)_j = sum_i exp(-f_ij c - s_j - r_i) mu_i: swap the roles of rows and columns
            return self.k["sum"](*self.geom.args(True), self.c, s, r, V)
        return self.k["sum"](*self.geom.args(), self.c, r, s, V)

    def rows_normalised_sum(self, idx, s, V) -> np.ndarray:
        """Rows ``idx`` of diag(1/row sums) K diag(e^-s) V, computing only those rows (O(len(idx) N))."""
        if self.is_metric:
            return _exact_rows(self.geom, self.k, self.c, idx, s, V)
        sub = dataclasses.replace(self.geom, rows=np.ascontiguousarray(self.geom.rows[idx]))
        r = self.k["lse"](*sub.args(), self.c, s)
        return self.k["sum"](*sub.args(), self.c, r, s, V)

    def log_row_sums(self, s) -> np.ndarray:
        if self.is_metric:  # self-term bounds the row sum from below: a plain sum is safe
            zero = np.zeros(self.n)
            r = np.log(self.k["sum"](*self.geom.args(), self.c, zero, s, np.ones((self.n, 1)))[:, 0])
        else:
            r = self.k["lse"](*self.geom.args(), self.c, s)
        self._normaliser = (r, s)
        return r

    def displacement(self, r, s) -> np.ndarray:
        out = self.k["displacement"](*self.geom.args(), self.x, self.xperiod, self.c, r, s)
        return out[:, :-1] / out[:, -1:]

    def dense(self, r, s) -> np.ndarray:
        out = np.empty((self.n, self.n))
        for rows in _kernels.row_blocks(self.n, self.n):
            F = _kernels.score_block(self.geom.family, self.geom.rows[rows], self.geom.cols, self.geom.M,
                                     self.geom.use_M, self.geom.period)
            with np.errstate(over="ignore"):  # c f = inf for tiny eps: weight exp(-inf) = 0, as intended
                W = np.exp(-self.c * F - r[rows, None] - s[None, :])
            # rows sum to 1 by construction of r; dividing again absorbs the rounding of huge exponents
            out[rows] = W / W.sum(axis=1, keepdims=True)
        return out


class _CachedEngine(_DenseEngine):
    """S built once as an (N, N) array on the first product and reused by every later one (fixed points).

    Each layer then streams 8 N^2 bytes instead of recomputing N^2 exponentials; rows of the cached S are
    normalised to sum to 1 (so it is the row-normalised matrix to rounding, like :meth:`dense`). Every
    product goes through the matrix, the first included, so the numbers never depend on the call history.
    """

    def __init__(self, *args):
        super().__init__(*args)
        self._S = self._key = None

    def _matrix_for(self, r, s) -> np.ndarray:
        key = (r.tobytes(), s.tobytes())
        if self._key != key:
            self._S, self._key = super().dense(r, s), key
        return self._S

    def weighted_sum(self, r, s, V, transpose=False) -> np.ndarray:
        S = self._matrix_for(r, s)
        return self.k["dense_t" if transpose else "dense"](S, V)

    def dense(self, r, s) -> np.ndarray:
        return self._matrix_for(r, s).copy()


class _SparseEngine:
    """Truncated: the kernel K_ij = exp(-f_ij c) on pairs with f_ij <= cutoff^2, in CSR form (metrics only).

    The CSR lives in the cell order of the neighbour search (``perm[p]`` is the point of internal index p), so
    that the columns of a row are near each other in memory and every gather of a product stays in cache;
    each call permutes its vectors in and out (O(N)). The tree path (search spaces of more than three
    dimensions) keeps the points' own order (perm = None).

    The CSR is built on the first product over all rows (``rows_normalised_sum`` works from a grid of cells
    instead, see :meth:`AttentionOperator.apply_rows`).

    Memory: int32 (or int64 beyond 2^31 points) column indices and the kernel values, 12 bytes per stored pair;
    S itself (8 more) only for displacements, dense() and extreme shifts; K^T (walkers) is K for a symmetric
    score and built on first use otherwise.
    """

    truncated = True
    _CHUNK_PAIRS = 1 << 22  # pairs found per neighbour-search chunk of the tree path (bounds its temporaries)

    def __init__(self, metric, geom: _Geometry, c: float, kernels: dict, x, domain, cutoff: float):
        self.geom, self.c, self.k, self.n = geom, c, kernels, x.shape[0]
        self.x, self.domain, self.metric, self.cutoff = x, domain, metric, cutoff
        self._csr = self._sdata = self._transpose = self._key = None

    # --- the CSR, built on the first product that needs all rows (rows_normalised_sum does not)
    @property
    def built(self) -> bool:
        return self._csr is not None

    def _stored(self) -> tuple:
        if self._csr is None:
            self._csr = self._build(self.metric, self.cutoff)
        return self._csr

    @property
    def perm(self):
        return self._stored()[0]

    @property
    def indptr(self) -> np.ndarray:
        return self._stored()[1]

    @property
    def indices(self) -> np.ndarray:
        return self._stored()[2]

    @property
    def kdata(self) -> np.ndarray:
        return self._stored()[3]

    # --- the internal (cell) order
    def _inward(self, v: np.ndarray) -> np.ndarray:
        return v if self.perm is None else np.ascontiguousarray(v[self.perm])

    def _outward(self, v: np.ndarray) -> np.ndarray:
        if self.perm is None:
            return v
        out = np.empty_like(v)
        out[self.perm] = v
        return out

    def _build(self, metric, cutoff: float):
        space = metric.search_space(self.x, self.domain, cutoff)
        z, box, radius = np.ascontiguousarray(space.coords, dtype=np.float64), space.box, space.radius

        def check(nnz: int) -> None:  # index (4 bytes, 8 beyond 2^31 points) + kernel value per stored pair
            check_memory(12.0 * nnz, f"the truncated kernel (N={self.n}, {nnz / self.n:.0f} neighbours a row)")

        found = _kernels.cell_neighbours(z, None if box is None else np.asarray(box, dtype=np.float64), radius, check)
        if found is not None:
            perm, indptr, indices, f = found
            return (perm, *self._from_candidates(perm, indptr, indices, f, exact=space.exact, cutoff=cutoff))
        return (None, *self._build_with_tree(space, cutoff))

    def _from_candidates(self, perm, indptr, indices, f, *, exact: bool, cutoff: float):
        """CSR of the kernel from candidate pairs and their squared search distances (f, reused in place)."""
        if not exact:  # the search ball is larger than the metric ball: recompute f and keep f <= cutoff^2
            rows = np.repeat(np.arange(self.n), np.diff(indptr))
            f = self._scores(perm[rows], perm[indices.astype(np.int64)])
            keep = f <= cutoff * cutoff
            indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=self.n))]).astype(np.int64)
            indices, f = indices[keep], f[keep]
        np.multiply(f, -self.c, out=f)
        np.exp(f, out=f)
        return indptr, indices, f

    def _build_with_tree(self, space, cutoff: float):
        """The cKDTree path, for search spaces of more than three dimensions (chunks of rows)."""
        z, box, radius = np.ascontiguousarray(space.coords, dtype=np.float64), space.box, space.radius
        tree = _tree(z, box)
        # rows per chunk from the expected neighbour count (a sample of 64 rows)
        probe = tree.query_ball_point(z[:: max(1, self.n // 64)], radius, return_length=True)
        per_row = max(float(np.mean(probe)), 1.0)
        # 24 bytes a stored pair (index, kernel, scaled kernel), plus ~100 per pair of the chunk's search temporaries
        check_memory(24.0 * per_row * self.n + 100.0 * min(self._CHUNK_PAIRS, per_row * self.n),
                     f"the truncated kernel (N={self.n}, about {per_row:.0f} neighbours a row)")
        chunk = max(1, int(self._CHUNK_PAIRS / per_row))
        counts, indices, data = [], [], []
        for start in range(0, self.n, chunk):
            stop = min(start + chunk, self.n)
            pairs = _tree(z[start:stop], box).sparse_distance_matrix(tree, radius, output_type="ndarray")
            order = np.argsort(pairs["i"] * self.n + pairs["j"])  # CSR order: by row, then column
            rows, cols = pairs["i"][order] + start, pairs["j"][order]
            # an exact search space's tree distance is the metric distance; otherwise its ball is larger
            f = pairs["v"][order] ** 2 if space.exact else self._scores(rows, cols)
            del pairs, order
            keep = f <= cutoff * cutoff  # exact metric ball (the search ball may be larger)
            counts.append(np.bincount(rows[keep] - start, minlength=stop - start))
            indices.append(cols[keep].astype(np.int64))
            data.append(np.exp(-self.c * f[keep]))
        indptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
        return indptr, np.concatenate(indices), np.concatenate(data)

    def _scores(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        g = self.geom
        D = g.rows[rows] - g.cols[cols]
        if np.any(g.period > 0):
            safe = np.where(g.period > 0, g.period, 1.0)
            D = np.where(g.period > 0, D - g.period * np.rint(D * (1.0 / safe)), D)
        if g.use_M:
            return np.einsum("pk,km,pm->p", D, g.M, D)
        return np.einsum("pk,pk->p", D, D)

    @property
    def nnz(self) -> int:
        return int(self.indices.size)

    def _rows(self) -> np.ndarray:
        return np.repeat(np.arange(self.n), np.diff(self.indptr))

    def _matrix(self, data) -> sparse.csr_matrix:
        return sparse.csr_matrix((data, self.indices, self.indptr), shape=(self.n, self.n))

    def _scaled(self, r, s) -> np.ndarray:
        key = (r.tobytes(), s.tobytes())
        if self._key != key:  # S = diag(e^-r) K diag(e^-s), cached per (r, s)
            check_memory(8.0 * self.nnz, f"the truncated S (N={self.n}, nnz={self.nnz})")
            self._sdata = self.k["csr_scale"](self.indptr, self.indices, self.kdata, self._inward(r), self._inward(s))
            self._key = key
        return self._sdata

    # Products use S = diag(e^-r) K diag(e^-s) without storing S (whose first touch alone costs as much as the
    # product at N = 10^6): the factors are applied to the vectors. They are safe where every factor is a
    # normal float far from over- and underflow; otherwise S is formed pair by pair (csr_scale).
    _FACTOR_RANGE = (1e-100, 1e100)

    def _factors(self, r, s):
        er, es = np.exp(-self._inward(r)), np.exp(-self._inward(s))
        lo, hi = self._FACTOR_RANGE
        if er.min(initial=1.0) >= lo and er.max(initial=1.0) <= hi and es.min(initial=1.0) >= lo \
                and es.max(initial=1.0) <= hi:
            return er[:, None], es[:, None]
        return None

    def _kernel_transpose(self) -> tuple:
        """K^T in CSR: K itself for a symmetric score (the search gives f_ij and f_ji bit for bit equal)."""
        if self.geom.symmetric and self.perm is not None:
            return self.indptr, self.indices, self.kdata
        if self._transpose is None:
            T = self._matrix(self.kdata).T.tocsr()
            self._transpose = (T.indptr.astype(np.int64), T.indices.astype(np.int64), T.data)
        return self._transpose

    def weighted_sum(self, r, s, V, transpose=False) -> np.ndarray:
        V = self._inward(V)
        factors = self._factors(r, s)
        if factors is not None:
            er, es = factors
            if not transpose:
                return self._outward(er * self.k["csr"](self.indptr, self.indices, self.kdata, es * V))
            return self._outward(es * self.k["csr"](*self._kernel_transpose(), er * V))
        data = self._scaled(r, s)
        if not transpose:
            return self._outward(self.k["csr"](self.indptr, self.indices, data, V))
        T = self._matrix(data).T.tocsr()
        return self._outward(self.k["csr"](T.indptr.astype(np.int64), T.indices.astype(np.int64), T.data, V))

    def log_row_sums(self, s) -> np.ndarray:
        es = np.exp(-self._inward(s))[:, None]
        return self._outward(np.log(self.k["csr"](self.indptr, self.indices, self.kdata, es)[:, 0]))

    def rows_normalised_sum(self, idx, s, V) -> np.ndarray:
        """Rows ``idx`` of diag(1/row sums) K diag(e^-s) V, without the CSR of all N rows.

        Where the search space is the metric's own (``exact``), of at most three dimensions, and a grid of cells
        holds the cutoff ball: the truncated rows themselves, O(N) binning plus O(len(idx) x neighbours)
        (``_kernels.cell_rows_sum``). Otherwise the exact rows, O(len(idx) N), which differ from the truncated
        ones by at most ``tolerance`` relative. The choice never depends on what was computed before.
        """
        space = self.metric.search_space(self.x, self.domain, self.cutoff)
        if space.exact and "cell_rows" in self.k:
            box = None if space.box is None else np.asarray(space.box, dtype=np.float64)
            z = np.ascontiguousarray(space.coords, dtype=np.float64)
            visited = _kernels.cell_rows_candidates(z, box, space.radius)
            # the binning costs about as much as ROWS_BIN_COST exact rows: the grid pays where it saves more
            if visited is not None and idx.size * (1.0 - visited) >= ROWS_BIN_COST:
                W = self.k["cell_rows"](z, box, space.radius, idx, self.c, s, V)
                if W is not None:
                    return W[:, :-1] / W[:, -1:]
        return _exact_rows(self.geom, self.k, self.c, idx, s, V)

    def displacement(self, r, s) -> np.ndarray:
        data, rows, x = self._scaled(r, s), self._rows(), self._inward(self.x)
        D = self.domain.difference(x[self.indices], x[rows])
        out = np.stack([np.bincount(rows, data * D[:, k], minlength=self.n) for k in range(D.shape[1])], axis=1)
        return self._outward(out / np.bincount(rows, data, minlength=self.n)[:, None])

    def dense(self, r, s) -> np.ndarray:
        inner = self._matrix(self._scaled(r, s)).toarray()
        if self.perm is None:
            return inner
        out = np.empty_like(inner)
        out[np.ix_(self.perm, self.perm)] = inner
        return out


# ------------------------------------------------------------------------------------------- operator
class AttentionOperator:
    r"""Row-stochastic attention matrix S_eps on fixed points, applied matrix-free.

    ``S_eps[i, j] = exp(-f(x_i, x_j) / (2 eps)) / sum_k exp(-f(x_i, x_k) / (2 eps))`` (THEORY.md section 1);
    one application is one attention layer = one Euler step of length eps/2 (t = K eps / 2 after K layers).

    Parameters
    ----------
    points : (N, d) or (N,) array_like
        Token positions (validated: no NaN; inside a Box; wrapped into a Torus).
    eps : float
        Kernel scale, > 0 (vanilla attention is eps = 1/2).
    metric : PseudoMetric, optional
        Default :class:`~continuum_attention.metrics.Euclidean`.
    domain : Domain, optional
        Default Euclidean space R^d. On a Torus, Euclidean and Mahalanobis use minimum-image differences.
    normalization : "row", ("alpha", a) or "sinkhorn"
        See the module docstring. Sinkhorn needs a symmetric f (any metric, or DotProduct with Q^T K
        symmetric); it iterates ``log u <- (log u - log K u) / 2`` until ``max |u (K u) - 1| <= sinkhorn_tol``
        and reports the count in :attr:`sinkhorn_iterations`.
    backend : "numba", "numpy" or "torch"
        Fused parallel Numba kernels, their blockwise NumPy references (same numbers to ~1e-15), or the same
        blocks in PyTorch (``device``, ``dtype``; needs the ``learn`` extra).
    device : str, optional
        backend="torch" only: "cpu", "cuda", "cuda:1", ...; default "cuda" when available, else "cpu".
    dtype : "float64" or "float32"
        Arithmetic of the kernels. float32 (about 1e-6 relative) needs backend="torch".
    truncate : bool or "auto"
        Metrics only. Keep only pairs with ``f <= r^2``, ``r^2 = 2 eps ln(N / tolerance)``, found with a
        ``cKDTree`` (periodic on a Torus) and stored as CSR. Each dropped weight is < tolerance / N and
        every row sum is >= 1, so the dropped mass per row, relative to the row sum, is <= tolerance.
        Normalisations are then computed on the truncated kernel. ``"auto"`` (the default) truncates when
        the metric is a metric, N >= AUTO_SPARSE_MIN_N (2000) and a row keeps at most AUTO_SPARSE_FRACTION
        (25%) of the points (the neighbour counts of 64 rows are measured) and the CSR form (about 12 bytes a
        pair) fits in half the available memory: the regime where the neighbour search pays. It does not pay in high dimension at moderate eps (the cutoff ball then holds most
        points) nor for pseudo-metrics (no cutoff exists); those stay exact.
    tolerance : float
        Relative mass dropped per row in truncated mode, in (0, 1). Default 1e-12.
    sinkhorn_tol, sinkhorn_max_iter :
        Sinkhorn stopping rule (a RuntimeWarning is issued if the limit is reached).
    key_potential : (N,) array_like, optional
        A per-key potential w: ``S_ij = exp(-f_ij / (2 eps) + w_j) / sum_k exp(-f_ik / (2 eps) + w_k)``, the
        kernel on keys reweighted by e^w (the density seen becomes p e^w). Row normalisation only, and never
        truncated (the cutoff's mass bound assumes weights <= 1). Rows then use the log-sum-exp pass of the
        pseudo-metrics (the self-term need not be the row maximum). :meth:`degrees` stay those of the kernel
        without the potential.
    dense_budget : float
        Bytes an untruncated S may take when cached (default DENSE_BUDGET = 1 GiB, N <= 11585; also at most
        half the available memory). Cached, S is built once on the first product and every later layer is
        one pass over it; 0 never caches (every pass recomputes the exponentials, O(N) memory).

    The plan chosen is :attr:`plan`: ``"sparse"`` (truncated CSR), ``"dense"`` (cached S) or
    ``"matrix-free"``; it is reported in the results of :class:`~continuum_attention.ParticleSolver`.

    Notes
    -----
    Memory: dense matrix-free mode holds O(N k) numbers, never an N x N array; truncated mode holds the
    O(nnz) CSR matrix. :meth:`degrees` are the unshifted row sums ``q_i = sum_j exp(-f_ij / (2 eps))`` (for a
    metric q_i >= 1 because f_ii = 0 is the row maximum; for a pseudo-metric q may overflow, use
    :meth:`log_degrees`).
    """

    def __init__(self, points, eps: float, *, metric: _metrics.PseudoMetric | None = None,
                 domain: Domain | None = None, normalization="row", backend: str = "numba",
                 truncate: bool | str = "auto", tolerance: float = 1e-12, sinkhorn_tol: float = 1e-12,
                 sinkhorn_max_iter: int = 10000, dense_budget: float = DENSE_BUDGET, key_potential=None,
                 device: str | None = None, dtype: str = "float64"):
        self.eps = _check_eps(eps)
        self.metric = _metrics.as_metric(metric)
        x = as_points(points)
        self.domain = EuclideanSpace(x.shape[1]) if domain is None else domain
        if not isinstance(self.domain, Domain):
            raise TypeError(f"domain must be a Torus, Box or Euclidean domain, got domain={describe(domain)}")
        self.points = self.metric.validate_points(self.domain.validate_points(x))
        self.n, self.dim = self.points.shape
        self.normalization = _check_normalization(normalization)
        self.backend = option(backend, "backend", _BACKENDS)
        self.tolerance = _check_tolerance(tolerance)
        self.sinkhorn_tol = positive_float(sinkhorn_tol, "sinkhorn_tol")
        self.sinkhorn_max_iter = positive_int(sinkhorn_max_iter, "sinkhorn_max_iter")
        self.sinkhorn_iterations: int | None = None
        if self.normalization[0] == "sinkhorn" and not self.metric.is_symmetric:
            raise ValueError(f"normalization='sinkhorn' needs a symmetric pseudo-metric; {self.metric!r} "
                             "is not symmetric (f(x, y) != f(y, x))")
        self.key_potential = self._check_key_potential(key_potential, truncate)
        # the self-term bounds each row sum from below only for a metric without a key potential
        self._self_bounded = self.metric.is_metric and self.key_potential is None
        geom = _geometry(self.metric, self.points, self.domain)
        kernels = self._kernels(device, dtype)
        # 1 / (2 eps) overflows for eps below ~1e-308; the largest float keeps f = 0 at weight 1 (not inf * 0 =
        # NaN) and every f > 0 at weight 0: S = I, the exact limit
        c = min(1.0 / (2.0 * self.eps), float(np.finfo(np.float64).max))
        self.cutoff = math.sqrt(2.0 * self.eps * max(math.log(self.n / self.tolerance), 0.0))
        self.dense_budget = nonnegative_float(dense_budget, "dense_budget")
        if self._use_truncation(truncate):
            self.plan = "sparse"
            self._engine = _SparseEngine(self.metric, geom, c, kernels, self.points, self.domain, self.cutoff)
        else:
            cached = 8.0 * self.n * self.n <= min(self.dense_budget, 0.5 * memory_budget())
            self.plan = "dense" if cached else "matrix-free"
            engine = _CachedEngine if cached else _DenseEngine
            self._engine = engine(geom, c, kernels, self._self_bounded, self.points, self.domain)
        self._shifts: tuple[np.ndarray, np.ndarray] | None = None
        self._row_scale: np.ndarray | None = None  # pseudo-metrics only, see _ensure_shifts
        self._log_degrees: np.ndarray | None = None

    # ---------------------------------------------------------------------------------- construction
    def _kernels(self, device, dtype) -> dict:
        self.dtype = option(dtype, "dtype", _DTYPES)
        if self.backend != "torch":
            if device is not None:
                raise ValueError(f"device is for backend='torch', got device={device!r} with backend={self.backend!r}")
            if self.dtype != "float64":
                raise ValueError(f"dtype={dtype!r} needs backend='torch' (the {self.backend} kernels are float64)")
            self.device = "cpu"
            return _kernels.NUMBA if self.backend == "numba" else _kernels.NUMPY
        from . import _torch

        torch = _torch.import_torch()
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if not isinstance(device, str):
            raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got device={describe(device)}")
        try:
            torch.empty(0, device=device)
        except (RuntimeError, AssertionError) as exc:
            raise ValueError(f"device={device!r} is not available to PyTorch here: {exc}") from None
        self.device = device
        return _torch.TorchKernels(device, self.dtype)

    def _check_key_potential(self, key_potential, truncate) -> np.ndarray | None:
        if key_potential is None:
            return None
        w = real_array(key_potential, "key_potential")
        if w.ndim != 1 or w.shape[0] != self.n:
            raise ValueError(f"key_potential must have shape ({self.n},), got shape {w.shape}")
        if self.normalization[0] != "row":
            raise ValueError(f"key_potential needs normalization='row', got normalization={self.normalization!r}")
        if truncate is True:
            raise ValueError("key_potential cannot be combined with truncate=True (use truncate=False or 'auto')")
        return np.ascontiguousarray(w, dtype=np.float64)

    def _use_truncation(self, truncate) -> bool:
        option(truncate, "truncate", (True, False, "auto"))
        if self.key_potential is not None:
            return False
        if truncate is True and not self.metric.is_metric:
            raise ValueError(f"truncate=True needs a metric (f >= 0 with f(x, x) = 0); {self.metric!r} is not one")
        if truncate != "auto":
            return bool(truncate)
        if not self.metric.is_metric or self.n < AUTO_SPARSE_MIN_N:
            return False
        # measured, not guessed: the neighbours of 64 rows within the search ball (a k-d tree, O(N log N))
        space = self.metric.search_space(self.points, self.domain, self.cutoff)
        per_row = _probe(space, self.n)
        # and the CSR (12 bytes a pair: int32 column, kernel value) must fit in half the available memory
        return bool(per_row <= AUTO_SPARSE_FRACTION * self.n and 12.0 * per_row * self.n <= 0.5 * memory_budget())

    @property
    def truncated(self) -> bool:
        """True when the operator is the truncated CSR approximation."""
        return self._engine.truncated

    @property
    def nnz(self) -> int:
        """Stored pairs: N^2 (implicitly) when dense, the CSR count when truncated."""
        return self._engine.nnz if self.truncated else self.n * self.n

    def _ensure_shifts(self) -> tuple[np.ndarray, np.ndarray]:
        if self._shifts is None:
            kind, a = self.normalization
            if kind == "row":
                s = self._row_potential()
            elif kind == "alpha":
                s = a * self.log_degrees()
            else:
                s = self._sinkhorn()
            r = np.ascontiguousarray(self._engine.log_row_sums(s))
            self._shifts = (r, s)
            if not self._self_bounded:
                # Large scores (|f| / (2 eps) ~ 1e4 and more) put an error of |r| x 1e-16 into every weight
                # of a row, and r cannot hold more digits than that: the row sums then miss 1 by ~1e-12. The
                # measured row sums of the same weights (bitwise the same exponents on every pass) correct it.
                ones = np.ones((self.n, 1))
                self._row_scale = 1.0 / self._engine.weighted_sum(r, s, ones)[:, 0]
        return self._shifts

    def _row_potential(self) -> np.ndarray:
        """Column potential of row normalisation: 0, or max(w) - w >= 0 for a key potential w."""
        if self.key_potential is None:
            return np.zeros(self.n)
        return np.ascontiguousarray(self.key_potential.max() - self.key_potential)

    def _sinkhorn(self) -> np.ndarray:
        """Column potential s = -log u with u_i sum_j K_ij u_j = 1, by the damped symmetric iteration."""
        log_u = -0.5 * self.log_degrees()
        for it in range(1, self.sinkhorn_max_iter + 1):
            log_ku = self._engine.log_row_sums(-log_u)
            residual = float(np.max(np.abs(np.expm1(log_u + log_ku))))
            if residual <= self.sinkhorn_tol:
                break
            log_u = 0.5 * (log_u - log_ku)
        else:
            warnings.warn(f"Sinkhorn stopped after {self.sinkhorn_max_iter} iterations with residual "
                          f"{residual:.3e} > sinkhorn_tol={self.sinkhorn_tol:.1e}", RuntimeWarning, stacklevel=3)
        self.sinkhorn_iterations = it
        return -log_u

    # ---------------------------------------------------------------------------------- public API
    def log_degrees(self) -> np.ndarray:
        """log q_i, q_i = sum_j exp(-f(x_i, x_j) / (2 eps)) (of the truncated kernel in truncated mode)."""
        if self._log_degrees is None:
            self._log_degrees = self._engine.log_row_sums(np.zeros(self.n))
        return self._log_degrees.copy()

    def degrees(self) -> np.ndarray:
        """Unshifted row sums q_i = sum_j exp(-f_ij / (2 eps)) (>= 1 for metrics; may overflow otherwise)."""
        with np.errstate(over="ignore"):
            return np.exp(self.log_degrees())

    def _as_values(self, H, name: str) -> tuple[np.ndarray, bool]:
        V = real_array(H, name)
        if V.ndim not in (1, 2) or V.shape[0] != self.n:
            raise ValueError(f"{name} must have shape ({self.n},) or ({self.n}, k), got shape {V.shape}")
        return np.ascontiguousarray(V.reshape(self.n, -1)), V.ndim == 1

    def apply(self, H) -> np.ndarray:
        """S_eps H (one attention layer on features), H of shape (N,) or (N, k); same shape back."""
        V, flat = self._as_values(H, "H")
        r, s = self._ensure_shifts()
        out = self._engine.weighted_sum(r, s, V)
        if self._row_scale is not None:
            out *= self._row_scale[:, None]
        return out[:, 0] if flat else out

    def apply_transpose(self, mu) -> np.ndarray:
        """mu S_eps (one step of the walkers' random walk), mu of shape (N,) or (N, k); same shape back."""
        V, flat = self._as_values(mu, "mu")
        r, s = self._ensure_shifts()
        if self._row_scale is not None:
            V = V * self._row_scale[:, None]
        out = self._engine.weighted_sum(r, s, V, transpose=True)
        return out[:, 0] if flat else out

    def apply_rows(self, rows, H) -> np.ndarray:
        """(S_eps H)[rows]: the layer's output at a subset of the points.

        With row normalisation in matrix-free mode this costs O(len(rows) N) (the columns still run over all
        N points, so the values equal ``apply(H)[rows]`` to rounding): pointwise errors at a few evaluation
        points of a large sample. Alpha and Sinkhorn normalisations first need their column potentials,
        one O(N^2) pass (plus the Sinkhorn iterations) on the first call.

        Truncated mode never builds the CSR of all N rows for this: where the metric's search space is its
        own (Euclidean on a Torus, Box or R^d, Mahalanobis off a torus, Learned features) in at most three
        dimensions, the cutoff ball fits a grid of cells (on a Torus, cutoff below about L/2), and the rows
        are many enough for the binning to pay (``len(rows) x (1 - visited fraction) >= ROWS_BIN_COST``), it
        bins the points in O(N) and visits only the cells near each row: O(N + len(rows) x neighbours), the
        rows of the truncated kernel (equal to ``apply(H)[rows]`` to rounding). Otherwise it computes the
        exact rows, O(len(rows) N), which differ from the truncated ones by at most ``tolerance`` relative mass.
        """
        if isinstance(rows, (str, bytes)) or rows is None:
            raise TypeError(f"rows must be a 1-D array of integers, got rows={describe(rows)}")
        idx = np.asarray(rows)
        if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= self.n:
            raise ValueError(f"rows must be a non-empty 1-D array of integers in [0, {self.n}), got rows={rows!r}")
        V, flat = self._as_values(H, "H")
        s = self._row_potential() if self.normalization[0] == "row" else self._ensure_shifts()[1]
        out = self._engine.rows_normalised_sum(idx.astype(np.int64), s, V)
        return out[:, 0] if flat else out

    def invariant_weights(self) -> np.ndarray:
        """The left invariant vector pi of S (pi S = pi, sum pi = 1), for symmetric pseudo-metrics.

        S_ij = exp(-f_ij / (2 eps) - r_i - s_j) with f symmetric gives pi_i proportional to exp(r_i - s_i):
        the degrees q_i for row normalisation (q_i e^(w_i), q with the weights, under a key potential w),
        constant for Sinkhorn. Features conserve pi . H exactly (up to
        rounding) from layer to layer: the discrete p^2-weighted mean (THEORY section 3); walkers started
        from pi stay there.
        """
        if not self.metric.is_symmetric:
            raise ValueError(f"invariant_weights() needs a symmetric pseudo-metric; {self.metric!r} is not symmetric")
        r, s = self._ensure_shifts()
        a = r - s
        w = np.exp(a - a.max())  # exact shift: the largest weight is 1, nothing overflows
        return w / w.sum()

    def displacement(self) -> np.ndarray:
        """sum_j S_ij (x_j - x_i) with minimum-image differences (N, d): one tokens layer is x + this."""
        if self.normalization[0] == "row" and self._self_bounded and not self.truncated:
            zero = np.zeros(self.n)  # exact self-term shift: one fused pass, the kernel normalises itself
            return self._engine.displacement(zero, zero)
        return self._engine.displacement(*self._ensure_shifts())

    def dense(self) -> np.ndarray:
        """S_eps as an (N, N) array, for N <= DENSE_LIMIT (20000) only."""
        if self.n > DENSE_LIMIT:
            raise ValueError(f"dense() refuses N={self.n} > {DENSE_LIMIT} (an N x N float64 array would need "
                             f"{self.n * self.n * 8 / 2**30:.1f} GiB); use apply() instead")
        check_memory(8.0 * self.n * self.n + 3 * 8.0 * self.n * min(self.n, 1 << 21), f"dense() (an {self.n} x {self.n} matrix)")
        return self._engine.dense(*self._ensure_shifts())

    def __repr__(self) -> str:
        if self.truncated:  # the CSR is built on the first product over all rows; a repr does not build it
            mode = f"truncated, nnz={self.nnz}" if self._engine.built else "truncated, CSR not built yet"
        else:
            mode = self.plan
        return (f"AttentionOperator(N={self.n}, eps={self.eps:g}, metric={self.metric!r}, domain={self.domain!r}, "
                f"normalization={self.normalization!r}, backend={self.backend!r}, {mode})")
