"""continuum_attention: attention layers as Euler steps of the attention-limit PDE.

Ruan & Zhang (arXiv:2412.18288): attention with a metric pseudo-metric, on points sampled from a density p,
is an explicit Euler step of length eps/2 of dH/dt = Delta_g H + 2 <grad log p, grad H>_g.
See ``docs/theory.md`` for the conventions.
"""

from . import densities, metrics
from .attention import AttentionOperator
from .densities import Density
from .domains import Box, Domain, Euclidean, Torus
from .grid import Grid
from .metrics import DotProduct, Learned, Mahalanobis
from .particles import ParticleSolution, ParticleSolver
from .pde import AttentionLimitPDE, PDESolution
from .problem import Problem
from ._version import __version__


# ``Euclidean`` is the domain R^d; the Euclidean pseudo-metric is ``metrics.Euclidean``.
__all__ = [
    "AttentionLimitPDE",
    "AttentionOperator",
    "Box",
    "Density",
    "Domain",
    "DotProduct",
    "Euclidean",
    "Grid",
    "Learned",
    "Mahalanobis",
    "ParticleSolution",
    "ParticleSolver",
    "PDESolution",
    "Problem",
    "Torus",
    "densities",
    "metrics",
    "__version__",
]
