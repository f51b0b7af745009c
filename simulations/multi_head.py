"""Figure multi_head: two attention heads with different Mahalanobis metrics on the 2-torus.

The particle output sum_h (S_eps^(h))^K H0 W_h against the sum of the heads' PDE solutions under metrics
M_1, M_2 (images of the sum and of the single-head alternatives, particles against PDE, error against N).

Writes results/multi_head.h5 and figures/multi_head.png.
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("multi_head"))
