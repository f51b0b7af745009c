"""Heat kernels of ``dH/dt = Delta H``: free (R^d), periodic (torus), Neumann and Dirichlet (interval
or box), with the 1-D image and series sums they are built from.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._checks import geometry_box, geometry_lengths, layers, pair, time_array, with_time

__all__ = [
    "free_heat_kernel",
    "wrapped_gaussian",
    "periodic_heat_kernel_fourier",
    "periodic_heat_kernel",
    "neumann_heat_kernel",
    "dirichlet_heat_kernel",
]


#: neglected terms are below exp(-_TAIL_EXPONENT) of the leading one (exp(-40) ~ 4e-18)
_TAIL_EXPONENT = 40.0
#: tau = 4 pi^2 t / period^2 above which the (cosine) Fourier series is used instead of images
_SERIES_THRESHOLD = 2.0
#: same for the Dirichlet kernel, whose image form cancels (the sine series is better sooner)
_SERIES_THRESHOLD_DIRICHLET = 1.0


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
    t = time_array(t)
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
    xb, yb = pair(x, y, d, positions)
    r2 = np.sum((xb - yb) ** 2, axis=-1)
    shape, tb = with_time(r2.shape, t)
    r2 = np.broadcast_to(r2, shape)
    return (4.0 * np.pi * tb) ** (-d / 2.0) * np.exp(-r2 / (4.0 * tb))


def _periodic_product(kernel_1d, x, y, t, lengths) -> np.ndarray:
    """prod_i kernel_1d(x_i - y_i, t, L_i): the torus kernel is a product of circle kernels."""
    t = time_array(t)
    L, scalar = geometry_lengths(lengths)
    xb, yb = pair(x, y, L.size, scalar)
    shape, tb = with_time(xb.shape[:-1], t)
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
        n_images = layers(n_images, "n_images")
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
        n_terms = layers(n_terms, "n_terms")
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
    t = time_array(t)
    lo, up, scalar = geometry_box(lower, upper)
    xb, yb = pair(x, y, lo.size, scalar)
    shape, tb = with_time(xb.shape[:-1], t)
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
