"""The attention operator S_eps (matrix-free, truncated, normalisations, Numba kernels).

See :class:`AttentionOperator`; conventions in THEORY.md section 1 (one layer = Euler step of length eps/2).
"""

from .operator import AUTO_SPARSE_FRACTION, AUTO_SPARSE_MIN_N, DENSE_BUDGET, DENSE_LIMIT, AttentionOperator

__all__ = ["AttentionOperator", "DENSE_LIMIT", "DENSE_BUDGET", "AUTO_SPARSE_FRACTION", "AUTO_SPARSE_MIN_N"]
