"""The walkers' stationary law ``rho = p^2 / int p^2``."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._checks import finite_array

__all__ = [
    "walkers_stationary",
]


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
    p = finite_array(pdf_values, "pdf_values")
    if np.any(p < 0):
        raise ValueError("pdf_values must be >= 0")
    q = p * p
    if weights is None:
        total = q.sum()
    else:
        w = finite_array(weights, "weights")
        if np.any(w < 0):
            raise ValueError("weights must be >= 0")
        total = np.sum(q * w)
    if not total > 0:
        raise ValueError("pdf_values: int p^2 is zero")
    return q / total
