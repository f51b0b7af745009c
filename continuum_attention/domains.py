"""Domains: where points live and how differences between them are measured.

Three domains cover the theory (THEORY.md section 3):

* :class:`Torus` -- periodic box ``[0, L_1) x ... x [0, L_d)``, minimum-image differences.
  Closed manifold: clean convergence rates, no boundary layer.
* :class:`Box` -- ``[lower, upper]`` with a no-flux (Neumann) boundary; the kernel operator has an
  O(sqrt(eps)) boundary layer there.
* :class:`Euclidean` -- all of R^d, for particles only (a grid on it needs an explicit :class:`Box`).

Constructors only store (validated) parameters; everything else is computed on demand.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._validation import positive_int, real_array, table

__all__ = ["Domain", "Torus", "Box", "Euclidean", "as_points", "domain_from_config"]


def as_points(points, dim: int | None = None, *, name: str = "points") -> np.ndarray:
    """Validate and return points as a C-contiguous float64 array of shape (N, d).

    A 1-D array of length N is read as N points in one dimension. NaN or infinite entries, an empty
    array, or a dimension that disagrees with ``dim`` raise ValueError naming ``name``.
    """
    x = real_array(points, name, finite=False)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, d) or (N,), got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} has dimension {x.shape[1]}, but the domain has dimension {dim}")
    if not np.all(np.isfinite(x)):
        bad = int(np.argmax(~np.all(np.isfinite(x), axis=1)))
        raise ValueError(f"{name} contains NaN or infinite values (first at row {bad}: {x[bad]})")
    return np.ascontiguousarray(x)


def _as_vector(values, name: str) -> np.ndarray:
    v = np.atleast_1d(real_array(values, name, finite=False))
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a number or a 1-D sequence, got {values!r}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite, got {values!r}")
    return v


class Domain:
    """Base class. Subclasses define ``dim``, ``periodic``, ``lower``, ``upper``."""

    dim: int

    @property
    def periodic(self) -> np.ndarray:
        """Boolean array (d,): which axes wrap around."""
        return np.zeros(self.dim, dtype=bool)

    @property
    def bounded(self) -> bool:
        """True when the domain has finite volume (a grid can be laid on it)."""
        return True

    @property
    def lengths(self) -> np.ndarray:
        """Side lengths ``upper - lower`` (d,)."""
        return self.upper - self.lower

    @property
    def volume(self) -> float:
        """Lebesgue volume of the domain (``inf`` when unbounded)."""
        return float(np.prod(self.lengths))

    @property
    def period(self) -> np.ndarray:
        """Period per axis for minimum-image arithmetic: the length on periodic axes, 0 elsewhere."""
        return np.where(self.periodic, self.lengths, 0.0)

    def difference(self, x, y) -> np.ndarray:
        """Difference ``x - y`` (broadcast), reduced to the minimum image on periodic axes."""
        diff = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
        per = self.periodic
        if per.any():
            L = self.lengths
            # round half to even, as every kernel does: ties (exactly half a period) resolve the same way
            diff = np.where(per, diff - L * np.rint(diff * (1.0 / np.where(per, L, 1.0))), diff)
        return diff

    def wrap(self, points) -> np.ndarray:
        """Map points into the fundamental cell on periodic axes; identity elsewhere."""
        x = np.asarray(points, dtype=np.float64)
        per = self.periodic
        if not per.any():
            return x
        lo, L = self.lower, self.lengths
        if x.size and np.all(lo[per] == 0.0):  # points already in [0, L) map to themselves, bit for bit
            xp = x if per.all() else x[..., per]
            if xp.min() >= 0.0 and np.all(xp.max(axis=tuple(range(xp.ndim - 1))) < L[per]):
                return x
        r = np.mod(x - lo, np.where(per, L, 1.0))
        r = np.where(r >= L, r - L, r)  # mod of a tiny negative number rounds up to exactly L
        return np.where(per, lo + r, x)

    def contains(self, points) -> np.ndarray:
        """Boolean mask (N,): points inside the closed domain (periodic axes always count as inside)."""
        x = as_points(points, self.dim)
        inside = (x >= self.lower) & (x <= self.upper)
        return np.all(inside | self.periodic, axis=1)

    def validate_points(self, points, *, name: str = "points") -> np.ndarray:
        """Return points as (N, d) float64, wrapped on periodic axes; refuse NaN or points outside."""
        x = as_points(points, self.dim, name=name)
        if self.bounded:
            x = self.wrap(x)
            inside = self.contains(x)
            if not inside.all():
                bad = int(np.argmin(inside))
                raise ValueError(
                    f"{name} has points outside the {type(self).__name__} "
                    f"[{self.lower}, {self.upper}] (first at row {bad}: {x[bad]})"
                )
        return x

    def uniform_sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n points uniform on the domain (bounded domains only)."""
        if not self.bounded:
            raise ValueError(f"cannot sample uniformly from the unbounded {self!r}")
        return self.lower + self.lengths * rng.random((int(n), self.dim))

    def to_config(self) -> dict:
        """Plain-data description, enough to rebuild the domain with :func:`domain_from_config`."""
        raise NotImplementedError

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.to_config() == other.to_config()

    def __hash__(self) -> int:
        return hash(repr(self.to_config()))


class Torus(Domain):
    """Periodic box ``[0, L_1) x ... x [0, L_d)`` in any dimension (grids for the PDE: 1 to 3).

    Parameters
    ----------
    lengths : float or sequence of float
        Side lengths L_i > 0. A single number gives the circle of that length.
    """

    def __init__(self, lengths: float | Sequence[float] = 1.0):
        L = _as_vector(lengths, "lengths")
        if L.size < 1:
            raise ValueError(f"Torus needs at least one side length, got lengths={lengths!r}")
        if np.any(L <= 0):
            raise ValueError(f"lengths must be positive, got lengths={lengths!r}")
        self._L = L
        self.dim = int(L.size)

    @property
    def periodic(self) -> np.ndarray:
        return np.ones(self.dim, dtype=bool)

    @property
    def lower(self) -> np.ndarray:
        return np.zeros(self.dim)

    @property
    def upper(self) -> np.ndarray:
        return self._L.copy()

    def to_config(self) -> dict:
        return {"type": "Torus", "lengths": self._L.tolist()}

    def __repr__(self) -> str:
        return f"Torus(lengths={self._L.tolist()})"


class Box(Domain):
    """Box ``[lower_1, upper_1] x ... x [lower_d, upper_d]`` with a no-flux (Neumann) boundary.

    Parameters
    ----------
    lower, upper : float or sequence of float
        Corners with ``lower < upper`` on every axis (any dimension; grids for the PDE: 1 to 3).
    """

    def __init__(self, lower: float | Sequence[float], upper: float | Sequence[float]):
        lo, hi = _as_vector(lower, "lower"), _as_vector(upper, "upper")
        if lo.shape != hi.shape:
            raise ValueError(f"lower and upper must have the same length, got lower={lower!r}, upper={upper!r}")
        if lo.size < 1:
            raise ValueError(f"Box needs at least one axis, got lower={lower!r}")
        if np.any(hi <= lo):
            raise ValueError(f"upper must exceed lower on every axis, got lower={lower!r}, upper={upper!r}")
        self._lo, self._hi = lo, hi
        self.dim = int(lo.size)

    @property
    def lower(self) -> np.ndarray:
        return self._lo.copy()

    @property
    def upper(self) -> np.ndarray:
        return self._hi.copy()

    def to_config(self) -> dict:
        return {"type": "Box", "lower": self._lo.tolist(), "upper": self._hi.tolist()}

    def __repr__(self) -> str:
        return f"Box(lower={self._lo.tolist()}, upper={self._hi.tolist()})"


class Euclidean(Domain):
    """All of R^d (particles only; lay a grid on an explicit :class:`Box` instead)."""

    def __init__(self, dim: int = 1):
        self.dim = positive_int(dim, "dim")

    @property
    def bounded(self) -> bool:
        return False

    @property
    def lower(self) -> np.ndarray:
        return np.full(self.dim, -np.inf)

    @property
    def upper(self) -> np.ndarray:
        return np.full(self.dim, np.inf)

    @property
    def lengths(self) -> np.ndarray:
        return np.full(self.dim, np.inf)

    @property
    def period(self) -> np.ndarray:
        return np.zeros(self.dim)

    def to_config(self) -> dict:
        return {"type": "Euclidean", "dim": self.dim}

    def __repr__(self) -> str:
        return f"Euclidean(dim={self.dim})"


def domain_from_config(config: dict) -> Domain:
    """Rebuild a domain from :meth:`Domain.to_config` output (or a TOML table of the same shape)."""
    config = table(config, "domain")
    kind = config.pop("type", None)
    classes = {"Torus": Torus, "Box": Box, "Euclidean": Euclidean}
    if kind not in classes:
        raise ValueError(f"domain type must be one of {sorted(classes)}, got type={kind!r}")
    try:
        return classes[kind](**config)
    except TypeError as exc:
        raise ValueError(f"bad parameters for {kind}: {config!r} ({exc})") from None
