"""Shared input checks of :mod:`continuum_attention.analytic` (a private module; its names are public
to the subpackage's modules).

Invalid input raises ``ValueError`` (bad value) or ``TypeError`` (wrong type) naming the parameter; both come
from the package's one validation layer, :mod:`continuum_attention._validation`.
"""

from __future__ import annotations

import numpy as np

from .._validation import nonnegative_int, real_array

__all__ = [
    "finite_array",
    "time_array",
    "positive_scalar",
    "layers",
    "orders",
    "geometry_lengths",
    "geometry_box",
    "point_array",
    "pair",
    "with_time",
    "inverse_metric",
]


# ----------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------
def finite_array(value, name: str) -> np.ndarray:
    """Finite real float64 array (the package's validation layer: TypeError for a wrong type)."""
    return real_array(value, name)


def time_array(t, name: str = "t", *, allow_zero: bool = False) -> np.ndarray:
    a = finite_array(t, name)
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if allow_zero:
        if np.any(a < 0):
            raise ValueError(f"{name} must be >= 0 (backward heat flow is ill-posed), got min {a.min()!r}")
    elif np.any(a <= 0):
        raise ValueError(f"{name} must be > 0, got min {a.min()!r}")
    return a


def positive_scalar(value, name: str) -> float:
    a = finite_array(value, name)
    if a.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {a.shape}")
    if a <= 0:
        raise ValueError(f"{name} must be > 0, got {float(a)!r}")
    return float(a)


def layers(n_layers, name: str = "n_layers") -> int:
    if isinstance(n_layers, (float, np.floating)):  # a layer count is an integer, never a float that looks like one
        raise TypeError(f"{name} must be a non-negative integer, got {name}={n_layers!r}")
    return nonnegative_int(n_layers, name)


def orders(n, name: str = "n") -> np.ndarray:
    a = np.asarray(n)
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a))):
        raise ValueError(f"{name} must hold non-negative integers, got {n!r}")
    a = a.astype(np.int64)
    if np.any(a < 0):
        raise ValueError(f"{name} must hold non-negative integers, got {n!r}")
    return a


def geometry_lengths(lengths, name: str = "lengths") -> tuple[np.ndarray, bool]:
    """Return (lengths as (d,), scalar?)."""
    a = finite_array(lengths, name)
    if a.ndim > 1 or a.size == 0:
        raise ValueError(f"{name} must be a positive number or a 1-D sequence, got shape {a.shape}")
    if np.any(a <= 0):
        raise ValueError(f"{name} must be > 0, got {lengths!r}")
    return np.atleast_1d(a), a.ndim == 0


def geometry_box(lower, upper) -> tuple[np.ndarray, np.ndarray, bool]:
    lo = finite_array(lower, "lower")
    up = finite_array(upper, "upper")
    if lo.ndim > 1 or lo.size == 0:
        raise ValueError(f"lower must be a number or a 1-D sequence, got shape {lo.shape}")
    if up.ndim > 1 or up.size == 0:
        raise ValueError(f"upper must be a number or a 1-D sequence, got shape {up.shape}")
    if lo.ndim != up.ndim or lo.shape != up.shape:
        raise ValueError(f"lower and upper must have the same shape, got {lo.shape} and {up.shape}")
    if np.any(up <= lo):
        raise ValueError(f"upper must exceed lower on every axis, got lower={lower!r}, upper={upper!r}")
    return np.atleast_1d(lo), np.atleast_1d(up), lo.ndim == 0


def point_array(x, name: str, d: int, positions: bool) -> np.ndarray:
    """Validated points with the coordinate axis last: shape (..., d)."""
    a = finite_array(x, name)
    if positions:
        return a[..., None]
    if a.ndim == 0 or a.shape[-1] != d:
        raise ValueError(f"{name} must have shape (d,) or (..., d) with d = {d}, got shape {a.shape}")
    return a


def pair(x, y, d: int, positions: bool) -> tuple[np.ndarray, np.ndarray]:
    xa = point_array(x, "x", d, positions)
    ya = point_array(y, "y", d, positions)
    try:
        xa, ya = np.broadcast_arrays(xa, ya)
    except ValueError as exc:
        raise ValueError(f"x and y do not broadcast: shapes {np.shape(x)} and {np.shape(y)}") from exc
    return xa, ya


def with_time(lead_shape: tuple, t: np.ndarray) -> tuple[tuple, np.ndarray]:
    try:
        shape = np.broadcast_shapes(lead_shape, t.shape)
    except ValueError as exc:
        raise ValueError(f"t of shape {t.shape} does not broadcast with the points' shape {lead_shape}") from exc
    return shape, np.broadcast_to(t, shape)


def inverse_metric(d: int, metric, metric_inverse) -> np.ndarray | None:
    if metric is not None and metric_inverse is not None:
        raise ValueError("give at most one of metric and metric_inverse")
    if metric is None and metric_inverse is None:
        return None
    name = "metric" if metric is not None else "metric_inverse"
    m = finite_array(metric if metric is not None else metric_inverse, name)
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
