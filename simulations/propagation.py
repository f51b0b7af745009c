"""Figure propagation: K attention layers against the attention-limit PDE at the same time t = K eps / 2.

Snapshots side by side (curves on the circle for the issue-3 problem, images on the 2-torus) and the error
versus N along eps*(N) = c N^(-2/7) with eps/2 dividing t exactly. Writes results/propagation.h5 and
figures/propagation.png.
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("propagation"))
