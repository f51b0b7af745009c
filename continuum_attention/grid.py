"""Cartesian grids on bounded domains, for the continuum side.

* On a :class:`~continuum_attention.domains.Torus`: periodic nodes x_i = i h, h = L / n (the node at L is
  the node at 0).
* On a :class:`~continuum_attention.domains.Box`: cell centres x_i = lower + (i + 1/2) h, h = (upper - lower) / n,
  so that a no-flux condition sits exactly on the cell faces (finite volumes).

Every node carries the cell volume prod(h); :meth:`Grid.integrate` is the midpoint rule (spectrally accurate
for smooth periodic functions, O(h^2) on a box).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._validation import describe, integer
from .domains import Box, Domain, Torus

__all__ = ["Grid", "MAX_GRID_DIM"]

#: Grids (and so the PDE) stop at three dimensions: the finite-volume stencils are written for d <= 3.
MAX_GRID_DIM = 3


class Grid:
    """Regular grid on a Torus (periodic nodes) or a Box (cell centres).

    Parameters
    ----------
    domain : Torus or Box
    shape : int or sequence of int
        Number of nodes per axis (>= 3 each); an int is used for every axis.
    """

    def __init__(self, domain: Domain, shape: int | Sequence[int]):
        if not isinstance(domain, Domain):
            raise TypeError(f"domain must be a Torus or a Box, got domain={describe(domain)} of type {type(domain).__name__}")
        if not isinstance(domain, (Torus, Box)):
            raise ValueError(f"a Grid needs a Torus or a Box, got domain={domain!r} (use Box(...) for unbounded space)")
        if domain.dim > MAX_GRID_DIM:
            raise ValueError(f"a Grid has 1 to {MAX_GRID_DIM} dimensions, got the {domain.dim}-D {domain!r}: the PDE side "
                             "is for low-dimensional domains; particles take any dimension")
        if isinstance(shape, (list, tuple, np.ndarray)):
            if len(shape) != domain.dim:
                raise ValueError(f"shape must be an int or {domain.dim} ints for the {domain.dim}-D {domain!r}, "
                                 f"got shape={describe(shape)}")
            shp = [integer(n, "shape", minimum=3) for n in shape]
        else:
            shp = [integer(shape, "shape", minimum=3)] * domain.dim
        self.domain = domain
        self.shape = tuple(shp)

    @property
    def dim(self) -> int:
        return self.domain.dim

    @property
    def periodic(self) -> bool:
        """True on a Torus (every axis periodic), False on a Box (every axis no-flux)."""
        return isinstance(self.domain, Torus)

    @property
    def spacing(self) -> np.ndarray:
        """Node spacing h per axis (d,)."""
        return self.domain.lengths / np.asarray(self.shape)

    @property
    def cell_volume(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def axes(self) -> list[np.ndarray]:
        """1-D node coordinates per axis."""
        offset = 0.0 if self.periodic else 0.5
        return [lo + h * (np.arange(n) + offset) for lo, h, n in zip(self.domain.lower, self.spacing, self.shape)]

    @property
    def coordinates(self) -> np.ndarray:
        """Node coordinates, shape (*shape, d)."""
        return np.stack(np.meshgrid(*self.axes, indexing="ij"), axis=-1)

    @property
    def points(self) -> np.ndarray:
        """Node coordinates flattened in C order, shape (size, d)."""
        return self.coordinates.reshape(-1, self.dim)

    def face_points(self, axis: int) -> np.ndarray:
        """Coordinates of the faces between node i and i+1 along ``axis``, shape (*shape, d).

        Entry i is the face at x_i + h/2. On a Box the last entry is the boundary face at ``upper``.
        """
        coords = self.coordinates.copy()
        coords[..., axis] += 0.5 * self.spacing[axis]
        return coords

    def integrate(self, values) -> float:
        """Midpoint-rule integral sum(values) * prod(h) of nodal values (shape ``self.shape`` or (size,))."""
        v = np.asarray(values, dtype=np.float64)
        if v.size != self.size:
            raise ValueError(f"values has {v.size} entries, the grid has {self.size} nodes {self.shape}")
        return float(v.sum() * self.cell_volume)

    def to_config(self) -> dict:
        return {"domain": self.domain.to_config(), "shape": list(self.shape)}

    def __repr__(self) -> str:
        return f"Grid({self.domain!r}, shape={self.shape})"
