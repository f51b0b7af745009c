"""Figure spectrum: low eigenvalues of (I - S_eps)/(eps/2) against those of -At, and clusters.

First eigenvalues for uniform p on the circle (exactly 4 pi^2 k^2) and for p = 1 + 0.5 cos(2 pi x) (the PDE
operator), with stratified and i.i.d. samples; for a mixture of three von Mises bumps, three near-zero
eigenvalues followed by a spectral gap (the paper's clusters remark).

Writes results/spectrum.h5 and figures/spectrum.png.
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("spectrum"))
