"""Walkers: the adjoint dynamics mu <- mu S_eps against the Fokker-Planck equation; stationary density p^2.

THEORY.md section 2-3: a probability vector mu over the sample points, ``mu <- mu S_eps`` (a random walk on the
tokens, one layer = time eps/2), has a continuum density rho (w.r.t. dvol_g) that solves the Fokker-Planck
equation ``d rho/dt = Delta_g rho - div_g(2 rho grad log p)``. Its stationary state is proportional to p^2,
*not* p (the degree sum_j W_ij is itself proportional to p): attention's random walk over-concentrates on
dense regions.

Set-up: circle of length 1, ``p = 1 + 0.5 cos(2 pi x)``, walkers started from a von Mises bump at x = 0.5
(where p is smallest): ``mu_i ∝ rho0(x_i) / p(x_i)``. The walkers' density at the points is
``rho_hat(x_i) = mu_i N p(x_i)``; the L1 distance ``int |rho_hat - rho| dx`` is estimated by the Monte Carlo
mean of ``|rho_hat - rho| / p`` over the sample points (as in :func:`continuum_attention.compare.walker_error`).
The PDE side is the package's ``form="walkers"`` (mass-conservative finite volumes, 512 nodes), evaluated at
the particles' snapshot times t = K eps/2.

Checks: total walker mass conserved to 1e-12 at every layer; at t = 0.25 (about 10 relaxation times
1/lambda_1 ~ 1/41) the L1 distance to p^2 / int p^2 is below 0.1 and below 0.3 times the distance to p; the
walker-vs-FP L1 error at t = 0.02 decreases with N along eps ∝ N^(-2/7) (balanced bias and sampling error in
d = 1, THEORY.md section 4): fitted slope below -0.1 (theory -2/7 ~ -0.29 for the error, if bias and variance
are balanced). Figures show rho_hat at the points (it is smooth in x: mu_i follows the kernel degrees, a
kernel density estimate); a histogram of the walker mass would add the bin-count noise of the sample.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..compare import fit_slope
from ..densities import cosine, von_mises
from ..domains import Torus
from ..grid import Grid
from ..particles import ParticleSolver
from ..pde import AttentionLimitPDE
from ._base import Check, StudyResult, register

NAME = "walkers"
CIRCLE = Torus(1.0)
T_FIXED = 0.02
T_LONG = 0.25
GRID_NODES = 512


def density():
    """p(x) = 1 + 0.5 cos(2 pi x) on the circle of length 1."""
    return cosine(CIRCLE, 0.5, 1)


def initial_density():
    """rho0: a von Mises bump (kappa = 4) at x = 0.5, where p is smallest."""
    return von_mises(CIRCLE, 0.5, 4.0)


def _p2_normalised(dens, x: np.ndarray) -> np.ndarray:
    g = Grid(CIRCLE, 4096)
    return dens.pdf(x) ** 2 / g.integrate(dens.pdf(g.points) ** 2)


def l1_at_points(rho_hat: np.ndarray, rho: np.ndarray, q: np.ndarray) -> float:
    """Monte Carlo estimate of int |rho_hat - rho| dx from values at points drawn with density q."""
    return float(np.mean(np.abs(rho_hat - rho) / q))


def walker_run(N: int, eps: float, n_layers: int, seed: int = 0, n_snapshots: int = 2) -> dict[str, np.ndarray]:
    """Walkers on N points for K layers against the Fokker-Planck solution at the same times.

    Returns points, q (p at the points), times, mu (n_snap, N), rho_hat and rho (FP at the points), both
    (n_snap, N), the FP grid values, and the L1 distances per snapshot to the FP solution, to p^2/int p^2
    and to p.
    """
    dens, rho0 = density(), initial_density()
    x = dens.sample(N, seed)
    q = dens.pdf(x)
    mu0 = rho0.pdf(x) / q
    mu0 /= mu0.sum()
    sol = ParticleSolver(x, eps, domain=CIRCLE, mode="walkers").run(mu0, n_layers=n_layers, n_snapshots=n_snapshots,
                                                                   progress=False)
    t_final = n_layers * eps / 2.0
    pde = AttentionLimitPDE(Grid(CIRCLE, GRID_NODES), dens, form="walkers")
    fp = pde.solve(rho0.pdf, t_final, n_snapshots=n_layers + 1)  # one snapshot per layer time
    rho = np.array([fp.interpolate(x, index=int(k)) for k in sol.layers])
    rho_hat = sol.values * N * q[None, :]
    p2 = _p2_normalised(dens, x)
    return {
        "points": x[:, 0], "q": q, "times": sol.times, "layers": sol.layers, "mu": sol.values,
        "rho_hat": rho_hat, "rho": rho, "fp_grid": fp.values[sol.layers], "grid": fp.grid.axes[0],
        "mass_error": np.abs(sol.values.sum(axis=1) - 1.0),
        "l1_fp": np.array([l1_at_points(r, f, q) for r, f in zip(rho_hat, rho)]),
        "l1_p2": np.array([l1_at_points(r, p2, q) for r in rho_hat]),
        "l1_p": np.array([l1_at_points(r, q, q) for r in rho_hat]),
    }


def eps_for(N: int, t: float = T_FIXED, c: float = 0.05) -> tuple[float, int]:
    """eps ~ c N^(-2/7), adjusted so that t is a whole number K of layers: (eps, K)."""
    K = max(1, int(round(2 * t / (c * N ** (-2.0 / 7.0)))))
    return 2 * t / K, K


def error_vs_N(Ns=(500, 1000, 2000, 4000, 8000), seeds=(0, 1, 2, 3), t: float = T_FIXED) -> dict[str, np.ndarray]:
    """Walker-vs-FP L1 error at time t for each N (eps from :func:`eps_for`), per seed, and its fitted slope."""
    errors = np.empty((len(Ns), len(seeds)))
    eps_used = []
    for i, N in enumerate(Ns):
        eps, K = eps_for(N, t)
        eps_used.append(eps)
        for j, s in enumerate(seeds):
            errors[i, j] = walker_run(N, eps, K, s)["l1_fp"][-1]
    slope, se = fit_slope(Ns, errors.mean(1))
    return {"N": np.asarray(Ns), "eps": np.array(eps_used), "errors": errors, "slope": slope, "slope_se": se}


# ------------------------------------------------------------------------------------------- the study
def _figure(long, conv, cfg) -> Figure:
    fig = Figure(figsize=(14, 9), layout="constrained")
    axes = fig.subplots(2, 2)
    ax = axes[0, 0]
    t = long["times"]
    show = [int(np.argmin(np.abs(t - s))) for s in (0.0, 0.005, 0.02, 0.05, T_LONG)]
    order = np.argsort(long["points"])
    for c, k in enumerate(show):
        ax.plot(long["grid"], long["fp_grid"][k], "-", color=f"C{c}", lw=3, alpha=0.45,
                label=f"Fokker-Planck, t={t[k]:.3g}")
        ax.plot(long["points"][order][::8], long["rho_hat"][k][order][::8], ".", color=f"C{c}", ms=3)
    ax.set_xlabel("x")
    ax.set_ylabel("walker density rho")
    ax.set_title(f"walkers (dots: rho_hat = mu_i N p(x_i), every 8th point) vs Fokker-Planck (lines);\n"
                 f"N={cfg['N_long']}, eps={cfg['eps_long']}",
                 fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[0, 1]
    x = np.linspace(0, 1, 400)[:, None]
    dens = density()
    ax.plot(long["points"], long["rho_hat"][-1], "k.", ms=2, label=f"walkers at t={T_LONG}: rho_hat = mu_i N p(x_i)")
    ax.plot(long["grid"], long["fp_grid"][-1], ":", color="0.5", label="Fokker-Planck")
    ax.plot(x[:, 0], _p2_normalised(dens, x), "C3-", lw=2, label="p^2 / int p^2")
    ax.plot(x[:, 0], dens.pdf(x), "C0--", lw=2, label="p")
    ax.set_xlabel("x")
    ax.set_title(f"long time: L1 to p^2 = {long['l1_p2'][-1]:.3f}, L1 to p = {long['l1_p'][-1]:.3f}", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    ax.semilogx(t[1:], long["l1_fp"][1:], "k-", label="walkers vs Fokker-Planck")
    ax.semilogx(t[1:], long["l1_p2"][1:], "C3-", label="walkers vs p^2 / int p^2")
    ax.semilogx(t[1:], long["l1_p"][1:], "C0--", label="walkers vs p")
    ax.set_xlabel("t = K eps / 2")
    ax.set_ylabel("L1 distance")
    ax.set_title(f"over time (mass error max {long['mass_error'].max():.1e})", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[1, 1]
    N, e = conv["N"], conv["errors"]
    ax.errorbar(N, e.mean(1), yerr=e.std(1, ddof=1) / np.sqrt(e.shape[1]), fmt="o-", capsize=3,
                label=f"mean over {e.shape[1]} seeds, slope {conv['slope']:.2f}")
    ax.plot(np.repeat(N, e.shape[1]), e.ravel(), ".", color="0.6", ms=3)
    ax.plot(N, e.mean(1)[0] * (N / N[0]) ** (-2 / 7), "--", color="0.4", label="theory N^(-2/7)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N  (eps = 0.05 N^(-2/7), rounded to whole layers)")
    ax.set_ylabel(f"L1 walkers vs Fokker-Planck at t={T_FIXED}")
    ax.legend(fontsize=7)
    fig.suptitle("Walkers mu <- mu S_eps: Fokker-Planck dynamics, stationary density p^2 (not p)")
    return fig


@register(NAME, "Walkers against the Fokker-Planck equation; stationary density p^2", order=60)
def run(quick: bool = True, seed: int = 0) -> StudyResult:
    """Mass to 1e-12; long-time L1 to p^2 < 0.1 and < 0.3 x L1 to p; L1 error at t = 0.02 decreasing in N."""
    cfg = {"N_long": 2000 if quick else 8000, "eps_long": 1e-3, "Ns": [500, 1000, 2000, 4000, 8000] if quick
           else [500, 1000, 2000, 4000, 8000, 16000, 32000], "n_seeds": 4 if quick else 16}
    K_long = int(round(2 * T_LONG / cfg["eps_long"]))
    long = walker_run(cfg["N_long"], cfg["eps_long"], K_long, seed, n_snapshots=K_long + 1)
    conv = error_vs_N(cfg["Ns"], tuple(seed + s for s in range(cfg["n_seeds"])))
    checks = [
        Check.below(NAME, "walker mass error, max over layers (S row-stochastic: identity)", long["mass_error"].max(), 1e-12),
        Check.below(NAME, f"L1(walkers, p^2 normalised) at t={T_LONG}", long["l1_p2"][-1], 0.1),
        Check.below(NAME, "L1 to p^2 / L1 to p (normalised) at long time", long["l1_p2"][-1] / long["l1_p"][-1], 0.3),
        Check.below(NAME, f"fitted N-slope of walker-vs-FP L1 error at t={T_FIXED}", conv["slope"], -0.1),
    ]
    arrays = {"points": long["points"], "times": long["times"], "l1_fp_over_time": long["l1_fp"],
              "l1_p2_over_time": long["l1_p2"], "l1_p_over_time": long["l1_p"], "mass_error": long["mass_error"],
              "mu_final": long["mu"][-1], "fp_grid_final": long["fp_grid"][-1], "grid": long["grid"],
              "N_values": conv["N"], "eps_values": conv["eps"], "l1_errors_vs_N": conv["errors"]}
    config = {**cfg, "seed": seed, "K_long": K_long, "t_long": T_LONG, "t_fixed": T_FIXED, "grid_nodes": GRID_NODES,
              "density": density().to_config(), "initial_density": initial_density().to_config(),
              "eps_rule": "eps = 2 t / round(2 t / (0.05 N^(-2/7)))", "slope": conv["slope"], "slope_se": conv["slope_se"]}
    return StudyResult(NAME, checks, arrays, config, _figure(long, conv, cfg))
