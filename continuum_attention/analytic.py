"""Closed-form reference solutions for the attention-limit equation (THEORY.md sections 3 and 5).

Everything here depends on NumPy and SciPy only (not on the rest of the package), so that the PDE
solver and the particle code can be checked against it without circularity.

Conventions
-----------
* Time is the PDE time of THEORY.md section 1: one attention layer with scale ``eps`` is an Euler
  step of length ``eps / 2``, so ``K`` layers reach ``t = K eps / 2``.
* Features solve ``dH/dt = At H``. For uniform ``p`` (torus, interval, box) ``At`` is the Laplacian
  (``Delta_g = tr(M^-1 Hess)`` for a constant Mahalanobis metric ``M``), so the Green's function is the
  heat kernel of ``dK/dt = Delta K``: a Gaussian of variance ``2 t`` per axis.
* Point arguments. Where the geometry is a *scalar* (``lengths=1.0``, ``lower=0.0``) or ``dim=1``, the
  problem is one-dimensional and point arrays hold positions: any shape, broadcast with NumPy rules
  (``x[:, None]`` against ``y[None, :]`` gives a matrix). Where the geometry is a *sequence* of length
  ``d`` (``lengths=[1.0, 2.0]``), the last axis of a point array holds the ``d`` coordinates: shapes
  ``(d,)`` or ``(..., d)``, leading axes broadcast.
* ``t`` may be an array; it broadcasts against the leading (point) shape of the result. Kernels need
  ``t > 0``; solutions accept ``t >= 0`` (``t = 0`` returns the initial data).
* Invalid input (NaN or infinite values, ``t`` out of range, non-positive lengths, variances or
  ``eps``, ``lower >= upper``, wrong shapes) raises ``ValueError`` naming the parameter.

Accuracy
--------
Periodic and Neumann kernels are sums of positive terms when evaluated by images and are
well-conditioned by Fourier/cosine series once ``tau = 4 pi^2 t / L^2`` (period ``L``) exceeds about 2.
The automatic choice uses images for ``tau <= 2`` and the series beyond, with enough terms that the
neglected ones are below ``exp(-40)`` of the leading one: about 1e-14 relative error or better. The
Dirichlet kernel vanishes at the walls, so near them only an absolute accuracy (relative to the
kernel's maximum) of about 1e-14 is available.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

__all__ = [
    # heat kernels
    "free_heat_kernel",
    "wrapped_gaussian",
    "periodic_heat_kernel_fourier",
    "periodic_heat_kernel",
    "neumann_heat_kernel",
    "dirichlet_heat_kernel",
    # uniform density: Fourier / cosine modes
    "fourier_decay_rate",
    "fourier_mode_solution",
    "heat_solution_fourier",
    "neumann_cosine_solution",
    # Gaussian density: Ornstein-Uhlenbeck
    "ou_eigenvalue",
    "hermite_eigenfunction",
    "hermite_coefficients",
    "ou_solution_from_hermite",
    "ou_linear_solution",
    "ou_transition_kernel",
    # fixed eps, N -> infinity
    "gaussian_kernel_law",
    "gaussian_kernel_moments",
    "gaussian_kernel_operator",
    "gaussian_features_polynomial",
    "gaussian_features_linear",
    "gaussian_kernel_eigenvalue",
    "gaussian_kernel_eigenfunction",
    "gaussian_tokens_map",
    "gaussian_tokens_evolve",
    # walkers
    "walkers_stationary",
]

#: neglected terms are below exp(-_TAIL_EXPONENT) of the leading one (exp(-40) ~ 4e-18)
_TAIL_EXPONENT = 40.0
#: tau = 4 pi^2 t / period^2 above which the (cosine) Fourier series is used instead of images
_SERIES_THRESHOLD = 2.0
#: same for the Dirichlet kernel, whose image form cancels (the sine series is better sooner)
_SERIES_THRESHOLD_DIRICHLET = 1.0


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------
def _finite_array(value, name: str) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {value!r}") from exc
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _time(t, name: str = "t", *, allow_zero: bool = False) -> np.ndarray:
    a = _finite_array(t, name)
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if allow_zero:
        if np.any(a < 0):
            raise ValueError(f"{name} must be >= 0 (backward heat flow is ill-posed), got min {a.min()!r}")
    elif np.any(a <= 0):
        raise ValueError(f"{name} must be > 0, got min {a.min()!r}")
    return a


def _positive_scalar(value, name: str) -> float:
    a = _finite_array(value, name)
    if a.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {a.shape}")
    if a <= 0:
        raise ValueError(f"{name} must be > 0, got {float(a)!r}")
    return float(a)


def _layers(n_layers, name: str = "n_layers") -> int:
    if isinstance(n_layers, (bool, np.bool_)) or not isinstance(n_layers, (int, np.integer)):
        raise ValueError(f"{name} must be a non-negative integer, got {n_layers!r}")
    if n_layers < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {n_layers!r}")
    return int(n_layers)


def _orders(n, name: str = "n") -> np.ndarray:
    a = np.asarray(n)
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a))):
        raise ValueError(f"{name} must hold non-negative integers, got {n!r}")
    a = a.astype(np.int64)
    if np.any(a < 0):
        raise ValueError(f"{name} must hold non-negative integers, got {n!r}")
    return a


def _geometry_lengths(lengths, name: str = "lengths") -> tuple[np.ndarray, bool]:
    """Return (lengths as (d,), scalar?)."""
    a = _finite_array(lengths, name)
    if a.ndim > 1 or a.size == 0:
        raise ValueError(f"{name} must be a positive number or a 1-D sequence, got shape {a.shape}")
    if np.any(a <= 0):
        raise ValueError(f"{name} must be > 0, got {lengths!r}")
    return np.atleast_1d(a), a.ndim == 0


def _geometry_box(lower, upper) -> tuple[np.ndarray, np.ndarray, bool]:
    lo = _finite_array(lower, "lower")
    up = _finite_array(upper, "upper")
    if lo.ndim > 1 or lo.size == 0:
        raise ValueError(f"lower must be a number or a 1-D sequence, got shape {lo.shape}")
    if up.ndim > 1 or up.size == 0:
        raise ValueError(f"upper must be a number or a 1-D sequence, got shape {up.shape}")
    if lo.ndim != up.ndim or lo.shape != up.shape:
        raise ValueError(f"lower and upper must have the same shape, got {lo.shape} and {up.shape}")
    if np.any(up <= lo):
        raise ValueError(f"upper must exceed lower on every axis, got lower={lower!r}, upper={upper!r}")
    return np.atleast_1d(lo), np.atleast_1d(up), lo.ndim == 0


def _points(x, name: str, d: int, positions: bool) -> np.ndarray:
    """Validated points with the coordinate axis last: shape (..., d)."""
    a = _finite_array(x, name)
    if positions:
        return a[..., None]
    if a.ndim == 0 or a.shape[-1] != d:
        raise ValueError(f"{name} must have shape (d,) or (..., d) with d = {d}, got shape {a.shape}")
    return a


def _pair(x, y, d: int, positions: bool) -> tuple[np.ndarray, np.ndarray]:
    xa = _points(x, "x", d, positions)
    ya = _points(y, "y", d, positions)
    try:
        xa, ya = np.broadcast_arrays(xa, ya)
    except ValueError as exc:
        raise ValueError(f"x and y do not broadcast: shapes {np.shape(x)} and {np.shape(y)}") from exc
    return xa, ya


def _with_time(lead_shape: tuple, t: np.ndarray) -> tuple[tuple, np.ndarray]:
    try:
        shape = np.broadcast_shapes(lead_shape, t.shape)
    except ValueError as exc:
        raise ValueError(f"t of shape {t.shape} does not broadcast with the points' shape {lead_shape}") from exc
    return shape, np.broadcast_to(t, shape)


def _metric_inverse(d: int, metric, metric_inverse) -> np.ndarray | None:
    if metric is not None and metric_inverse is not None:
        raise ValueError("give at most one of metric and metric_inverse")
    if metric is None and metric_inverse is None:
        return None
    name = "metric" if metric is not None else "metric_inverse"
    m = _finite_array(metric if metric is not None else metric_inverse, name)
    m = np.atleast_2d(m)
    if m.shape != (d, d):
        raise ValueError(f"{name} must have shape ({d}, {d}), got {m.shape}")
    if not np.allclose(m, m.T, rtol=1e-12, atol=0.0):
        raise ValueError(f"{name} must be symmetric")
    try:
        np.linalg.cholesky(m)
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"{name} must be positive definite") from exc
    return np.linalg.inv(m) if metric is not None else m


# ----------------------------------------------------------------------------------------------
# 1-D building blocks
# ----------------------------------------------------------------------------------------------
def _images_needed(t_max: float, period: float) -> int:
    """Smallest N with (N^2 + N) period^2 / (4 t) >= _TAIL_EXPONENT (all omitted images negligible)."""
    c = _TAIL_EXPONENT * 4.0 * t_max / period**2
    return max(1, int(math.ceil((-1.0 + math.sqrt(1.0 + 4.0 * c)) / 2.0)))


def _series_terms(t_min: float, period: float) -> int:
    """Smallest K with 4 pi^2 (K+1)^2 t / period^2 >= _TAIL_EXPONENT."""
    return max(1, int(math.ceil(math.sqrt(_TAIL_EXPONENT * period**2 / (4.0 * math.pi**2 * t_min)))))


def _wrapped_1d(u: np.ndarray, t: np.ndarray, period: float, n_images: int | None = None) -> np.ndarray:
    """sum_n G(u + n period, t), G the 1-D Gaussian of variance 2t."""
    u, t = np.broadcast_arrays(u, t)
    out = np.zeros(u.shape)
    if u.size == 0:
        return out
    u = u - period * np.round(u / period)  # in [-period/2, period/2]; symmetric in u
    n = _images_needed(float(t.max()), period) if n_images is None else int(n_images)
    inv4t = 1.0 / (4.0 * t)
    for k in range(n, 0, -1):  # small terms first
        out += np.exp(-((u + k * period) ** 2) * inv4t) + np.exp(-((u - k * period) ** 2) * inv4t)
    out += np.exp(-(u**2) * inv4t)
    return out / np.sqrt(4.0 * np.pi * t)


def _periodic_series_1d(u: np.ndarray, t: np.ndarray, period: float, n_terms: int | None = None) -> np.ndarray:
    """(1/period) [1 + 2 sum_k exp(-4 pi^2 k^2 t / period^2) cos(2 pi k u / period)]."""
    u, t = np.broadcast_arrays(u, t)
    out = np.zeros(u.shape)
    if u.size == 0:
        return out
    K = _series_terms(float(t.min()), period) if n_terms is None else int(n_terms)
    w = 2.0 * np.pi / period
    for k in range(K, 0, -1):
        out += np.exp(-((w * k) ** 2) * t) * np.cos(w * k * u)
    return (1.0 + 2.0 * out) / period


def _tau(t: np.ndarray, period: float) -> np.ndarray:
    return 4.0 * np.pi**2 * t / period**2


def _periodic_auto_1d(u: np.ndarray, t: np.ndarray, period: float) -> np.ndarray:
    u, t = np.broadcast_arrays(u, t)
    series = _tau(t, period) > _SERIES_THRESHOLD
    out = np.empty(u.shape)
    out[~series] = _wrapped_1d(u[~series], t[~series], period)
    out[series] = _periodic_series_1d(u[series], t[series], period)
    return out


def _interval_series_1d(x, y, t, a: float, ell: float, kind: str, n_terms: int | None = None) -> np.ndarray:
    """Neumann: (1/l)[1 + 2 sum e^{-(pi m/l)^2 t} cos cos]; Dirichlet: (2/l) sum e^{..} sin sin."""
    x, y, t = np.broadcast_arrays(x, y, t)
    out = np.zeros(x.shape)
    if x.size == 0:
        return out
    K = _series_terms(float(t.min()), 2.0 * ell) if n_terms is None else int(n_terms)
    w = np.pi / ell
    tx, ty = w * (x - a), w * (y - a)
    trig = np.cos if kind == "neumann" else np.sin
    for m in range(K, 0, -1):
        out += np.exp(-((w * m) ** 2) * t) * trig(m * tx) * trig(m * ty)
    if kind == "neumann":
        return (1.0 + 2.0 * out) / ell
    return 2.0 * out / ell


def _interval_images_1d(x, y, t, a: float, ell: float, kind: str, n_images: int | None = None) -> np.ndarray:
    """Images: W_{2l}(x - y) +/- W_{2l}(x + y - 2a), W the wrapped Gaussian of period 2l."""
    x, y, t = np.broadcast_arrays(x, y, t)
    direct = _wrapped_1d(x - y, t, 2.0 * ell, n_images)
    mirror = _wrapped_1d(x + y - 2.0 * a, t, 2.0 * ell, n_images)
    return direct + mirror if kind == "neumann" else direct - mirror


def _interval_1d(x, y, t, a: float, ell: float, kind: str, method: str) -> np.ndarray:
    x, y, t = np.broadcast_arrays(x, y, t)
    if method == "images":
        return _interval_images_1d(x, y, t, a, ell, kind)
    if method == "series":
        return _interval_series_1d(x, y, t, a, ell, kind)
    threshold = _SERIES_THRESHOLD if kind == "neumann" else _SERIES_THRESHOLD_DIRICHLET
    series = _tau(t, 2.0 * ell) > threshold
    out = np.empty(x.shape)
    out[~series] = _interval_images_1d(x[~series], y[~series], t[~series], a, ell, kind)
    out[series] = _interval_series_1d(x[series], y[series], t[series], a, ell, kind)
    return out


def _method(method: str) -> str:
    if method not in ("auto", "images", "series"):
        raise ValueError(f"method must be 'auto', 'images' or 'series', got {method!r}")
    return method


# ----------------------------------------------------------------------------------------------
# heat kernels
# ----------------------------------------------------------------------------------------------
def free_heat_kernel(x: ArrayLike, y: ArrayLike, t: ArrayLike, dim: int | None = None) -> np.ndarray:
    r"""Heat kernel of ``dH/dt = Delta H`` on R^d.

    .. math:: K(x, y, t) = (4 \pi t)^{-d/2} \exp(-|x - y|^2 / (4 t)),

    a Gaussian of variance ``2 t`` per axis (time scale: diffusion length ``sqrt(2 t)``; ``K`` layers of
    attention with scale ``eps`` reach ``t = K eps / 2``). ``H(x, t) = int K(x, y, t) H0(y) dy``.

    Parameters
    ----------
    x, y : array_like
        Points. With ``dim=None`` the last axis holds the coordinates (shapes ``(d,)`` or ``(..., d)``;
        two scalars are 1-D points). With ``dim=1`` the arrays hold positions of any shape (no
        coordinate axis). With ``dim=d > 1`` the last axis must have length ``d``.
    t : array_like
        Time(s) > 0, broadcast against the points' leading shape.
    dim : int, optional
        Space dimension. A 1-D array mixed with a scalar is ambiguous without it.

    Returns
    -------
    ndarray
        Kernel values, shape = broadcast of the points' leading shapes and ``t``.
    """
    t = _time(t)
    if dim is not None:
        if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        d = int(dim)
        positions = d == 1
    else:
        xa, ya = np.asarray(x), np.asarray(y)
        if xa.ndim == 0 and ya.ndim == 0:
            d, positions = 1, True
        elif xa.ndim == 0 or ya.ndim == 0:
            raise ValueError(
                "x and y: a scalar mixed with an array is ambiguous; pass dim=1 for arrays of 1-D positions "
                "or give both with a coordinate axis"
            )
        else:
            d, positions = xa.shape[-1], False
            if ya.shape[-1] != d:
                raise ValueError(f"x and y have different dimensions: {xa.shape[-1]} and {ya.shape[-1]}")
    xb, yb = _pair(x, y, d, positions)
    r2 = np.sum((xb - yb) ** 2, axis=-1)
    shape, tb = _with_time(r2.shape, t)
    r2 = np.broadcast_to(r2, shape)
    return (4.0 * np.pi * tb) ** (-d / 2.0) * np.exp(-r2 / (4.0 * tb))


def _periodic_product(kernel_1d, x, y, t, lengths) -> np.ndarray:
    """prod_i kernel_1d(x_i - y_i, t, L_i): the torus kernel is a product of circle kernels."""
    t = _time(t)
    L, scalar = _geometry_lengths(lengths)
    xb, yb = _pair(x, y, L.size, scalar)
    shape, tb = _with_time(xb.shape[:-1], t)
    out = np.ones(shape)
    for i, Li in enumerate(L):
        out *= kernel_1d(np.broadcast_to(xb[..., i] - yb[..., i], shape), tb, float(Li))
    return out


def wrapped_gaussian(
    x: ArrayLike, y: ArrayLike, t: ArrayLike, lengths: float | Sequence[float], n_images: int | None = None
) -> np.ndarray:
    r"""Periodic heat kernel on the torus ``[0, L_1) x ... x [0, L_d)`` by images (wrapped Gaussian).

    .. math:: K(x, y, t) = \prod_i \sum_{n \in Z} (4 \pi t)^{-1/2} \exp(-(x_i - y_i + n L_i)^2 / (4 t)).

    Positive terms only, so well-conditioned for every ``t``; the number of images grows like
    ``sqrt(t) / L`` (use it for ``t`` up to about ``L^2 / 20``; :func:`periodic_heat_kernel` chooses).

    Parameters
    ----------
    x, y : array_like
        Points (see the module docstring: scalar ``lengths`` -> arrays of positions; sequence -> last
        axis holds coordinates). Need not lie in the fundamental cell.
    t : array_like
        Time(s) > 0.
    lengths : float or sequence of float
        Periods ``L_i > 0``.
    n_images : int, optional
        Images on each side of the nearest one. Default: enough that omitted terms are below
        ``exp(-40)`` of the largest term.
    """
    if n_images is not None:
        n_images = _layers(n_images, "n_images")
    return _periodic_product(lambda dx, tb, Li: _wrapped_1d(dx, tb, Li, n_images), x, y, t, lengths)


def periodic_heat_kernel_fourier(
    x: ArrayLike, y: ArrayLike, t: ArrayLike, lengths: float | Sequence[float], n_terms: int | None = None
) -> np.ndarray:
    r"""Periodic heat kernel on the torus by its Fourier series.

    .. math:: K(x, y, t) = \prod_i \frac{1}{L_i}\Big[1 + 2 \sum_{k \ge 1}
              e^{-4 \pi^2 k^2 t / L_i^2} \cos(2 \pi k (x_i - y_i) / L_i)\Big].

    Mode ``k`` decays on the time scale ``L^2 / (4 pi^2 k^2)``. Well-conditioned for
    ``4 pi^2 t / L^2`` above about 1; for small ``t`` it needs ``~ L / sqrt(t)`` terms and loses relative
    accuracy where the kernel is tiny.

    Parameters
    ----------
    x, y, t, lengths
        As in :func:`wrapped_gaussian`.
    n_terms : int, optional
        Number of modes ``k >= 1`` per axis. Default: enough that the first omitted mode's factor is
        below ``exp(-40)``.
    """
    if n_terms is not None:
        n_terms = _layers(n_terms, "n_terms")
    return _periodic_product(lambda dx, tb, Li: _periodic_series_1d(dx, tb, Li, n_terms), x, y, t, lengths)


def periodic_heat_kernel(
    x: ArrayLike, y: ArrayLike, t: ArrayLike, lengths: float | Sequence[float], method: str = "auto"
) -> np.ndarray:
    r"""Heat kernel of ``dH/dt = Delta H`` on the torus ``[0, L_1) x ... x [0, L_d)``.

    Product over axes of the 1-D periodic kernel (a wrapped Gaussian of variance ``2 t``). For uniform
    ``p`` on a torus ``At`` is the Laplacian, so this is the features' Green's function and a point
    source's spread (THEORY.md section 5).

    ``method="auto"`` uses, per axis and per entry, images (:func:`wrapped_gaussian`) when
    ``tau = 4 pi^2 t / L_i^2 <= 2`` and the Fourier series (:func:`periodic_heat_kernel_fourier`)
    beyond; both are then truncated at ``exp(-40)`` and well-conditioned, giving about 1e-14 relative
    accuracy. ``method="images"`` or ``"series"`` forces one.

    Parameters
    ----------
    x, y, t, lengths
        As in :func:`wrapped_gaussian`.
    method : {"auto", "images", "series"}
    """
    _method(method)
    if method == "images":
        return wrapped_gaussian(x, y, t, lengths)
    if method == "series":
        return periodic_heat_kernel_fourier(x, y, t, lengths)
    return _periodic_product(_periodic_auto_1d, x, y, t, lengths)


def _box_kernel(x, y, t, lower, upper, kind: str, method: str) -> np.ndarray:
    _method(method)
    t = _time(t)
    lo, up, scalar = _geometry_box(lower, upper)
    xb, yb = _pair(x, y, lo.size, scalar)
    shape, tb = _with_time(xb.shape[:-1], t)
    out = np.ones(shape)
    for i in range(lo.size):
        xi = np.broadcast_to(xb[..., i], shape)
        yi = np.broadcast_to(yb[..., i], shape)
        out *= _interval_1d(xi, yi, tb, float(lo[i]), float(up[i] - lo[i]), kind, method)
    return out


def neumann_heat_kernel(
    x: ArrayLike,
    y: ArrayLike,
    t: ArrayLike,
    lower: float | Sequence[float],
    upper: float | Sequence[float],
    method: str = "auto",
) -> np.ndarray:
    r"""Heat kernel with a no-flux (Neumann) boundary on ``[a, b]`` (or a box, as a product over axes).

    With ``l = b - a``, by images (even reflections, period ``2 l``)

    .. math:: K = \sum_{n} [G(x - y + 2 n l, t) + G(x + y - 2 a + 2 n l, t)],\quad
              G(u, t) = (4 \pi t)^{-1/2} e^{-u^2/(4t)},

    or by the cosine series

    .. math:: K = \frac{1}{l}\Big[1 + 2 \sum_{m \ge 1} e^{-(\pi m / l)^2 t}
              \cos\frac{\pi m (x - a)}{l} \cos\frac{\pi m (y - a)}{l}\Big].

    Mode ``m`` decays on the time scale ``(l / (pi m))^2``; ``int_a^b K dx = 1`` and ``dK/dx = 0`` at
    the ends. ``method="auto"`` uses images for ``pi^2 t / l^2 <= 2`` and the series beyond (about
    1e-14 relative accuracy: both are sums of well-conditioned terms there).

    Parameters
    ----------
    x, y : array_like
        Points (scalar ``lower``/``upper`` -> arrays of positions; sequences of length ``d`` -> the last
        axis holds coordinates). Points outside the box get the even, ``2 l``-periodic extension.
    t : array_like
        Time(s) > 0.
    lower, upper : float or sequence of float
        The box; ``upper > lower`` on every axis.
    method : {"auto", "images", "series"}
    """
    return _box_kernel(x, y, t, lower, upper, "neumann", method)


def dirichlet_heat_kernel(
    x: ArrayLike,
    y: ArrayLike,
    t: ArrayLike,
    lower: float | Sequence[float],
    upper: float | Sequence[float],
    method: str = "auto",
) -> np.ndarray:
    r"""Heat kernel with an absorbing (Dirichlet, ``K = 0``) boundary on ``[a, b]`` (or a box).

    With ``l = b - a``, by images (odd reflections)

    .. math:: K = \sum_{n} [G(x - y + 2 n l, t) - G(x + y - 2 a + 2 n l, t)],

    or by the sine series

    .. math:: K = \frac{2}{l} \sum_{m \ge 1} e^{-(\pi m / l)^2 t}
              \sin\frac{\pi m (x - a)}{l} \sin\frac{\pi m (y - a)}{l}.

    The slowest mode decays on the time scale ``(l / pi)^2``. ``method="auto"`` uses images for
    ``pi^2 t / l^2 <= 1`` and the series beyond. The kernel vanishes at the walls, so near them the
    accuracy is absolute (about 1e-14 of the kernel's maximum), not relative. (The attention limit
    itself gives a Neumann condition, THEORY.md section 3; this kernel is for solver checks.)

    Parameters
    ----------
    x, y, t, lower, upper, method
        As in :func:`neumann_heat_kernel` (points outside get the odd periodic extension).
    """
    return _box_kernel(x, y, t, lower, upper, "dirichlet", method)


# ----------------------------------------------------------------------------------------------
# uniform density: Fourier and cosine modes
# ----------------------------------------------------------------------------------------------
def _wavevectors(wavevectors, d: int, scalar: bool, name: str = "wavevectors", single: bool = False) -> np.ndarray:
    k = _finite_array(wavevectors, name)
    if single:
        if scalar and k.ndim == 0:
            k = k.reshape(1)
        if k.shape != (d,):
            raise ValueError(f"{name} must have shape ({d},), got {k.shape}")
        return k
    if scalar and k.ndim <= 1:
        k = k.reshape(-1, 1)
    if k.ndim == 1 and k.size == d:
        k = k.reshape(1, d)
    if k.ndim != 2 or k.shape[1] != d:
        raise ValueError(f"{name} must have shape (K, {d}), got {k.shape}")
    return k


def fourier_decay_rate(
    wavevector: ArrayLike,
    lengths: float | Sequence[float],
    metric: ArrayLike | None = None,
    metric_inverse: ArrayLike | None = None,
) -> np.ndarray:
    r"""Decay rate of the Fourier mode ``exp(2 pi i k.(x/L))`` under ``dH/dt = Delta_g H`` (uniform ``p``).

    .. math:: \lambda_k = 4 \pi^2 q^T M^{-1} q, \qquad q_i = k_i / L_i,

    (``M = I`` gives ``4 pi^2 |k / L|^2``); the mode's time scale is ``1 / lambda_k``.

    Parameters
    ----------
    wavevector : array_like
        Integer (or real) wavevector(s), shape ``(d,)`` or ``(K, d)`` (scalar/``(K,)`` if ``lengths`` is
        a scalar).
    lengths : float or sequence of float
        Torus periods.
    metric, metric_inverse : array_like, optional
        Constant Mahalanobis metric ``M`` (``f = (x-y)^T M (x-y)``), or directly ``M^-1``; at most one.

    Returns
    -------
    ndarray
        Rates >= 0, shape ``()`` for one wavevector or ``(K,)``.
    """
    L, scalar = _geometry_lengths(lengths)
    k = _finite_array(wavevector, "wavevector")
    single = k.ndim == 0 or (k.ndim == 1 and not scalar)
    kk = _wavevectors(k, L.size, scalar, "wavevector")
    Minv = _metric_inverse(L.size, metric, metric_inverse)
    q = kk / L
    if Minv is None:
        rate = 4.0 * np.pi**2 * np.sum(q * q, axis=1)
    else:
        rate = 4.0 * np.pi**2 * np.einsum("ki,ij,kj->k", q, Minv, q)
    return rate[0] if single else rate


def fourier_mode_solution(
    points: ArrayLike,
    wavevector: ArrayLike,
    lengths: float | Sequence[float],
    t: ArrayLike,
    kind: str = "cos",
    metric: ArrayLike | None = None,
    metric_inverse: ArrayLike | None = None,
) -> np.ndarray:
    r"""Exact solution on the torus (uniform ``p``, ``At = Delta_g``) for one Fourier mode.

    .. math:: H(x, t) = e^{-\lambda_k t} \cos(2 \pi k.(x / L)) \quad (\text{or } \sin),\qquad
              \lambda_k = 4 \pi^2 (k/L)^T M^{-1} (k/L),

    time scale ``1 / lambda_k`` (``L^2 / (4 pi^2 |k|^2)`` for ``M = I``). ``k`` should be an integer
    vector for the mode to be periodic.

    Parameters
    ----------
    points : array_like
        Positions (scalar ``lengths``) or ``(..., d)`` points.
    wavevector : array_like
        Shape ``(d,)`` (a scalar in 1-D).
    lengths : float or sequence of float
        Torus periods.
    t : array_like
        Time(s) >= 0, broadcast against the points' leading shape.
    kind : {"cos", "sin"}
    metric, metric_inverse : array_like, optional
        Constant Mahalanobis metric ``M`` or its inverse (at most one).
    """
    t = _time(t, allow_zero=True)
    if kind not in ("cos", "sin"):
        raise ValueError(f"kind must be 'cos' or 'sin', got {kind!r}")
    L, scalar = _geometry_lengths(lengths)
    k = _wavevectors(wavevector, L.size, scalar, "wavevector", single=True)
    rate = fourier_decay_rate(k, L, metric=metric, metric_inverse=metric_inverse)
    x = _points(points, "points", L.size, scalar)
    phase = 2.0 * np.pi * np.sum(x * (k / L), axis=-1)
    shape, tb = _with_time(phase.shape, t)
    trig = np.cos if kind == "cos" else np.sin
    return np.exp(-rate * tb) * np.broadcast_to(trig(phase), shape)


def heat_solution_fourier(
    coeffs: ArrayLike,
    wavevectors: ArrayLike,
    lengths: float | Sequence[float],
    t: float,
    points: ArrayLike | None = None,
    *,
    kinds: str | Sequence[str] = "cos",
    metric: ArrayLike | None = None,
    metric_inverse: ArrayLike | None = None,
) -> np.ndarray:
    r"""Solution on the torus for ``H0 = sum_j c_j trig_j(2 pi k_j.(x/L))`` (``trig`` = cos or sin).

    .. math:: H(x, t) = \sum_j c_j e^{-\lambda_j t} \,\mathrm{trig}_j(2 \pi k_j.(x/L)),\qquad
              \lambda_j = 4 \pi^2 (k_j/L)^T M^{-1} (k_j/L).

    Parameters
    ----------
    coeffs : array_like
        Shape ``(K,)``.
    wavevectors : array_like
        Shape ``(K, d)`` (``(K,)`` when ``lengths`` is a scalar).
    lengths : float or sequence of float
        Torus periods.
    t : float
        Time >= 0 (a scalar).
    points : array_like, optional
        Where to evaluate. If omitted, the decayed coefficients ``c_j exp(-lambda_j t)`` are returned.
    kinds : "cos", "sin" or a sequence of them (one per mode)
    metric, metric_inverse : array_like, optional
        Constant Mahalanobis metric or its inverse (at most one).

    Returns
    -------
    ndarray
        Decayed coefficients ``(K,)`` or values at ``points`` (their leading shape).
    """
    tt = _time(t, allow_zero=True)
    if tt.ndim != 0:
        raise ValueError(f"t must be a scalar here, got shape {tt.shape}")
    L, scalar = _geometry_lengths(lengths)
    k = _wavevectors(wavevectors, L.size, scalar)
    c = _finite_array(coeffs, "coeffs").reshape(-1)
    if c.size != k.shape[0]:
        raise ValueError(f"coeffs has {c.size} entries but there are {k.shape[0]} wavevectors")
    if isinstance(kinds, str):
        kinds = [kinds] * c.size
    kinds = list(kinds)
    if len(kinds) != c.size or any(kd not in ("cos", "sin") for kd in kinds):
        raise ValueError(f"kinds must be 'cos'/'sin' or a sequence of {c.size} of them, got {kinds!r}")
    rates = fourier_decay_rate(k, L, metric=metric, metric_inverse=metric_inverse)
    decayed = c * np.exp(-rates * float(tt))
    if points is None:
        return decayed
    x = _points(points, "points", L.size, scalar)
    out = np.zeros(x.shape[:-1])
    for j in range(c.size):
        phase = 2.0 * np.pi * np.sum(x * (k[j] / L), axis=-1)
        out += decayed[j] * (np.cos(phase) if kinds[j] == "cos" else np.sin(phase))
    return out


def neumann_cosine_solution(
    points: ArrayLike,
    mode: int | Sequence[int],
    lower: float | Sequence[float],
    upper: float | Sequence[float],
    t: ArrayLike,
) -> np.ndarray:
    r"""Exact no-flux solution on ``[a, b]`` (or a box) for uniform ``p`` and a cosine mode.

    .. math:: H(x, t) = \prod_i \cos\frac{\pi m_i (x_i - a_i)}{b_i - a_i}\;
              \exp\Big(-\sum_i \Big(\frac{\pi m_i}{b_i - a_i}\Big)^2 t\Big),

    time scale ``((b - a) / (pi m))^2`` in 1-D. Zero flux at the ends for every ``t``.

    Parameters
    ----------
    points : array_like
        Positions (scalar ``lower``/``upper``) or ``(..., d)`` points.
    mode : int or sequence of int
        Non-negative mode number(s) ``m_i``.
    lower, upper : float or sequence of float
        The box.
    t : array_like
        Time(s) >= 0.
    """
    t = _time(t, allow_zero=True)
    lo, up, scalar = _geometry_box(lower, upper)
    m = _orders(mode, "mode")
    m = np.atleast_1d(m)
    if m.shape != (lo.size,):
        raise ValueError(f"mode must have {lo.size} entries, got shape {m.shape}")
    x = _points(points, "points", lo.size, scalar)
    w = np.pi * m / (up - lo)
    value = np.prod(np.cos(w * (x - lo)), axis=-1)
    shape, tb = _with_time(value.shape, t)
    return np.exp(-np.sum(w**2) * tb) * np.broadcast_to(value, shape)


# ----------------------------------------------------------------------------------------------
# Gaussian density p = N(0, s^2) on R: Ornstein-Uhlenbeck
# ----------------------------------------------------------------------------------------------
def ou_eigenvalue(n: ArrayLike, s: float) -> np.ndarray:
    r"""Eigenvalue ``-2 n / s^2`` of ``At = d^2/dx^2 - (2 x / s^2) d/dx`` for ``p = N(0, s^2)``.

    ``At`` is the OU generator with stationary law ``p^2 / int p^2 = N(0, s^2/2)``; mode ``n`` decays
    on the time scale ``s^2 / (2 n)``. See :func:`hermite_eigenfunction`.
    """
    s = _positive_scalar(s, "s")
    return -2.0 * _orders(n).astype(np.float64) / s**2


def hermite_eigenfunction(x: ArrayLike, n: ArrayLike, s: float, normalized: bool = False) -> np.ndarray:
    r"""Eigenfunction ``He_n(sqrt(2) x / s)`` of ``At = d^2/dx^2 - (2x/s^2) d/dx`` (``p = N(0, s^2)``).

    ``He_n`` are the probabilists' Hermite polynomials (``He_n'' - z He_n' = -n He_n``). With
    ``z = x / sqrt(s^2/2)``, ``At = (2/s^2) (d_z^2 - z d_z)``, so

    .. math:: A_t\, He_n(\sqrt{2} x / s) = -\frac{2n}{s^2}\, He_n(\sqrt{2} x / s).

    They are orthogonal in ``L^2(p^2)``: ``E[He_n(Z) He_m(Z)] = n! delta_nm`` for ``Z ~ N(0, 1)``.

    Parameters
    ----------
    x : array_like
        Positions.
    n : array_like of int
        Degree(s) >= 0, broadcast with ``x``.
    s : float
        Standard deviation of ``p`` (> 0).
    normalized : bool
        Divide by ``sqrt(n!)`` (unit norm in ``L^2(p^2 / int p^2)``).
    """
    s = _positive_scalar(s, "s")
    n = _orders(n)
    z = math.sqrt(2.0) * _finite_array(x, "x") / s
    val = special.eval_hermitenorm(n, z)
    if normalized:
        val = val / np.sqrt(special.factorial(n, exact=False))
    return val


def hermite_coefficients(func, s: float, degree: int, n_quad: int | None = None) -> np.ndarray:
    r"""Coefficients ``c_n`` of ``H0(x) = sum_n c_n He_n(sqrt(2) x / s)``, ``n = 0..degree``.

    ``c_n = E[H0(s Z / sqrt 2) He_n(Z)] / n!`` with ``Z ~ N(0, 1)`` (projection in ``L^2(p^2)``), by
    Gauss-Hermite quadrature (exact for polynomials of degree ``< 2 n_quad - degree``).

    Parameters
    ----------
    func : callable
        Vectorised ``H0``.
    s : float
        Standard deviation of ``p``.
    degree : int
        Highest degree kept.
    n_quad : int, optional
        Quadrature nodes (default ``2 degree + 40``).
    """
    s = _positive_scalar(s, "s")
    degree = _layers(degree, "degree")
    nq = 2 * degree + 40 if n_quad is None else _layers(n_quad, "n_quad")
    z, w = np.polynomial.hermite_e.hermegauss(nq)
    w = w / math.sqrt(2.0 * math.pi)
    f = _finite_array(func(s * z / math.sqrt(2.0)), "func(x)")
    n = np.arange(degree + 1)
    He = special.eval_hermitenorm(n[:, None], z[None, :])
    return (He * (w * f)).sum(axis=1) / special.factorial(n, exact=False)


def ou_solution_from_hermite(coeffs: ArrayLike, x: ArrayLike, t: ArrayLike, s: float) -> np.ndarray:
    r"""Solution of ``dH/dt = H'' - (2x/s^2) H'`` for ``H0 = sum_n c_n He_n(sqrt(2) x / s)``.

    .. math:: H(x, t) = \sum_n c_n e^{-2 n t / s^2} He_n(\sqrt{2} x / s).

    Parameters
    ----------
    coeffs : array_like
        ``c_0..c_K`` (e.g. from :func:`hermite_coefficients`).
    x : array_like
        Positions.
    t : array_like
        Time(s) >= 0, broadcast with ``x``.
    s : float
        Standard deviation of ``p``.
    """
    t = _time(t, allow_zero=True)
    s = _positive_scalar(s, "s")
    c = _finite_array(coeffs, "coeffs").reshape(-1)
    x = _finite_array(x, "x")
    z, tb = np.broadcast_arrays(math.sqrt(2.0) * x / s, t)
    out = np.zeros(z.shape)
    for n in range(c.size - 1, -1, -1):
        out += c[n] * np.exp(-2.0 * n * tb / s**2) * special.eval_hermitenorm(n, z)
    return out


def ou_linear_solution(x: ArrayLike, t: ArrayLike, s: float) -> np.ndarray:
    r"""``H0 = x`` under ``dH/dt = H'' - (2x/s^2) H'`` (``p = N(0, s^2)``): ``H = x exp(-2 t / s^2)``.

    Time scale ``s^2 / 2``. ``x`` and ``t >= 0`` broadcast.
    """
    t = _time(t, allow_zero=True)
    s = _positive_scalar(s, "s")
    return _finite_array(x, "x") * np.exp(-2.0 * t / s**2)


def ou_transition_kernel(x: ArrayLike, y: ArrayLike, t: ArrayLike, s: float) -> np.ndarray:
    r"""Green's function of ``dH/dt = H'' - (2x/s^2) H'``: ``H(x, t) = int K(x, y, t) H0(y) dy``.

    The transition density of ``dX = -(2 X / s^2) dt + sqrt(2) dB`` (Mehler kernel):

    .. math:: K = \mathcal N\big(y;\; x e^{-2t/s^2},\; \tfrac{s^2}{2}(1 - e^{-4t/s^2})\big).

    Time scale ``s^2 / 2``; as ``t -> infinity`` it tends to ``N(0, s^2/2) ∝ p^2``.
    ``x``, ``y`` (positions) and ``t > 0`` broadcast.
    """
    t = _time(t)
    s = _positive_scalar(s, "s")
    x = _finite_array(x, "x")
    y = _finite_array(y, "y")
    mean = x * np.exp(-2.0 * t / s**2)
    var = 0.5 * s**2 * -np.expm1(-4.0 * t / s**2)
    return np.exp(-((y - mean) ** 2) / (2.0 * var)) / np.sqrt(2.0 * np.pi * var)


# ----------------------------------------------------------------------------------------------
# fixed eps, N -> infinity, Gaussian density and Gaussian kernel exp(-(x-y)^2 / (2 eps))
# ----------------------------------------------------------------------------------------------
def _gauss_params(s, eps, mean) -> tuple[float, float, float]:
    s = _positive_scalar(s, "s")
    eps = _positive_scalar(eps, "eps")
    mean = _finite_array(mean, "mean")
    if mean.ndim != 0:
        raise ValueError(f"mean must be a scalar, got shape {mean.shape}")
    return s, eps, float(mean)


def gaussian_kernel_law(x: ArrayLike, s: float, eps: float, mean: float = 0.0) -> tuple[np.ndarray, float]:
    r"""The law of ``y`` weighted by one attention row at ``x``, for ``p = N(mean, s^2)``, ``N -> infinity``.

    The row ``S_eps(x, dy) ∝ exp(-(x - y)^2 / (2 eps)) p(y) dy`` is Gaussian:

    .. math:: y \mid x \sim \mathcal N\Big(m + a (x - m),\; a\,\varepsilon\Big),
              \qquad a = \frac{s^2}{s^2 + \varepsilon}.

    Returns
    -------
    (conditional_mean, conditional_variance) : (ndarray, float)
    """
    s, eps, m = _gauss_params(s, eps, mean)
    a = s**2 / (s**2 + eps)
    return m + a * (_finite_array(x, "x") - m), a * eps


def gaussian_kernel_moments(x: ArrayLike, s: float, eps: float, degree: int, mean: float = 0.0) -> np.ndarray:
    r"""``E[y^k | x]``, ``k = 0..degree``, under :func:`gaussian_kernel_law` (one layer applied to ``y^k``).

    .. math:: E[y^k \mid x] = \sum_{j \text{ even}} \binom{k}{j} \mu(x)^{k-j} (j-1)!!\, v^{j/2},

    ``mu(x) = m + a (x - m)``, ``v = a eps``. In particular ``E[y|x] = mu`` and ``E[y^2|x] = mu^2 + v``.

    Returns
    -------
    ndarray
        Shape ``x.shape + (degree + 1,)``.
    """
    degree = _layers(degree, "degree")
    mu, v = gaussian_kernel_law(x, s, eps, mean)
    out = np.empty(mu.shape + (degree + 1,))
    for k in range(degree + 1):
        acc = np.zeros(mu.shape)
        for j in range(0, k + 1, 2):
            odd_moment = float(special.factorial2(j - 1, exact=True)) if j else 1.0  # E[Z^j] = (j-1)!!
            acc += math.comb(k, j) * mu ** (k - j) * odd_moment * v ** (j / 2)
        out[..., k] = acc
    return out


def gaussian_kernel_operator(degree: int, s: float, eps: float, mean: float = 0.0) -> np.ndarray:
    r"""Matrix ``T`` of the exact ``N -> infinity`` attention layer on polynomials of degree ``<= degree``.

    For ``p = N(mean, s^2)`` and kernel ``exp(-(x - y)^2 / (2 eps))``, a feature
    ``H(y) = sum_j c_j y^j`` becomes ``(S H)(x) = E[H(y) | x] = sum_i (T c)_i x^i`` (power basis;
    ``T`` is upper triangular with diagonal ``a^i``, ``a = s^2 / (s^2 + eps)``). ``K`` layers: ``T^K``.
    Column ``k`` holds the power coefficients of :func:`gaussian_kernel_moments` ``E[y^k | x]``.
    """
    degree = _layers(degree, "degree")
    s, eps, m = _gauss_params(s, eps, mean)
    a = s**2 / (s**2 + eps)
    b = (1.0 - a) * m  # mu(x) = a x + b
    v = a * eps
    T = np.zeros((degree + 1, degree + 1))
    for k in range(degree + 1):
        for j in range(0, k + 1, 2):
            cj = math.comb(k, j) * (special.factorial2(j - 1, exact=True) if j else 1) * v ** (j / 2)
            r = k - j  # mu^r = sum_i C(r, i) a^i b^(r-i) x^i
            for i in range(r + 1):
                T[i, k] += cj * math.comb(r, i) * a**i * b ** (r - i)
    return T


def gaussian_features_polynomial(
    coeffs: ArrayLike, x: ArrayLike, s: float, eps: float, n_layers: int, mean: float = 0.0
) -> np.ndarray:
    r"""``S_eps^K H0`` at ``x`` (``N -> infinity``, ``p = N(mean, s^2)``) for ``H0 = sum_j c_j y^j``.

    Exact: ``T^K c`` with ``T`` from :func:`gaussian_kernel_operator`; ``K`` layers reach ``t = K eps/2``.
    """
    c = _finite_array(coeffs, "coeffs").reshape(-1)
    K = _layers(n_layers)
    T = gaussian_kernel_operator(max(c.size - 1, 0), s, eps, mean)
    cK = np.linalg.matrix_power(T, K) @ c
    return np.polynomial.polynomial.polyval(_finite_array(x, "x"), cK)


def gaussian_features_linear(x: ArrayLike, s: float, eps: float, n_layers: int, mean: float = 0.0) -> np.ndarray:
    r"""``H0 = x`` after ``K`` layers at fixed ``eps``, ``N -> infinity``, ``p = N(mean, s^2)``:

    .. math:: H_K(x) = m + (x - m) \Big(\frac{s^2}{s^2 + \varepsilon}\Big)^K

    (THEORY.md section 5, ``m = 0``). With ``t = K eps / 2`` it tends to ``x exp(-2 t / s^2)`` as
    ``eps -> 0``; the difference is the O(eps) bias.
    """
    s, eps, m = _gauss_params(s, eps, mean)
    K = _layers(n_layers)
    return m + (_finite_array(x, "x") - m) * (s**2 / (s**2 + eps)) ** K


def gaussian_kernel_eigenvalue(n: ArrayLike, s: float, eps: float) -> np.ndarray:
    r"""Eigenvalue ``(s^2 / (s^2 + eps))^n`` of the exact one-layer operator (``p = N(m, s^2)``).

    ``log`` of it divided by ``eps / 2`` tends to ``ou_eigenvalue(n, s) = -2 n / s^2`` as ``eps -> 0``.
    """
    s = _positive_scalar(s, "s")
    eps = _positive_scalar(eps, "eps")
    return (s**2 / (s**2 + eps)) ** _orders(n).astype(np.float64)


def gaussian_kernel_eigenfunction(x: ArrayLike, n: ArrayLike, s: float, eps: float, mean: float = 0.0) -> np.ndarray:
    r"""Eigenfunction ``He_n((x - m) / sigma_eps)`` of the exact one-layer operator, ``p = N(m, s^2)``.

    The layer is the Gaussian AR(1) chain ``x' = m + a (x - m) + sqrt(a eps) xi`` (``a = s^2/(s^2+eps)``),
    reversible w.r.t. ``N(m, sigma_eps^2)`` with

    .. math:: \sigma_\varepsilon^2 = \frac{a \varepsilon}{1 - a^2} = \frac{s^2 (s^2 + \varepsilon)}{2 s^2 + \varepsilon}
              \;\to\; \frac{s^2}{2} \quad (\varepsilon \to 0),

    so (Mehler) ``S He_n((x-m)/sigma_eps) = a^n He_n((x-m)/sigma_eps)``.
    """
    s, eps, m = _gauss_params(s, eps, mean)
    sig = math.sqrt(s**2 * (s**2 + eps) / (2.0 * s**2 + eps))
    return special.eval_hermitenorm(_orders(n), (_finite_array(x, "x") - m) / sig)


def _spd(matrix, name: str) -> np.ndarray:
    S = np.atleast_2d(_finite_array(matrix, name))
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {S.shape}")
    if not np.allclose(S, S.T, rtol=1e-12, atol=1e-300):
        raise ValueError(f"{name} must be symmetric")
    try:
        np.linalg.cholesky(S)
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"{name} must be positive definite") from exc
    return S


def gaussian_tokens_map(mu: ArrayLike, Sigma: ArrayLike, eps: float) -> tuple[np.ndarray, np.ndarray]:
    r"""One self-consistent token layer for tokens ``~ N(mu, Sigma)``, ``N -> infinity``.

    Kernel ``exp(-|x - y|^2 / (2 eps))``: ``x' = E[y | x] = A x + (I - A) mu`` with

    .. math:: A = (I + \varepsilon \Sigma^{-1})^{-1} = \Sigma (\Sigma + \varepsilon I)^{-1},
              \qquad \Sigma' = A \Sigma A^T,

    so Gaussians stay Gaussian (mean kept, covariance contracts: blurring mean-shift clusters).

    Parameters
    ----------
    mu : array_like
        Mean, shape ``(d,)`` (only validated: the map's ``A`` does not depend on it).
    Sigma : array_like
        Symmetric positive definite covariance ``(d, d)`` (a scalar variance in 1-D).
    eps : float
        Kernel scale > 0.

    Returns
    -------
    (A, Sigma_new) : (ndarray, ndarray)
    """
    S = _spd(Sigma, "Sigma")
    d = S.shape[0]
    m = np.atleast_1d(_finite_array(mu, "mu"))
    if m.shape != (d,):
        raise ValueError(f"mu must have shape ({d},), got {m.shape}")
    eps = _positive_scalar(eps, "eps")
    A = np.linalg.solve(S + eps * np.eye(d), S).T  # Sigma (Sigma + eps I)^-1 (symmetric; solve for stability)
    A = 0.5 * (A + A.T)
    Snew = A @ S @ A.T
    return A, 0.5 * (Snew + Snew.T)


def gaussian_tokens_evolve(
    x: ArrayLike, mu: ArrayLike, Sigma: ArrayLike, eps: float, n_layers: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""Tokens at ``x`` after ``K`` self-consistent layers, population ``N(mu, Sigma)``, ``N -> infinity``.

    Repeats :func:`gaussian_tokens_map` with the updated covariance each layer:
    ``x_{k+1} - mu = A_k (x_k - mu)``, ``Sigma_{k+1} = A_k Sigma_k A_k^T``. In the eigenbasis of
    ``Sigma`` each variance maps ``sigma^2 -> sigma^2 (sigma^2 / (sigma^2 + eps))^2``.

    Parameters
    ----------
    x : array_like
        Token positions ``(..., d)``.
    mu, Sigma, eps
        As in :func:`gaussian_tokens_map`.
    n_layers : int
        ``K >= 0``.

    Returns
    -------
    (x_K, Sigma_K) : (ndarray, ndarray)
    """
    K = _layers(n_layers)
    S = _spd(Sigma, "Sigma")
    m = np.atleast_1d(_finite_array(mu, "mu"))
    xa = _points(x, "x", S.shape[0], False)
    dev = xa - m
    for _ in range(K):
        A, S = gaussian_tokens_map(m, S, eps)
        dev = dev @ A.T
    return m + dev, S


# ----------------------------------------------------------------------------------------------
# walkers
# ----------------------------------------------------------------------------------------------
def walkers_stationary(pdf_values: ArrayLike, weights: ArrayLike | None = None) -> np.ndarray:
    r"""Stationary walkers' density ``rho = p^2 / int p^2`` (THEORY.md section 2).

    Parameters
    ----------
    pdf_values : array_like
        ``p`` at nodes (>= 0, not all zero).
    weights : array_like, optional
        Quadrature weights (cell volumes) broadcast with ``pdf_values``; ``sum(rho * weights) = 1``.
        If omitted, a probability vector (``sum(rho) = 1``) is returned.
    """
    p = _finite_array(pdf_values, "pdf_values")
    if np.any(p < 0):
        raise ValueError("pdf_values must be >= 0")
    q = p * p
    if weights is None:
        total = q.sum()
    else:
        w = _finite_array(weights, "weights")
        if np.any(w < 0):
            raise ValueError("weights must be >= 0")
        total = np.sum(q * w)
    if not total > 0:
        raise ValueError("pdf_values: int p^2 is zero")
    return q / total
