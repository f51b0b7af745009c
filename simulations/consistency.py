"""Figure consistency: the error of one attention layer, (S_eps - I) f / (eps/2) against At f, versus N (several
eps) and versus eps (several N), on the circle (d = 1) and the 2-torus (d = 2) with non-uniform densities.

The fixed-eps bias (N = infinity, by quadrature) is drawn beside the measured errors with the theory slopes
N^-1/2, eps^1 and eps^-(1/2 + d/4) (THEORY.md section 4). Writes results/consistency.h5 and
figures/consistency.png.
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("consistency"))
