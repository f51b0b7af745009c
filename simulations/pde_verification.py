"""Figure pde_verification: the PDE solver against closed forms, its orders of accuracy and conservation.

Writes results/pde_verification.h5 and figures/pde_verification.png.
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("pde_verification"))
