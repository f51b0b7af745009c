"""Closed-form reference solutions for the attention-limit equation (THEORY.md sections 3 and 5).

Everything here depends on NumPy and SciPy only (not on the rest of the package), so that the PDE
solver and the particle code can be checked against it without circularity.

Conventions
-----------
* Time is the PDE time of THEORY.md section 1: one attention layer with scale ``eps`` is an Euler
  step of length ``eps / 2``, so ``K`` layers reach ``t = K eps / 2``.
* Features solve ``dH/dt = At H``. For uniform ``p`` (torus, interval, box) ``At`` is the Laplacian
  (``Delta_g = tr(M^-1 Hess)`` for a constant Mahalanobis metric ``M``), so the Green's function is the
  heat kernel of ``dK/dt = Delta K``: a Gaussian of variance ``2 t`` per axis.
* Point arguments. Where the geometry is a *scalar* (``lengths=1.0``, ``lower=0.0``) or ``dim=1``, the
  problem is one-dimensional and point arrays hold positions: any shape, broadcast with NumPy rules
  (``x[:, None]`` against ``y[None, :]`` gives a matrix). Where the geometry is a *sequence* of length
  ``d`` (``lengths=[1.0, 2.0]``), the last axis of a point array holds the ``d`` coordinates: shapes
  ``(d,)`` or ``(..., d)``, leading axes broadcast.
* ``t`` may be an array; it broadcasts against the leading (point) shape of the result. Kernels need
  ``t > 0``; solutions accept ``t >= 0`` (``t = 0`` returns the initial data).
* Invalid input (NaN or infinite values, ``t`` out of range, non-positive lengths, variances or
  ``eps``, ``lower >= upper``, wrong shapes) raises ``ValueError`` naming the parameter.

Accuracy
--------
Periodic and Neumann kernels are sums of positive terms when evaluated by images and are
well-conditioned by Fourier/cosine series once ``tau = 4 pi^2 t / L^2`` (period ``L``) exceeds about 2.
The automatic choice uses images for ``tau <= 2`` and the series beyond, with enough terms that the
neglected ones are below ``exp(-40)`` of the leading one: about 1e-14 relative error or better. The
Dirichlet kernel vanishes at the walls, so near them only an absolute accuracy (relative to the
kernel's maximum) of about 1e-14 is available.
"""

from .fourier import (
    fourier_decay_rate,
    fourier_mode_solution,
    heat_solution_fourier,
    neumann_cosine_solution,
)
from .gaussian_kernel import (
    gaussian_features_linear,
    gaussian_features_polynomial,
    gaussian_kernel_eigenfunction,
    gaussian_kernel_eigenvalue,
    gaussian_kernel_law,
    gaussian_kernel_moments,
    gaussian_kernel_operator,
)
from .gaussian_tokens import (
    gaussian_tokens_evolve,
    gaussian_tokens_map,
)
from .heat_kernels import (
    dirichlet_heat_kernel,
    free_heat_kernel,
    neumann_heat_kernel,
    periodic_heat_kernel,
    periodic_heat_kernel_fourier,
    wrapped_gaussian,
)
from .ornstein_uhlenbeck import (
    hermite_coefficients,
    hermite_eigenfunction,
    ou_eigenvalue,
    ou_linear_solution,
    ou_solution_from_hermite,
    ou_transition_kernel,
)
from .walkers import (
    walkers_stationary,
)

__all__ = [
    # heat kernels
    "free_heat_kernel",
    "wrapped_gaussian",
    "periodic_heat_kernel_fourier",
    "periodic_heat_kernel",
    "neumann_heat_kernel",
    "dirichlet_heat_kernel",
    # uniform density: Fourier / cosine modes
    "fourier_decay_rate",
    "fourier_mode_solution",
    "heat_solution_fourier",
    "neumann_cosine_solution",
    # Gaussian density: Ornstein-Uhlenbeck
    "ou_eigenvalue",
    "hermite_eigenfunction",
    "hermite_coefficients",
    "ou_solution_from_hermite",
    "ou_linear_solution",
    "ou_transition_kernel",
    # fixed eps, N -> infinity
    "gaussian_kernel_law",
    "gaussian_kernel_moments",
    "gaussian_kernel_operator",
    "gaussian_features_polynomial",
    "gaussian_features_linear",
    "gaussian_kernel_eigenvalue",
    "gaussian_kernel_eigenfunction",
    "gaussian_tokens_map",
    "gaussian_tokens_evolve",
    # walkers
    "walkers_stationary",
]
