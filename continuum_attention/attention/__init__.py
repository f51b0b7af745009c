"""The attention operator S_eps (matrix-free, truncated, normalisations, Numba kernels).

See :class:`AttentionOperator`; conventions in THEORY.md section 1 (one layer = Euler step of length eps/2).
"""

from .operator import DENSE_LIMIT, AttentionOperator

__all__ = ["AttentionOperator", "DENSE_LIMIT"]
