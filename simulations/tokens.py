"""Figure tokens: self-consistent attention (blurring mean-shift) clusters; Gaussian tokens' covariance map.

Token trajectories from a mixture of four Gaussian bumps in 2-D collapsing onto one point per bump; Gaussian
tokens N(mu, Sigma) whose empirical covariance follows Sigma_(k+1) = A_k Sigma_k A_k, A_k = (I + eps
Sigma_k^-1)^-1 (THEORY.md section 5), within 3 standard errors over seeds; the finite-N bias at small eps.

Writes results/tokens.h5 and figures/tokens.png.
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("tokens"))
