"""Fixed ``eps``, ``N -> infinity``: the exact attention layer for a Gaussian density and the Gaussian
kernel ``exp(-(x-y)^2 / (2 eps))`` (row laws, moments, the operator on polynomials, eigenpairs).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from ._checks import finite_array, layers, orders, positive_scalar

__all__ = [
    "gaussian_kernel_law",
    "gaussian_kernel_moments",
    "gaussian_kernel_operator",
    "gaussian_features_polynomial",
    "gaussian_features_linear",
    "gaussian_kernel_eigenvalue",
    "gaussian_kernel_eigenfunction",
]


# ----------------------------------------------------------------------------------------------
# fixed eps, N -> infinity, Gaussian density and Gaussian kernel exp(-(x-y)^2 / (2 eps))
# ----------------------------------------------------------------------------------------------
def _gauss_params(s, eps, mean) -> tuple[float, float, float]:
    s = positive_scalar(s, "s")
    eps = positive_scalar(eps, "eps")
    mean = finite_array(mean, "mean")
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
    return m + a * (finite_array(x, "x") - m), a * eps


def gaussian_kernel_moments(x: ArrayLike, s: float, eps: float, degree: int, mean: float = 0.0) -> np.ndarray:
    r"""``E[y^k | x]``, ``k = 0..degree``, under :func:`gaussian_kernel_law` (one layer applied to ``y^k``).

    .. math:: E[y^k \mid x] = \sum_{j \text{ even}} \binom{k}{j} \mu(x)^{k-j} (j-1)!!\, v^{j/2},

    ``mu(x) = m + a (x - m)``, ``v = a eps``. In particular ``E[y|x] = mu`` and ``E[y^2|x] = mu^2 + v``.

    Returns
    -------
    ndarray
        Shape ``x.shape + (degree + 1,)``.
    """
    degree = layers(degree, "degree")
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
    degree = layers(degree, "degree")
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
    c = finite_array(coeffs, "coeffs").reshape(-1)
    K = layers(n_layers)
    T = gaussian_kernel_operator(max(c.size - 1, 0), s, eps, mean)
    cK = np.linalg.matrix_power(T, K) @ c
    return np.polynomial.polynomial.polyval(finite_array(x, "x"), cK)


def gaussian_features_linear(x: ArrayLike, s: float, eps: float, n_layers: int, mean: float = 0.0) -> np.ndarray:
    r"""``H0 = x`` after ``K`` layers at fixed ``eps``, ``N -> infinity``, ``p = N(mean, s^2)``:

    .. math:: H_K(x) = m + (x - m) \Big(\frac{s^2}{s^2 + \varepsilon}\Big)^K

    (THEORY.md section 5, ``m = 0``). With ``t = K eps / 2`` it tends to ``x exp(-2 t / s^2)`` as
    ``eps -> 0``; the difference is the O(eps) bias.
    """
    s, eps, m = _gauss_params(s, eps, mean)
    K = layers(n_layers)
    return m + (finite_array(x, "x") - m) * (s**2 / (s**2 + eps)) ** K


def gaussian_kernel_eigenvalue(n: ArrayLike, s: float, eps: float) -> np.ndarray:
    r"""Eigenvalue ``(s^2 / (s^2 + eps))^n`` of the exact one-layer operator (``p = N(m, s^2)``).

    ``log`` of it divided by ``eps / 2`` tends to ``ou_eigenvalue(n, s) = -2 n / s^2`` as ``eps -> 0``.
    """
    s = positive_scalar(s, "s")
    eps = positive_scalar(eps, "eps")
    return (s**2 / (s**2 + eps)) ** orders(n).astype(np.float64)


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
    return special.eval_hermitenorm(orders(n), (finite_array(x, "x") - m) / sig)
