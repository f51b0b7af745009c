"""Pseudo-metrics f(x, y): how attention scores a pair of tokens (THEORY.md section 1).

One object, two faces (DESIGN.md):

* the particle side scores pairs, ``pairwise(x, y, domain)`` (a NumPy reference; the fast kernels live in
  :mod:`continuum_attention.attention`);
* the continuum side reads the Riemannian tensor g(x) of the metric that f induces, ``tensor(points)``,
  with the convention ``f(x, x + dx) = dx^T g(x) dx + o(|dx|^2)`` (so :class:`Euclidean` gives I and
  :class:`Mahalanobis` gives M). The attention-limit operator is then
  ``At H = Delta_g H + 2 <grad log p, grad H>_g``.

Every class here derives from :class:`PseudoMetric` and supplies, in one place, all that the rest of the
package reads from a metric (nothing else dispatches on metric classes; :func:`as_metric` is the one door in):

* the particle kernels: :meth:`PseudoMetric.kernel_form` -- the score family (squared distance or dot
  product), the coordinates it acts on, an optional quadratic form and the periodic axes (:class:`KernelForm`);
* truncation: :meth:`PseudoMetric.search_space` -- coordinates, periodic box and radius of a Euclidean ball
  that holds every pair with f <= r^2 (:class:`SearchSpace`);
* the continuum side: ``is_metric``, ``is_constant`` and :meth:`PseudoMetric.tensor` -- the Riemannian tensor;
* ``pairwise(x, y, domain=None) -> (Px, Py)`` (a NumPy reference), ``to_config() -> dict`` and
  :func:`metric_from_config`.

A new pseudo-metric is a subclass that implements these; :class:`AttentionOperator`, :class:`ParticleSolver`
and :class:`AttentionLimitPDE` then accept it unchanged.

Periodic domains: :class:`Euclidean` and :class:`Mahalanobis` take the minimum image of ``x - y`` on the
periodic axes of a :class:`~continuum_attention.domains.Torus`. :class:`DotProduct` and :class:`Learned`
act on raw coordinates (a feature map of a periodic coordinate is the user's responsibility; compose it with
e.g. ``cos``/``sin`` to make it periodic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._validation import describe, nonnegative_float, positive_float, positive_int, real_array, table
from .domains import Domain, as_points

__all__ = [
    "PseudoMetric",
    "KernelForm",
    "SearchSpace",
    "as_metric",
    "ScaledMetric",
    "Euclidean",
    "Mahalanobis",
    "DotProduct",
    "DotProductSplit",
    "Learned",
    "ResidualFeatureMap",
    "metric_from_config",
    "constant_tensor",
]

FeatureMap = Callable[[np.ndarray], np.ndarray]


def _as_matrix(value, name: str, shape: tuple[int | None, int | None] = (None, None)) -> np.ndarray:
    """Finite float64 2-D array with an optional required shape; ValueError naming ``name`` otherwise."""
    a = real_array(value, name, finite=False)
    if a.ndim == 0:
        a = a.reshape(1, 1)
    if a.ndim != 2 or any(s is not None and s != t for s, t in zip(shape, a.shape)):
        raise ValueError(f"{name} must be a 2-D matrix of shape {shape}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {name}={describe(a.tolist())}")
    return np.ascontiguousarray(a)


def _as_vector(value, name: str, size: int) -> np.ndarray:
    v = real_array(value, name, finite=False).ravel()
    if v.size != size or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be a finite vector of length {size}, got {np.asarray(value).tolist()}")
    return v


def _check_dim(points: np.ndarray, dim: int | None, who) -> None:
    """ValueError when the points' dimension is not ``dim``; ``who`` (an object) is formatted only then."""
    if dim is not None and points.shape[1] != dim:
        raise ValueError(f"points have dimension {points.shape[1]}, but {who!r} has dimension {dim}")


def _differences(x: np.ndarray, y: np.ndarray, domain: Domain | None) -> np.ndarray:
    """(Px, Py, d) differences x_i - y_j, minimum image on the domain's periodic axes."""
    diff = x[:, None, :] - y[None, :, :]
    return diff if domain is None else domain.difference(diff, 0.0)


SQUARED = "squared"
DOT = "dot"


@dataclass(frozen=True)
class KernelForm:
    """How the particle kernels evaluate f on one point set: f(i, j) from ``rows[i]`` and ``cols[j]``.

    * ``family == "squared"``: f = D^T M D (M = I when ``M`` is None), D = rows[i] - cols[j] reduced to the
      minimum image on every axis k with ``period[k] > 0`` (round half to even);
    * ``family == "dot"``: f = -rows[i] . cols[j] (queries against keys).

    ``symmetric`` is True when f(x, y) = f(y, x). Arrays are C-contiguous float64 of shapes (N, m), (N, m),
    (m, m) or None, and (m,).
    """

    family: str
    rows: np.ndarray
    cols: np.ndarray
    M: np.ndarray | None
    period: np.ndarray
    symmetric: bool

    @classmethod
    def squared(cls, z: np.ndarray, period=None, M=None) -> "KernelForm":
        """f = |z_i - z_j|^2 (or the quadratic form M), minimum image where ``period > 0``."""
        z = np.ascontiguousarray(z, dtype=np.float64)
        period = np.zeros(z.shape[1]) if period is None else np.ascontiguousarray(period, dtype=np.float64)
        M = None if M is None else np.ascontiguousarray(M, dtype=np.float64)
        return cls(SQUARED, z, z, M, period, True)

    @classmethod
    def dot(cls, queries: np.ndarray, keys: np.ndarray, symmetric: bool) -> "KernelForm":
        """f = -q_i . k_j."""
        q = np.ascontiguousarray(queries, dtype=np.float64)
        k = np.ascontiguousarray(keys, dtype=np.float64)
        return cls(DOT, q, k, None, np.zeros(q.shape[1]), bool(symmetric))


@dataclass(frozen=True)
class SearchSpace:
    """A Euclidean ball search that finds every pair with f(x_i, x_j) <= r^2 (truncated mode).

    ``coords`` (N, m) are searched with a k-d tree (periodic with side lengths ``box`` when not None) for
    pairs at distance <= ``radius``. ``exact`` is True when f equals the squared tree distance, so the scores
    need not be recomputed; otherwise the ball is larger than the metric ball and the kernel form decides.
    """

    coords: np.ndarray
    box: np.ndarray | None
    radius: float
    exact: bool


def _periods(domain: Domain | None, d: int) -> np.ndarray:
    return np.zeros(d) if domain is None else np.ascontiguousarray(domain.period, dtype=np.float64)


def _box(domain: Domain | None):
    return np.asarray(domain.lengths, dtype=np.float64) if domain is not None and np.any(domain.periodic) else None


class PseudoMetric:
    """Base class: a score f(x, y) whose softmax ``exp(-f / (2 eps))`` is the attention kernel.

    Subclasses set ``is_metric`` and implement :meth:`pairwise`, :meth:`to_config` and, for metrics,
    :meth:`tensor`. ``dim`` is the point dimension when the metric fixes it, else None.
    """

    is_metric: bool = False
    #: True when the Riemannian tensor does not depend on x: callers may then evaluate tensor() at one point.
    is_constant: bool = False
    dim: int | None = None

    @property
    def constant_tensor(self) -> np.ndarray | None:
        """(d, d) Riemannian tensor when it is constant and its dimension is known, else None."""
        return None

    @property
    def is_symmetric(self) -> bool:
        """True when f(x, y) = f(y, x) for all x, y (needed by Sinkhorn normalisation)."""
        return self.is_metric

    def tensor(self, points) -> np.ndarray:
        """Riemannian tensor g(x) (P, d, d) with f(x, x + dx) = dx^T g(x) dx + o(|dx|^2)."""
        raise ValueError(f"{type(self).__name__} is not a metric (is_metric=False): it has no Riemannian tensor")

    def pairwise(self, x, y, domain: Domain | None = None) -> np.ndarray:
        """Reference values f(x_i, y_j), shape (Px, Py). Memory O(Px Py d): small inputs only."""
        raise NotImplementedError

    def kernel_form(self, points: np.ndarray, domain: Domain | None = None) -> KernelForm:
        """The particle kernels' view of f on validated points (N, d): see :class:`KernelForm`."""
        raise NotImplementedError(f"{type(self).__name__} does not define kernel_form()")

    def search_space(self, points: np.ndarray, domain: Domain | None, radius: float) -> SearchSpace:
        """A ball search holding every pair with f <= radius^2 (metrics only; truncated mode)."""
        raise ValueError(f"{type(self).__name__} is not a metric (is_metric=False): it has no neighbour search")

    def to_config(self) -> dict:
        """Plain-data description (numbers, lists, strings) that :func:`metric_from_config` rebuilds."""
        raise NotImplementedError

    def validate_points(self, points, *, name: str = "points") -> np.ndarray:
        """Points as (N, d) float64; ValueError if NaN or if the dimension disagrees with the metric."""
        x = as_points(points, name=name)
        _check_dim(x, self.dim, self)
        return x

    def __eq__(self, other) -> bool:
        try:
            return type(self) is type(other) and self.to_config() == other.to_config()
        except ValueError:
            return self is other

    def __hash__(self) -> int:  # consistent with __eq__: equal configurations hash alike
        try:
            return hash((type(self).__name__, repr(self.to_config())))
        except ValueError:
            return id(self)


class Euclidean(PseudoMetric):
    """Squared Euclidean distance f(x, y) = |x - y|^2 (minimum image on a Torus). Tensor g = I.

    Parameters
    ----------
    dim : int, optional
        Point dimension. Only needed for :attr:`constant_tensor`; without it, use :meth:`tensor` or
        :func:`constant_tensor` (which take the dimension from the caller).
    """

    is_metric = True

    def __init__(self, dim: int | None = None):
        self.dim = None if dim is None else positive_int(dim, "dim")

    is_constant = True

    @property
    def constant_tensor(self) -> np.ndarray | None:
        return None if self.dim is None else np.eye(self.dim)

    def tensor(self, points) -> np.ndarray:
        x = self.validate_points(points)
        return np.broadcast_to(np.eye(x.shape[1]), (x.shape[0], x.shape[1], x.shape[1])).copy()

    def pairwise(self, x, y, domain: Domain | None = None) -> np.ndarray:
        x, y = self.validate_points(x, name="x"), self.validate_points(y, name="y")
        return np.sum(_differences(x, y, domain) ** 2, axis=-1)

    def kernel_form(self, points: np.ndarray, domain: Domain | None = None) -> KernelForm:
        return KernelForm.squared(points, _periods(domain, points.shape[1]))

    def search_space(self, points: np.ndarray, domain: Domain | None, radius: float) -> SearchSpace:
        return SearchSpace(points, _box(domain), float(radius), True)

    def to_config(self) -> dict:
        return {"type": "Euclidean"} if self.dim is None else {"type": "Euclidean", "dim": self.dim}

    def __repr__(self) -> str:
        return "Euclidean()" if self.dim is None else f"Euclidean(dim={self.dim})"


class Mahalanobis(PseudoMetric):
    """f(x, y) = (x - y)^T M (x - y) with M symmetric positive definite (minimum image on a Torus).

    The induced metric is constant, g = M, and ``Delta_g H = tr(M^-1 Hess H)`` (THEORY.md section 3).
    On a Torus the minimum image is taken per coordinate axis before the quadratic form (for a strongly
    anisotropic M this need not be the image that minimises f; it is the convention of the whole package).

    Parameters
    ----------
    M : (d, d) array_like
        Symmetric (to 1e-12 relative) positive definite matrix.
    """

    is_metric = True
    is_constant = True

    def __init__(self, M):
        M = _as_matrix(M, "M")
        d = M.shape[0]
        if M.shape != (d, d):
            raise ValueError(f"M must be square, got shape {M.shape}")
        scale = max(float(np.max(np.abs(M))), np.finfo(float).tiny)
        if np.max(np.abs(M - M.T)) > 1e-12 * scale:
            raise ValueError(f"M must be symmetric, got M={M.tolist()}")
        M = 0.5 * (M + M.T)
        try:
            self._cholesky = np.linalg.cholesky(M)  # M = L L^T
        except np.linalg.LinAlgError:
            raise ValueError(f"M must be positive definite, got M={M.tolist()} "
                             f"(eigenvalues {np.linalg.eigvalsh(M).tolist()})") from None
        self.M = M
        self.dim = d

    @property
    def cholesky(self) -> np.ndarray:
        """Lower-triangular L with M = L L^T, so f(x, y) = |L^T (x - y)|^2."""
        return self._cholesky.copy()

    @property
    def constant_tensor(self) -> np.ndarray:
        return self.M.copy()

    def tensor(self, points) -> np.ndarray:
        x = self.validate_points(points)
        return np.broadcast_to(self.M, (x.shape[0],) + self.M.shape).copy()

    def pairwise(self, x, y, domain: Domain | None = None) -> np.ndarray:
        x, y = self.validate_points(x, name="x"), self.validate_points(y, name="y")
        diff = _differences(x, y, domain)
        return np.einsum("abi,ij,abj->ab", diff, self.M, diff)

    def kernel_form(self, points: np.ndarray, domain: Domain | None = None) -> KernelForm:
        if _box(domain) is not None:  # the minimum image lives in the original coordinates: the quadratic form
            return KernelForm.squared(points, _periods(domain, self.dim), M=self.M)
        return KernelForm.squared(points @ self._cholesky)  # f = |L^T (x - y)|^2: Euclidean in z = x L

    def search_space(self, points: np.ndarray, domain: Domain | None, radius: float) -> SearchSpace:
        box = _box(domain)
        if box is None:
            return SearchSpace(points @ self._cholesky, None, float(radius), True)
        # f >= lambda_min |d|^2: a Euclidean ball of radius r / sqrt(lambda_min) holds the metric ball
        return SearchSpace(points, box, float(radius) / math.sqrt(float(np.linalg.eigvalsh(self.M)[0])), False)

    def to_config(self) -> dict:
        return {"type": "Mahalanobis", "M": self.M.tolist()}

    def __repr__(self) -> str:
        return f"Mahalanobis(M={self.M.tolist()})"


class DotProduct(PseudoMetric):
    """Vanilla self-attention score f(x, y) = -(Q x + b_Q) . (K y + b_K) (raw coordinates).

    Not a metric in general (``is_metric`` False, no tensor) and not symmetric unless Q^T K is (and the
    linear terms match, K^T b_Q = Q^T b_K). THEORY's Example 1: Q = K = I on the unit sphere gives
    f = -x.y = (|x - y|^2 - 2)/2, a metric case up to a constant that cancels in the softmax: there
    DotProduct(I, I) at eps gives the same S as Euclidean() at 2 eps (tested). A Transformer head with
    logits (W_Q x + b_Q) . (W_K y + b_K) / sqrt(d_head) is ``DotProduct(W_Q / sqrt(d_head), W_K,
    b_Q / sqrt(d_head), b_K)`` at eps = 1/2; :meth:`split` writes it as a metric plus a key potential
    (THEORY.md section 7).

    Parameters
    ----------
    Q, K : (m, d) array_like
        Query and key matrices of the same shape.
    query_bias, key_bias : (m,) array_like, optional
        b_Q and b_K (default zero).
    """

    is_metric = False

    def __init__(self, Q, K, query_bias=None, key_bias=None):
        Q, K = _as_matrix(Q, "Q"), _as_matrix(K, "K")
        if Q.shape != K.shape:
            raise ValueError(f"Q and K must have the same shape, got Q {Q.shape} and K {K.shape}")
        self.Q, self.K = Q, K
        m = Q.shape[0]
        self.query_bias = np.zeros(m) if query_bias is None else _as_vector(query_bias, "query_bias", m)
        self.key_bias = np.zeros(m) if key_bias is None else _as_vector(key_bias, "key_bias", m)
        self.dim = Q.shape[1]
        self._symmetric: bool | None = None

    @property
    def has_bias(self) -> bool:
        """True when b_Q or b_K is nonzero."""
        return bool(np.any(self.query_bias) or np.any(self.key_bias))

    @property
    def is_symmetric(self) -> bool:
        if self._symmetric is None:  # Q, K and the biases are fixed at construction: computed once
            self._symmetric = self._check_symmetric()
        return self._symmetric

    def _check_symmetric(self) -> bool:
        A = self.Q.T @ self.K
        tiny = 1e-12 * max(float(np.max(np.abs(A))), 1e-300)
        if np.max(np.abs(A - A.T)) > tiny:
            return False
        c, e = self.K.T @ self.query_bias, self.Q.T @ self.key_bias  # f(x,y) - f(y,x) = (e - c).(y - x) when A = A^T
        return bool(np.max(np.abs(c - e), initial=0.0) <= 1e-12 * max(float(np.max(np.abs(c), initial=0.0)), 1e-300))

    def queries(self, x: np.ndarray) -> np.ndarray:
        """q = x Q^T + b_Q (N, m): f(x_i, x_j) = -q_i . k_j."""
        return np.ascontiguousarray(x @ self.Q.T + self.query_bias)

    def keys(self, x: np.ndarray) -> np.ndarray:
        """k = x K^T + b_K (N, m)."""
        return np.ascontiguousarray(x @ self.K.T + self.key_bias)

    def pairwise(self, x, y, domain: Domain | None = None) -> np.ndarray:
        x, y = self.validate_points(x, name="x"), self.validate_points(y, name="y")
        return -(self.queries(x) @ self.keys(y).T)

    def kernel_form(self, points: np.ndarray, domain: Domain | None = None) -> KernelForm:
        return KernelForm.dot(self.queries(points), self.keys(points), self.is_symmetric)

    def split(self) -> "DotProductSplit":
        """The exact metric-plus-potential form of this score (THEORY.md section 7): see :class:`DotProductSplit`."""
        return DotProductSplit(self)

    def to_config(self) -> dict:
        cfg = {"type": "DotProduct", "Q": self.Q.tolist(), "K": self.K.tolist()}
        if self.has_bias:
            cfg.update(query_bias=self.query_bias.tolist(), key_bias=self.key_bias.tolist())
        return cfg

    def __repr__(self) -> str:
        bias = f", query_bias={self.query_bias.tolist()}, key_bias={self.key_bias.tolist()}" if self.has_bias else ""
        return f"DotProduct(Q={self.Q.tolist()}, K={self.K.tolist()}{bias})"


class DotProductSplit:
    r"""A dot-product score as a metric, an antisymmetric part and a key potential (THEORY.md section 7).

    With a(x, y) = -f(x, y) = (Q x + b_Q) . (K y + b_K) = x^T A y + c . y + e . x + b_Q . b_K,
    A = Q^T K = A_s + A_a (symmetric, antisymmetric), c = K^T b_Q, e = Q^T b_K, and
    x^T A_s y = (x^T A_s x + y^T A_s y - (x - y)^T A_s (x - y)) / 2:

        a(x, y) = -(x - y)^T (A_s / 2) (x - y) + x^T A_a y + u(y) + v(x),
        u(y) = y^T A_s y / 2 + c . y,   v(x) = x^T A_s x / 2 + e . x + b_Q . b_K.

    v cancels in the softmax over y. So, at any eps, ``exp(a / (2 eps))`` row-normalised is Mahalanobis
    attention with M = A_s / 2 (:meth:`metric`) at the same eps, times exp(x^T A_a y / (2 eps)), on keys
    weighted by exp(u / (2 eps)) (:meth:`key_potential`, the ``key_potential`` of
    :class:`~continuum_attention.attention.AttentionOperator`). With A_a = 0 and A_s positive definite this
    is an identity between two attention operators (tested to 1e-12): at eps = 1/2 the metric is
    M = A_s / 2, not A_s, and the density seen is p e^u (normalised), not p.

    Parameters
    ----------
    dot : DotProduct
    """

    def __init__(self, dot: DotProduct):
        if not isinstance(dot, DotProduct):
            raise TypeError(f"dot must be a DotProduct, got dot={describe(dot)}")
        self.dot = dot
        A = dot.Q.T @ dot.K
        self.A = A
        self.symmetric = 0.5 * (A + A.T)
        self.antisymmetric = 0.5 * (A - A.T)
        self.key_linear = dot.K.T @ dot.query_bias
        self.query_linear = dot.Q.T @ dot.key_bias
        self.constant = float(dot.query_bias @ dot.key_bias)
        self.dim = dot.dim

    @property
    def antisymmetric_share(self) -> float:
        """||A_a||_F / ||A||_F in [0, 1] (0: A symmetric; 1: A antisymmetric); 0 for A = 0."""
        norm = float(np.linalg.norm(self.A))
        return float(np.linalg.norm(self.antisymmetric)) / norm if norm > 0 else 0.0

    @property
    def metric_matrix(self) -> np.ndarray:
        """M = A_s / 2: the quadratic form of the metric part at eps = 1/2 (may be indefinite)."""
        return 0.5 * self.symmetric

    def symmetric_eigh(self) -> tuple[np.ndarray, np.ndarray]:
        """Nonzero spectrum of A_s from its factor: (lambda (r,), V (d, r)) with A_s = V diag(lambda) V^T.

        A_s = (Q^T K + K^T Q) / 2 = F^T J F with F = [Q; K] (2m, d) and J = [[0, I/2], [I/2, 0]]; with
        F^T = U R (thin QR), A_s = U (R J R^T) U^T, so an eigendecomposition of size 2m suffices (the other
        d - 2m eigenvalues are exactly zero). When F has rank 2m, R J R^T has the inertia of J (Sylvester):
        m positive and m negative eigenvalues, so A_s is indefinite for every head with Q, K of full rank
        m < d/2 and [Q; K] of rank 2m. Linear terms do not enter.
        """
        m = self.dot.Q.shape[0]
        F = np.vstack([self.dot.Q, self.dot.K])
        U, R = np.linalg.qr(F.T)
        J = np.zeros((2 * m, 2 * m))
        J[:m, m:] = J[m:, :m] = 0.5 * np.eye(m)
        lam, W = np.linalg.eigh(R @ J @ R.T)
        return lam, U @ W

    def metric(self) -> "Mahalanobis":
        """Mahalanobis(A_s / 2); ValueError naming the eigenvalues when A_s is not positive definite."""
        return Mahalanobis(self.metric_matrix)

    def key_potential(self, points, eps: float = 0.5) -> np.ndarray:
        """u(y) / (2 eps) at the points (N,), u(y) = y^T A_s y / 2 + c . y (eps = 1/2: u itself)."""
        y = self.dot.validate_points(points)
        eps = positive_float(eps, "eps")
        return (0.5 * np.sum((y @ self.symmetric) * y, axis=1) + y @ self.key_linear) / (2.0 * eps)

    def query_terms(self, points) -> np.ndarray:
        """v(x) = x^T A_s x / 2 + e . x + b_Q . b_K (N,): the terms in x alone, which cancel in the softmax."""
        x = self.dot.validate_points(points)
        return 0.5 * np.sum((x @ self.symmetric) * x, axis=1) + x @ self.query_linear + self.constant

    def antisymmetric_scores(self, x, y) -> np.ndarray:
        """x_i^T A_a y_j (Px, Py)."""
        x, y = self.dot.validate_points(x, name="x"), self.dot.validate_points(y, name="y")
        return x @ self.antisymmetric @ y.T

    def scores(self, x, y) -> np.ndarray:
        """a(x_i, y_j) = -f rebuilt from the parts (Px, Py): equals ``-dot.pairwise(x, y)`` to rounding."""
        x, y = self.dot.validate_points(x, name="x"), self.dot.validate_points(y, name="y")
        d = x[:, None, :] - y[None, :, :]
        quad = np.einsum("abi,ij,abj->ab", d, self.symmetric, d)
        return (-0.5 * quad + self.antisymmetric_scores(x, y) + self.key_potential(y)[None, :]
                + self.query_terms(x)[:, None])

    def __repr__(self) -> str:
        return f"DotProductSplit(dim={self.dim}, antisymmetric_share={self.antisymmetric_share:.3g})"


class ResidualFeatureMap:
    """phi(x) = x + W2 tanh(W1 x + b1) + b2 (THEORY.md section 1, metric-attention), NumPy, serialisable.

    The export target of a trained PyTorch layer. Shapes: W1 (h, d), b1 (h,), W2 (d, h), b2 (d,).
    ``jacobian(x)`` is exact: I + W2 diag(1 - tanh^2) W1.
    """

    def __init__(self, W1, b1, W2, b2):
        self.W1 = _as_matrix(W1, "W1")
        h, d = self.W1.shape
        self.W2 = _as_matrix(W2, "W2", (d, h))
        self.b1 = _as_vector(b1, "b1", h)
        self.b2 = _as_vector(b2, "b2", d)
        self.dim = d

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x + np.tanh(x @ self.W1.T + self.b1) @ self.W2.T + self.b2

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        sech2 = 1.0 - np.tanh(x @ self.W1.T + self.b1) ** 2  # (P, h)
        return np.eye(self.dim) + np.einsum("ih,ph,hj->pij", self.W2, sech2, self.W1)

    def to_config(self) -> dict:
        return {"type": "ResidualFeatureMap", "W1": self.W1.tolist(), "b1": self.b1.tolist(),
                "W2": self.W2.tolist(), "b2": self.b2.tolist()}

    def __repr__(self) -> str:
        return f"ResidualFeatureMap(d={self.dim}, hidden={self.W1.shape[0]})"


class Learned(PseudoMetric):
    """f(x, y) = |phi(x) - phi(y)|^2 for a feature map phi: (P, d) -> (P, m) (raw coordinates).

    ``is_metric`` is True: the induced tensor is the pull-back g = J^T J, J = d phi / dx (a true Riemannian
    metric where J has full column rank, e.g. for a residual map with small weights).

    Parameters
    ----------
    phi : callable
        Vectorised NumPy feature map, (P, d) -> (P, m). A :class:`ResidualFeatureMap` (or any object with
        ``to_config``) makes the metric serialisable.
    jacobian : callable, optional
        (P, d) -> (P, m, d). Default: ``phi.jacobian`` when present, else central finite differences with
        step ``1e-5 * (1 + |x_k|)`` (error O(step^2) ~ 1e-10 relative).
    """

    is_metric = True

    def __init__(self, phi: FeatureMap, jacobian: Callable[[np.ndarray], np.ndarray] | None = None):
        if not callable(phi):
            raise TypeError(f"phi must be callable (P, d) -> (P, m), got phi={describe(phi)}")
        if jacobian is not None and not callable(jacobian):
            raise TypeError(f"jacobian must be callable (P, d) -> (P, m, d) or None, got jacobian={describe(jacobian)}")
        self.phi = phi
        self._jacobian = jacobian if jacobian is not None else getattr(phi, "jacobian", None)
        self.dim = getattr(phi, "dim", None)

    def features(self, points) -> np.ndarray:
        """phi(points) as a C-contiguous (P, m) float64 array; ValueError on a bad shape or NaN."""
        x = self.validate_points(points)
        z = np.asarray(self.phi(x), dtype=np.float64)
        if z.ndim == 1:
            z = z[:, None]
        if z.ndim != 2 or z.shape[0] != x.shape[0]:
            raise ValueError(f"phi must map (P, d) to (P, m), got output shape {z.shape} for input {x.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError("phi returned NaN or infinite features")
        return np.ascontiguousarray(z)

    def jacobian(self, points) -> np.ndarray:
        """d phi / dx at the points, (P, m, d)."""
        x = self.validate_points(points)
        if self._jacobian is not None:
            return np.asarray(self._jacobian(x), dtype=np.float64)
        cols = []
        for k in range(x.shape[1]):
            h = 1e-5 * (1.0 + np.abs(x[:, k]))
            step = np.zeros_like(x)
            step[:, k] = h
            cols.append((self.features(x + step) - self.features(x - step)) / (2.0 * h[:, None]))
        return np.stack(cols, axis=-1)

    def tensor(self, points) -> np.ndarray:
        J = self.jacobian(points)
        return np.einsum("pmi,pmj->pij", J, J)

    def pairwise(self, x, y, domain: Domain | None = None) -> np.ndarray:
        zx, zy = self.features(x), self.features(y)
        return np.sum((zx[:, None, :] - zy[None, :, :]) ** 2, axis=-1)

    def kernel_form(self, points: np.ndarray, domain: Domain | None = None) -> KernelForm:
        return KernelForm.squared(self.features(points))

    def search_space(self, points: np.ndarray, domain: Domain | None, radius: float) -> SearchSpace:
        return SearchSpace(self.features(points), None, float(radius), True)

    def to_config(self) -> dict:
        if not hasattr(self.phi, "to_config"):
            raise ValueError(f"Learned(phi={self.phi!r}) cannot be serialised: phi has no to_config(); "
                             "use a ResidualFeatureMap")
        return {"type": "Learned", "phi": self.phi.to_config()}

    def __repr__(self) -> str:
        return f"Learned(phi={self.phi!r})"


class ScaledMetric(PseudoMetric):
    """A pseudo-metric times a constant c > 0, plus an optional isotropic floor delta >= 0.

    f(x, y) -> c f(x, y) + delta |x - y|^2 (minimum image on a Torus), so the tensor becomes c g + delta I.
    For a Learned metric this is the pseudo-metric of the feature map x -> (sqrt(c) phi(x), sqrt(delta) x),
    whose pull-back is exactly c g + delta I; the floor keeps g positive definite where phi folds
    (det J_phi = 0, a degenerate pull-back). A constant factor is a change of time scale only: c f at eps is
    f at eps / c. A floor needs a squared-distance base (it is not defined on a dot-product score).

    Parameters
    ----------
    metric : PseudoMetric
    scale : float > 0
    floor : float >= 0
    """

    def __init__(self, metric: PseudoMetric, scale: float, floor: float = 0.0):
        if not isinstance(metric, PseudoMetric):
            raise TypeError(f"metric must be a PseudoMetric, got metric={metric!r}")
        scale, floor = positive_float(scale, "scale"), nonnegative_float(floor, "floor")
        if floor > 0 and not metric.is_metric:
            raise ValueError(f"floor={floor!r} needs a metric base; {metric!r} is not one")
        self.metric, self.scale, self.floor = metric, scale, floor
        self.dim = metric.dim
        self.is_metric = metric.is_metric
        self.is_constant = metric.is_constant

    @property
    def is_symmetric(self) -> bool:
        return self.metric.is_symmetric

    @property
    def constant_tensor(self) -> np.ndarray | None:
        g = self.metric.constant_tensor
        return None if g is None else self.scale * g + self.floor * np.eye(g.shape[0])

    def validate_points(self, points, *, name: str = "points") -> np.ndarray:
        return self.metric.validate_points(points, name=name)

    def tensor(self, points) -> np.ndarray:
        g = self.scale * self.metric.tensor(points)
        return g + self.floor * np.eye(g.shape[-1]) if self.floor else g

    def pairwise(self, x, y, domain: Domain | None = None) -> np.ndarray:
        f = self.scale * self.metric.pairwise(x, y, domain)
        if self.floor:
            x, y = self.validate_points(x, name="x"), self.validate_points(y, name="y")
            f = f + self.floor * np.sum(_differences(x, y, domain) ** 2, axis=-1)
        return f

    def kernel_form(self, points: np.ndarray, domain: Domain | None = None) -> KernelForm:
        base = self.metric.kernel_form(points, domain)
        if base.family == DOT:  # c f = -(c q) . k
            return KernelForm.dot(self.scale * base.rows, base.cols, base.symmetric)
        m = base.rows.shape[1]
        M = np.eye(m) if base.M is None else base.M
        if not self.floor:
            return KernelForm.squared(base.rows, base.period, self.scale * M)
        # coordinates (z, x) with the block form diag(c M, delta I): the images of both blocks stay exact
        d = points.shape[1]
        quad = np.zeros((m + d, m + d))
        quad[:m, :m], quad[m:, m:] = self.scale * M, self.floor * np.eye(d)
        return KernelForm.squared(np.hstack([base.rows, points]),
                                  np.concatenate([base.period, _periods(domain, d)]), quad)

    def search_space(self, points: np.ndarray, domain: Domain | None, radius: float) -> SearchSpace:
        # c f + delta |x - y|^2 <= r^2 implies f <= r^2 / c: the base ball of radius r / sqrt(c) holds it
        base = self.metric.search_space(points, domain, float(radius) / math.sqrt(self.scale))
        return SearchSpace(base.coords, base.box, base.radius, False)

    def to_config(self) -> dict:
        return {"type": "ScaledMetric", "metric": self.metric.to_config(), "scale": self.scale, "floor": self.floor}

    def __repr__(self) -> str:
        return f"ScaledMetric({self.metric!r}, scale={self.scale!r}, floor={self.floor!r})"


def as_metric(obj) -> PseudoMetric:
    """The one door in: None -> :class:`Euclidean`, a (d, d) SPD matrix (or a positive number in 1-D) ->
    :class:`Mahalanobis`, a :class:`PseudoMetric` -> itself.

    Raises TypeError for any other type (naming it) and ValueError for a matrix that is not SPD.
    """
    if obj is None:
        return Euclidean()
    if isinstance(obj, PseudoMetric):
        return obj
    if isinstance(obj, (bool, str, bytes)) or callable(obj):
        raise TypeError(f"metric must be None, a symmetric positive definite matrix or a PseudoMetric, "
                        f"got metric={obj!r} of type {type(obj).__name__}")
    try:
        a = np.asarray(obj)
    except (TypeError, ValueError):
        a = np.asarray(None)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"metric must be None, a symmetric positive definite matrix or a PseudoMetric, "
                        f"got metric={obj!r} of type {type(obj).__name__}")
    try:
        return Mahalanobis(a)
    except ValueError as exc:
        raise ValueError(f"metric must be a symmetric positive definite matrix: {exc}") from None


def _feature_map_from_config(cfg: dict) -> ResidualFeatureMap:
    cfg = dict(cfg)
    if cfg.pop("type", None) != "ResidualFeatureMap":
        raise ValueError(f"phi config must have type='ResidualFeatureMap', got {cfg!r}")
    return ResidualFeatureMap(**cfg)


def metric_from_config(cfg: dict) -> PseudoMetric:
    """Rebuild a pseudo-metric from :meth:`PseudoMetric.to_config` output (or a TOML table of that shape)."""
    cfg = table(cfg, "metric")
    kind = cfg.pop("type", None)
    builders = {
        "Euclidean": lambda c: Euclidean(**c),
        "Mahalanobis": lambda c: Mahalanobis(**c),
        "DotProduct": lambda c: DotProduct(**c),
        "Learned": lambda c: Learned(_feature_map_from_config(c["phi"])),
        "ScaledMetric": lambda c: ScaledMetric(metric_from_config(c["metric"]), c["scale"], c.get("floor", 0.0)),
    }
    if kind not in builders:
        raise ValueError(f"metric type must be one of {sorted(builders)}, got type={kind!r}")
    try:
        return builders[kind](cfg)
    except (TypeError, KeyError) as exc:
        raise ValueError(f"bad parameters for {kind}: {cfg!r} ({exc!r})") from None


def constant_tensor(metric: PseudoMetric, dim: int) -> np.ndarray | None:
    """(dim, dim) tensor of a constant metric (Euclidean without a dim included), else None."""
    if not metric.is_constant:
        return None
    return np.asarray(metric.tensor(np.zeros((1, dim))), dtype=np.float64)[0]
