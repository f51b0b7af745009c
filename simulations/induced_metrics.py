"""Reproduce figures/induced_metrics.png: particles follow the PDE of the metric their pseudo-metric induces.

(a) anisotropic Mahalanobis metric on the 2-torus (particles vs the PDE under g = M, and the Euclidean-metric
PDE that does not match); (b) the paper's Example 1, Q = K = I on the unit sphere (particles vs the
axisymmetric reduced PDE under g = g_round / 2), with the Legendre decay check of the reduced solver.
Usage: python simulations/induced_metrics.py [--quick | --full] [--out DIR] [--seed S] [--force]
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("induced_metrics"))
