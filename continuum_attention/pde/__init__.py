"""Continuum side: the attention-limit PDE on a grid (THEORY.md section 3).

:class:`AttentionLimitPDE` discretises the three forms (features, walkers, heat) in conservative flux form and
integrates them (explicit Numba kernel, Crank-Nicolson, implicit Euler, or expm_multiply as a reference);
:class:`PDESolution` holds the snapshots and interpolates them.
"""

from .operators import FORMS, FluxOperator
from .solver import EXACT_MAX_NODES, METHODS, AttentionLimitPDE, PDESolution

__all__ = ["AttentionLimitPDE", "PDESolution", "FluxOperator", "FORMS", "METHODS", "EXACT_MAX_NODES"]
