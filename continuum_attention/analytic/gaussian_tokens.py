"""Fixed ``eps``, ``N -> infinity``: self-consistent token layers for a Gaussian population
``N(mu, Sigma)`` (the Gaussian kernel applied to the tokens themselves).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._checks import finite_array, layers, point_array, positive_scalar

__all__ = [
    "gaussian_tokens_map",
    "gaussian_tokens_evolve",
]


def _spd(matrix, name: str) -> np.ndarray:
    S = np.atleast_2d(finite_array(matrix, name))
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
    m = np.atleast_1d(finite_array(mu, "mu"))
    if m.shape != (d,):
        raise ValueError(f"mu must have shape ({d},), got {m.shape}")
    eps = positive_scalar(eps, "eps")
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
    K = layers(n_layers)
    S = _spd(Sigma, "Sigma")
    m = np.atleast_1d(finite_array(mu, "mu"))
    xa = point_array(x, "x", S.shape[0], False)
    dev = xa - m
    for _ in range(K):
        A, S = gaussian_tokens_map(m, S, eps)
        dev = dev @ A.T
    return m + dev, S
