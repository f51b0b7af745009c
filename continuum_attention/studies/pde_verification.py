"""Verification of the PDE solver: analytic solutions, orders of accuracy, conservation, Theorem 4.

Reference solutions come from :mod:`continuum_attention.analytic`; orders are fitted on log-log plots
(findiff-style) against a fine reference of the same scheme.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .. import analytic
from ..compare import fit_slope
from ..densities import cosine, gaussian, uniform
from ..domains import Box, Torus
from ..grid import Grid
from ..pde import AttentionLimitPDE
from ..plotting import add_slope
from ._base import Check, StudyResult, register

NAME = "pde_verification"
T_FINAL = 0.01


def _rel_l2(approx, exact) -> float:
    approx, exact = np.ravel(approx), np.ravel(exact)
    return float(np.linalg.norm(approx - exact) / np.linalg.norm(exact))


def analytic_errors(n: int = 128, methods=("explicit", "crank-nicolson", "implicit-euler", "exact")) -> dict[str, float]:
    """Relative L2 errors against closed forms for uniform p (At = Laplacian) and the Gaussian density."""
    out: dict[str, float] = {}
    circle = Torus(1.0)
    grid = Grid(circle, n)
    H0 = lambda x: np.cos(2 * np.pi * x[:, 0]) + 0.5 * np.sin(6 * np.pi * x[:, 0])  # noqa: E731
    exact = analytic.heat_solution_fourier([1.0, 0.5], [[1], [3]], [1.0], T_FINAL, points=grid.points, kinds=["cos", "sin"])
    pde = AttentionLimitPDE(grid, uniform(circle))
    for method in methods:
        dt = None if method in ("explicit", "exact") else 2e-5 if method == "implicit-euler" else 2e-4
        sol = pde.solve(H0, T_FINAL, method=method, dt=dt, n_snapshots=2)
        out[f"periodic 1-D, {method}"] = _rel_l2(sol.values[-1], exact)

    torus2 = Torus([1.0, 2.0])
    grid2 = Grid(torus2, (48, 96))
    exact2 = analytic.fourier_mode_solution(grid2.points, [1, 1], [1.0, 2.0], T_FINAL)
    sol2 = AttentionLimitPDE(grid2, uniform(torus2)).solve(
        lambda x: analytic.fourier_mode_solution(x, [1, 1], [1.0, 2.0], 0.0), T_FINAL, n_snapshots=2
    )
    out["periodic 2-D, crank-nicolson"] = _rel_l2(sol2.values[-1], exact2)

    box = Box(0.0, 1.0)
    gridb = Grid(box, n)
    exactb = analytic.neumann_cosine_solution(gridb.points, 2, 0.0, 1.0, T_FINAL)
    solb = AttentionLimitPDE(gridb, uniform(box)).solve(
        lambda x: analytic.neumann_cosine_solution(x, 2, 0.0, 1.0, 0.0), T_FINAL, n_snapshots=2
    )
    out["Neumann 1-D, crank-nicolson"] = _rel_l2(solb.values[-1], exactb)

    s, t = 0.5, 0.05
    wide = Box(-8 * s, 8 * s)
    gridg = Grid(wide, 8 * n)
    solg = AttentionLimitPDE(gridg, gaussian(0.0, s**2, wide)).solve(lambda x: x[:, 0], t, n_snapshots=2)
    inner = np.abs(gridg.axes[0]) < 2 * s  # away from the walls' boundary layer
    out["Gaussian p, H0=x, interior"] = _rel_l2(solg.values[-1][inner], analytic.ou_linear_solution(gridg.axes[0][inner], t, s))
    return out


def _circle_problem():
    circle = Torus(1.0)
    return circle, cosine(circle, 0.5, 1), lambda x: np.cos(2 * np.pi * x[:, 0]) + 0.3 * np.sin(4 * np.pi * x[:, 0])


def space_order(ns=(32, 64, 128, 256), n_ref: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Errors of the features form for p = 1 + 0.5 cos(2 pi x) against a fine grid ("exact" in time)."""
    circle, dens, H0 = _circle_problem()
    ref = AttentionLimitPDE(Grid(circle, n_ref), dens).solve(H0, T_FINAL, method="crank-nicolson", dt=T_FINAL / 2000, n_snapshots=2)
    errors = []
    for n in ns:
        grid = Grid(circle, n)
        sol = AttentionLimitPDE(grid, dens).solve(H0, T_FINAL, method="crank-nicolson", dt=T_FINAL / 2000, n_snapshots=2)
        errors.append(_rel_l2(sol.values[-1], ref.interpolate(grid.points)))
    return np.asarray(ns, dtype=float), np.asarray(errors)


def time_order(method: str, steps=(5, 10, 20, 40), n: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Errors in time of one scheme against the exact matrix exponential on the same grid."""
    circle, dens, H0 = _circle_problem()
    pde = AttentionLimitPDE(Grid(circle, n), dens)
    ref = pde.solve(H0, T_FINAL, method="exact", n_snapshots=2).values[-1]
    dts = T_FINAL / np.asarray(steps, dtype=float)
    errors = [_rel_l2(pde.solve(H0, T_FINAL, method=method, dt=dt, n_snapshots=2).values[-1], ref) for dt in dts]
    return dts, np.asarray(errors)


def conservation(n: int = 128) -> dict[str, float]:
    """Relative drift of the p^2-weighted mean (features) and of the mass (walkers); walkers' minimum."""
    circle, dens, H0 = _circle_problem()
    grid = Grid(circle, n)
    w = dens.pdf(grid.points) ** 2
    feat = AttentionLimitPDE(grid, dens).solve(H0, 0.05, n_snapshots=5)
    means = [grid.integrate(v.ravel() * w) for v in feat.values]
    rho0 = lambda x: 1 + 0.9 * np.cos(2 * np.pi * (x[:, 0] - 0.3))  # noqa: E731
    walk = AttentionLimitPDE(grid, dens, form="walkers").solve(rho0, 0.05, method="implicit-euler", n_snapshots=5)
    masses = [grid.integrate(v) for v in walk.values]
    return {
        "features p^2-mean drift": float(np.max(np.abs(np.asarray(means) - means[0])) / abs(means[0])),
        "walkers mass drift": float(np.max(np.abs(np.asarray(masses) - masses[0])) / masses[0]),
        "walkers minimum": float(np.min(walk.values)),
    }


def heat_vs_features(n: int = 256) -> float:
    """Theorem 4 in 1-D: relative L2 difference between the heat form and the features form."""
    circle, dens, H0 = _circle_problem()
    grid = Grid(circle, n)
    a = AttentionLimitPDE(grid, dens, form="features").solve(H0, T_FINAL, n_snapshots=2).values[-1]
    b = AttentionLimitPDE(grid, dens, form="heat").solve(H0, T_FINAL, n_snapshots=2).values[-1]
    return _rel_l2(b, a)


def _figure(space, time_cn, time_ie, snapshot) -> Figure:
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    ax1.loglog(*space, "o-", label="features form, p = 1 + 0.5 cos 2 pi x")
    add_slope(ax1, space[0], -2.0, space[1][0] * 1.5, "h^2")
    ax1.set_xlabel("grid points n")
    ax1.set_ylabel("relative L2 error at t = 0.01")
    ax1.set_title("space: order 2")
    ax2.loglog(*time_cn, "o-", label="Crank-Nicolson")
    ax2.loglog(*time_ie, "s-", label="implicit Euler")
    add_slope(ax2, time_cn[0], 2.0, time_cn[1][0] * 1.5, "dt^2")
    add_slope(ax2, time_ie[0], 1.0, time_ie[1][0] * 1.5, "dt^1", ls=":")
    ax2.set_xlabel("dt")
    ax2.set_title("time: orders 2 and 1")
    x, values, times = snapshot
    for v, t in zip(values, times):
        ax3.plot(x, v.ravel(), label=f"t = {t:.3g}")
    ax3.set_xlabel("x")
    ax3.set_ylabel("H(x, t)")
    ax3.set_title("dH/dt = At H on the circle")
    for ax in (ax1, ax2, ax3):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return fig


@register(NAME, "PDE solver against closed forms; orders of accuracy; conservation", order=10)
def run(quick: bool = True, seed: int = 0) -> StudyResult:
    """Analytic comparisons (rel. L2 < 1e-3), orders (space 2, CN 2, IE 1, each +-0.2), conservation (1e-12)."""
    ns = (32, 64, 128, 256) if quick else (32, 64, 128, 256, 512, 1024)
    checks = [Check.below(NAME, f"rel. L2 error, {case}", err, 1e-3) for case, err in analytic_errors().items()]
    space = space_order(ns)
    time_cn = time_order("crank-nicolson")
    time_ie = time_order("implicit-euler", steps=(20, 40, 80, 160))
    checks += [
        Check.within(NAME, "space order (features, non-uniform p)", -fit_slope(*space)[0], 2.0, 0.2),
        Check.within(NAME, "time order, Crank-Nicolson", fit_slope(*time_cn)[0], 2.0, 0.2),
        Check.within(NAME, "time order, implicit Euler", fit_slope(*time_ie)[0], 1.0, 0.2),
    ]
    cons = conservation()
    checks += [
        Check.below(NAME, "features p^2-mean drift (relative)", cons["features p^2-mean drift"], 1e-12),
        Check.below(NAME, "walkers mass drift (relative)", cons["walkers mass drift"], 1e-12),
        Check.above(NAME, "walkers minimum density", cons["walkers minimum"], 0.0),
        Check.below(NAME, "Theorem 4: heat vs features (1-D, n=256)", heat_vs_features(), 1e-3),
    ]
    circle, dens, H0 = _circle_problem()
    snap = AttentionLimitPDE(Grid(circle, 256), dens).solve(H0, 0.02, n_snapshots=5)
    arrays = {
        "space_n": space[0], "space_error": space[1],
        "time_dt_cn": time_cn[0], "time_error_cn": time_cn[1],
        "time_dt_ie": time_ie[0], "time_error_ie": time_ie[1],
        "snapshot_x": snap.grid.axes[0], "snapshot_values": snap.values, "snapshot_times": snap.times,
    }
    config = {"t_final": T_FINAL, "space_n": list(ns), "density": dens.to_config()}
    fig = _figure(space, time_cn, time_ie, (snap.grid.axes[0], snap.values, snap.times))
    return StudyResult(NAME, checks, arrays, config, fig)
