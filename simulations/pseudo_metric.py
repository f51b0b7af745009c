"""Reproduce figures/pseudo_metric.png: a general pseudo-metric (Theorem 5 / Example 3).

f = -x^T Q^T K y on the unit sphere with -Q^T K = P^T diag(a) P: the nearest point A_x, the zeroth-order
error |S_eps H(x) - H(A_x)| versus eps (slope 1) from a deterministic quadrature of the kernel integral, and
the particle operator against that quadrature within sampling error.
Usage: python simulations/pseudo_metric.py [--quick | --full] [--out DIR] [--seed S] [--force]
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("pseudo_metric"))
