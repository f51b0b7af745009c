"""continuum_attention: attention layers as Euler steps of the attention-limit PDE.

Ruan & Zhang (arXiv:2412.18288): attention with a metric pseudo-metric, on points sampled from a density p,
is an explicit Euler step of length eps/2 of dH/dt = Delta_g H + 2 <grad log p, grad H>_g.
See ``docs/theory.md`` for the conventions.
"""

from .domains import Box, Domain, Euclidean, Torus
from .densities import Density
from .grid import Grid
from .pde import AttentionLimitPDE, PDESolution

__version__ = "0.1.0"

__all__ = [
    "AttentionLimitPDE",
    "Box",
    "Density",
    "Domain",
    "Euclidean",
    "Grid",
    "PDESolution",
    "Torus",
    "__version__",
]
