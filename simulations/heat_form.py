"""Figure heat_form: Theorem 4, the heat form under g~ = p^(4/(n-2)) g against the features form.

Difference between an independent discretisation of F Delta_g~ and the drift-diffusion (features) form versus
the grid spacing in 1-D (circle) and 3-D (3-torus), converging at h^2; the package's form='heat' equal to
form='features' to round-off; the conformal factor F = p^(4/(n-2)) (where heat conducts fast and slow) for a
1-D density and a slice of a 3-D one; n = 2 refused with an explanation.

Writes results/heat_form.h5 and figures/heat_form.png.
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("heat_form"))
