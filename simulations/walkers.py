"""Figure walkers: the walkers' density (mu <- mu S_eps) against the Fokker-Planck solution over time.

Snapshots on the circle with p = 1 + 0.5 cos(2 pi x); the long-time walker density next to p and p^2 (it
converges to p^2 / int p^2, not p); L1 distances over time; the walker-vs-FP L1 error at a fixed time against N.

Writes results/walkers.h5 and figures/walkers.png.
"""

from continuum_attention.studies import script_main

if __name__ == "__main__":
    raise SystemExit(script_main("walkers"))
