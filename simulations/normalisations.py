"""Figure normalisations: the Coifman-Lafon alpha = 0 (attention), 1/2, 1 kernels and the Sinkhorn (doubly
stochastic) kernel converge to Delta + c grad log p . grad with c = 2, 1, 0 and 1: errors against each limit,
the fitted drift coefficient versus eps (N points and N = infinity), and the Sinkhorn - alpha = 1/2 generator
difference, O(eps) (THEORY.md section 4). Writes results/normalisations.h5 and figures/normalisations.png.
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("normalisations"))
