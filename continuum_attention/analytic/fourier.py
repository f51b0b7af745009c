"""Uniform density: exact Fourier-mode solutions on the torus and cosine-mode solutions on a box."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike

from ._checks import (
    finite_array,
    geometry_box,
    geometry_lengths,
    inverse_metric,
    orders,
    point_array,
    time_array,
    with_time,
)

__all__ = [
    "fourier_decay_rate",
    "fourier_mode_solution",
    "heat_solution_fourier",
    "neumann_cosine_solution",
]


# ----------------------------------------------------------------------------------------------
# uniform density: Fourier and cosine modes
# ----------------------------------------------------------------------------------------------
def _wavevectors(wavevectors, d: int, scalar: bool, name: str = "wavevectors", single: bool = False) -> np.ndarray:
    k = finite_array(wavevectors, name)
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
    L, scalar = geometry_lengths(lengths)
    k = finite_array(wavevector, "wavevector")
    single = k.ndim == 0 or (k.ndim == 1 and not scalar)
    kk = _wavevectors(k, L.size, scalar, "wavevector")
    Minv = inverse_metric(L.size, metric, metric_inverse)
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
    t = time_array(t, allow_zero=True)
    if kind not in ("cos", "sin"):
        raise ValueError(f"kind must be 'cos' or 'sin', got {kind!r}")
    L, scalar = geometry_lengths(lengths)
    k = _wavevectors(wavevector, L.size, scalar, "wavevector", single=True)
    rate = fourier_decay_rate(k, L, metric=metric, metric_inverse=metric_inverse)
    x = point_array(points, "points", L.size, scalar)
    phase = 2.0 * np.pi * np.sum(x * (k / L), axis=-1)
    shape, tb = with_time(phase.shape, t)
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
    tt = time_array(t, allow_zero=True)
    if tt.ndim != 0:
        raise ValueError(f"t must be a scalar here, got shape {tt.shape}")
    L, scalar = geometry_lengths(lengths)
    k = _wavevectors(wavevectors, L.size, scalar)
    c = finite_array(coeffs, "coeffs").reshape(-1)
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
    x = point_array(points, "points", L.size, scalar)
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
    t = time_array(t, allow_zero=True)
    lo, up, scalar = geometry_box(lower, upper)
    m = orders(mode, "mode")
    m = np.atleast_1d(m)
    if m.shape != (lo.size,):
        raise ValueError(f"mode must have {lo.size} entries, got shape {m.shape}")
    x = point_array(points, "points", lo.size, scalar)
    w = np.pi * m / (up - lo)
    value = np.prod(np.cos(w * (x - lo)), axis=-1)
    shape, tb = with_time(value.shape, t)
    return np.exp(-np.sum(w**2) * tb) * np.broadcast_to(value, shape)
