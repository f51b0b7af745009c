"""Continuum side: the attention-limit PDE on a grid (THEORY.md section 3).

:class:`AttentionLimitPDE` discretises the three forms (features, walkers, heat) in conservative flux form and
integrates them with a time stepper chosen by name from :data:`STEPPERS` (explicit Numba kernel,
Crank-Nicolson, implicit Euler, or expm_multiply as a reference; :mod:`.steppers`); :class:`PDESolution` holds
the snapshots and interpolates them.
"""

from .operators import FORMS, FluxOperator
from .solver import BACKENDS, EXACT_MAX_NODES, METHODS, AttentionLimitPDE, PDESolution
from .steppers import STEPPERS, Stepper

__all__ = ["AttentionLimitPDE", "PDESolution", "FluxOperator", "Stepper", "STEPPERS", "FORMS", "METHODS", "BACKENDS",
           "EXACT_MAX_NODES"]
