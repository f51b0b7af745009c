"""Gaussian density ``p = N(0, s^2)`` on R: the Ornstein-Uhlenbeck limit, its Hermite eigenfunctions
and transition kernel.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from ._checks import finite_array, layers, orders, positive_scalar, time_array

__all__ = [
    "ou_eigenvalue",
    "hermite_eigenfunction",
    "hermite_coefficients",
    "ou_solution_from_hermite",
    "ou_linear_solution",
    "ou_transition_kernel",
]


# ----------------------------------------------------------------------------------------------
# Gaussian density p = N(0, s^2) on R: Ornstein-Uhlenbeck
# ----------------------------------------------------------------------------------------------
def ou_eigenvalue(n: ArrayLike, s: float) -> np.ndarray:
    r"""Eigenvalue ``-2 n / s^2`` of ``At = d^2/dx^2 - (2 x / s^2) d/dx`` for ``p = N(0, s^2)``.

    ``At`` is the OU generator with stationary law ``p^2 / int p^2 = N(0, s^2/2)``; mode ``n`` decays
    on the time scale ``s^2 / (2 n)``. See :func:`hermite_eigenfunction`.
    """
    s = positive_scalar(s, "s")
    return -2.0 * orders(n).astype(np.float64) / s**2


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
    s = positive_scalar(s, "s")
    n = orders(n)
    z = math.sqrt(2.0) * finite_array(x, "x") / s
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
    s = positive_scalar(s, "s")
    degree = layers(degree, "degree")
    nq = 2 * degree + 40 if n_quad is None else layers(n_quad, "n_quad")
    z, w = np.polynomial.hermite_e.hermegauss(nq)
    w = w / math.sqrt(2.0 * math.pi)
    f = finite_array(func(s * z / math.sqrt(2.0)), "func(x)")
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
    t = time_array(t, allow_zero=True)
    s = positive_scalar(s, "s")
    c = finite_array(coeffs, "coeffs").reshape(-1)
    x = finite_array(x, "x")
    z, tb = np.broadcast_arrays(math.sqrt(2.0) * x / s, t)
    out = np.zeros(z.shape)
    for n in range(c.size - 1, -1, -1):
        out += c[n] * np.exp(-2.0 * n * tb / s**2) * special.eval_hermitenorm(n, z)
    return out


def ou_linear_solution(x: ArrayLike, t: ArrayLike, s: float) -> np.ndarray:
    r"""``H0 = x`` under ``dH/dt = H'' - (2x/s^2) H'`` (``p = N(0, s^2)``): ``H = x exp(-2 t / s^2)``.

    Time scale ``s^2 / 2``. ``x`` and ``t >= 0`` broadcast.
    """
    t = time_array(t, allow_zero=True)
    s = positive_scalar(s, "s")
    return finite_array(x, "x") * np.exp(-2.0 * t / s**2)


def ou_transition_kernel(x: ArrayLike, y: ArrayLike, t: ArrayLike, s: float) -> np.ndarray:
    r"""Green's function of ``dH/dt = H'' - (2x/s^2) H'``: ``H(x, t) = int K(x, y, t) H0(y) dy``.

    The transition density of ``dX = -(2 X / s^2) dt + sqrt(2) dB`` (Mehler kernel):

    .. math:: K = \mathcal N\big(y;\; x e^{-2t/s^2},\; \tfrac{s^2}{2}(1 - e^{-4t/s^2})\big).

    Time scale ``s^2 / 2``; as ``t -> infinity`` it tends to ``N(0, s^2/2) ∝ p^2``.
    ``x``, ``y`` (positions) and ``t > 0`` broadcast.
    """
    t = time_array(t)
    s = positive_scalar(s, "s")
    x = finite_array(x, "x")
    y = finite_array(y, "y")
    mean = x * np.exp(-2.0 * t / s**2)
    var = 0.5 * s**2 * -np.expm1(-4.0 * t / s**2)
    return np.exp(-((y - mean) ** 2) / (2.0 * var)) / np.sqrt(2.0 * np.pi * var)
