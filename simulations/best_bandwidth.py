"""Figure best_bandwidth: the empirical best kernel scale eps*(N) and the consistency error at eps* versus N,
on the circle, the 2-torus and the 3-torus, with fitted exponents beside the theory -1/(3 + d/2)
(THEORY.md section 4). Writes results/best_bandwidth.h5 and figures/best_bandwidth.png.
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("best_bandwidth"))
