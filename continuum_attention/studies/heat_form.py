"""Theorem 4: the attention limit as a heat equation under the conformal metric g~ = p^(4/(n-2)) g.

THEORY.md section 3: for n != 2, ``At = F Delta_g~`` with ``g~ = F g`` and ``F = p^(4/(n-2))`` (n = 1:
``F = p^-4``; n = 3: ``F = p^4``). Heat "conducts" at rate F in the geometry of g~: fast where F is large (for
n = 1 where p is small, for n = 3 where p is large). For n = 2 a conformal change leaves the Laplacian's
principal part unchanged and no such form exists; the PDE solver refuses ``form="heat"`` there.

What is measured, on a circle (n = 1) and a 3-torus (n = 3), both with a non-uniform density:

1. The package's ``form="heat"`` against ``form="features"`` (same grid). Their nodal coefficients are
   algebraically equal (``sqrt|g~| g~^-1 = p^2 sqrt|g| g^-1`` and ``F / sqrt|g~| = 1 / (p^2 sqrt|g|)``), so
   the difference is round-off at every h: this checks the identity, not a rate.
2. An *independent* discretisation of ``F Delta_g~`` built here, against the package's features form; both are
   second order, so their difference must shrink like h^2:

   * n = 1: the heat equation in the g~-arclength ``s = int p^-2 dx``, where ``Delta_g~ = d^2/ds^2`` exactly:
     ``dH/dt = F d^2H/ds^2`` on a *uniform grid in s* (nodes crowd, in x, where p is small), compared with
     the features solution interpolated (periodic cubic spline, O(h^4)) at the nodes x(s_i);
   * n = 3: the divergence form ``(F / sqrt|g~|) d_i(sqrt|g~| g~^ij d_j H)`` with the g~ coefficients
     evaluated exactly at the cell faces (from the density there) instead of averaged from the nodes.

   Both sides are integrated exactly in time (``expm_multiply``), so the difference is purely spatial.
   The difference is the max norm at t_final relative to max |H|, against the grid spacing h; the fitted
   slope must be 2 +- 0.3 and the difference at the finest grid below 5e-3 (quick mode: 4e-4 at n = 256
   in 1-D, 3e-3 at 24^3 in 3-D).
3. The n = 2 refusal: ``AttentionLimitPDE(..., form="heat")`` on a 2-D grid raises ValueError with an
   explanation.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from scipy.interpolate import CubicSpline
from scipy.sparse.linalg import expm_multiply

from ..compare import fit_slope
from ..densities import cosine, mixture
from ..domains import Torus
from ..grid import Grid
from ..pde import AttentionLimitPDE
from ..plotting import add_slope
from ._base import Check, StudyResult, register

NAME = "heat_form"
T_FINAL_1D = 0.02
T_FINAL_3D = 0.01


# --------------------------------------------------------------------------------------------- problems
def density_1d():
    """p(x) = 1 + 0.6 cos(2 pi x) on the circle of length 1 (F = p^-4 spans a factor ~ 250)."""
    return cosine(Torus(1.0), 0.6, 1)


def density_3d():
    """A genuinely 3-D density on the unit 3-torus: an equal mixture of two cosine waves (F = p^4)."""
    T3 = Torus([1.0, 1.0, 1.0])
    return mixture([cosine(T3, 0.5, (1, 1, 0)), cosine(T3, 0.5, (0, 1, -1), phase=1.0)])


def initial_1d(x: np.ndarray) -> np.ndarray:
    return np.cos(2 * np.pi * x[:, 0]) + 0.5 * np.sin(4 * np.pi * x[:, 0])


def initial_3d(x: np.ndarray) -> np.ndarray:
    return np.cos(2 * np.pi * x[:, 0]) + 0.5 * np.sin(2 * np.pi * (x[:, 1] + x[:, 2]))


def conformal_factor(p: np.ndarray, n: int) -> np.ndarray:
    """F = p^(4/(n-2)) of Theorem 4 (ValueError for n = 2)."""
    if n == 2:
        raise ValueError("the conformal factor p^(4/(n-2)) does not exist for n = 2")
    return np.asarray(p, dtype=np.float64) ** (4.0 / (n - 2))


# ------------------------------------------------------------------------------------ discretisations
def _evolve(L: sp.spmatrix, u0: np.ndarray, t: float, scale: np.ndarray | None = None) -> np.ndarray:
    """exp(t L) u0, exact in time.

    With ``scale`` = c > 0 such that L = diag(c) A with A symmetric (true of every operator here), small
    systems (<= 1100 nodes) use the symmetric eigendecomposition of C^(1/2) A C^(1/2) (fast even when
    t ||L|| is large, as for the stiff 1-D heat equation); otherwise ``expm_multiply`` (Al-Mohy & Higham).
    """
    u0 = np.ravel(u0)
    if scale is None or L.shape[0] > 1100:
        return expm_multiply(sp.csc_matrix(L) * t, u0)
    c = np.sqrt(np.asarray(scale, dtype=np.float64).ravel())
    A = (sp.diags(1.0 / c**2) @ L).toarray()
    B = c[:, None] * (0.5 * (A + A.T)) * c[None, :]
    lam, V = np.linalg.eigh(B)
    return c * (V @ (np.exp(t * lam) * (V.T @ (u0 / c))))


def _features(density, H0, n: int, t: float) -> tuple[Grid, np.ndarray]:
    grid = Grid(density.domain, n)
    pde = AttentionLimitPDE(grid, density, form="features")
    return grid, _evolve(pde.matrix(), H0(grid.points), t, 1.0 / pde.weights).reshape(grid.shape)


def package_identity(density, H0, n: int, t: float) -> float:
    """max |heat - features| / max |features| for the package's two forms on one grid (round-off)."""
    grid = Grid(density.domain, n)
    u0 = H0(grid.points)
    feat_pde = AttentionLimitPDE(grid, density, form="features")
    feat = _evolve(feat_pde.matrix(), u0, t, 1.0 / feat_pde.weights)
    heat = _evolve(AttentionLimitPDE(grid, density, form="heat").matrix(), u0, t, 1.0 / feat_pde.weights)
    return float(np.max(np.abs(heat - feat)) / np.max(np.abs(feat)))


def _arclength_table(density, n_fine: int = 1 << 17) -> tuple[np.ndarray, np.ndarray]:
    """x and s(x) = int_0^x p^-2 on a fine periodic table (Simpson-accurate cumulative trapezoid)."""
    x = np.linspace(0.0, 1.0, n_fine + 1)
    f = density.pdf(x[:, None] % 1.0) ** -2.0
    s = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(x))])
    return x, s


def heat_arclength_1d(density, H0, n: int, t: float) -> tuple[np.ndarray, np.ndarray]:
    """dH/dt = F d^2H/ds^2 on n uniform nodes in the g~-arclength s (n = 1, F = p^-4).

    Returns the nodes' x positions x(s_i) and H(x(s_i), t).
    """
    xt, st = _arclength_table(density)
    S = st[-1]
    ds = S / n
    s = ds * np.arange(n)
    x = np.interp(s, st, xt)
    F = conformal_factor(density.pdf(x[:, None]), 1)
    i = np.arange(n)
    lap = sp.csr_matrix((np.concatenate([np.full(n, -2.0), np.ones(n), np.ones(n)]),
                         (np.tile(i, 3), np.concatenate([i, (i + 1) % n, (i - 1) % n]))), shape=(n, n)) / ds**2
    return x, _evolve(sp.diags(F) @ lap, H0(x[:, None]), t, F)


def heat_faces(density, H0, n: int, t: float) -> tuple[Grid, np.ndarray]:
    """(F / sqrt|g~|) d_i(sqrt|g~| g~^ii d_i H) with g~ = F I evaluated exactly at the faces (any n != 2)."""
    grid = Grid(density.domain, n)
    d = grid.dim
    F_nodes = conformal_factor(density.pdf(grid.points), d)
    idx = np.arange(grid.size).reshape(grid.shape)
    rows, cols, vals = [], [], []
    for a in range(d):
        face = grid.face_points(a).reshape(-1, d)
        Ff = conformal_factor(density.pdf(grid.domain.wrap(face)), d)
        c = Ff ** (d / 2.0) / Ff / grid.spacing[a] ** 2  # sqrt|g~| g~^aa = F^(d/2) F^-1 at the face
        lo, up = idx.ravel(), np.roll(idx, -1, axis=a).ravel()
        # flux c (H_up - H_lo) enters lo with +, up with -
        rows += [lo, lo, up, up]
        cols += [up, lo, up, lo]
        vals += [c, -c, -c, c]
    D = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(grid.size, grid.size)).tocsr()
    c = F_nodes / F_nodes ** (d / 2.0)  # F / sqrt|g~| at the nodes
    return grid, _evolve(sp.diags(c) @ D, H0(grid.points), t, c).reshape(grid.shape)


# ------------------------------------------------------------------------------------- measurements
def heat_vs_features_1d(ns=(32, 64, 128, 256), t: float = T_FINAL_1D) -> dict[str, np.ndarray]:
    """n = 1: arclength heat equation against the features form, and the package identity, per grid size."""
    dens = density_1d()
    diff, ident = [], []
    for n in ns:
        x, heat = heat_arclength_1d(dens, initial_1d, n, t)
        grid, feat = _features(dens, initial_1d, n, t)
        spline = CubicSpline(np.append(grid.axes[0], 1.0), np.append(feat, feat[0]), bc_type="periodic")
        diff.append(np.max(np.abs(heat - spline(x))) / np.max(np.abs(feat)))
        ident.append(package_identity(dens, initial_1d, n, t))
    return {"h": 1.0 / np.asarray(ns, float), "difference": np.array(diff), "identity": np.array(ident)}


def heat_vs_features_3d(ns=(8, 12, 16, 24), t: float = T_FINAL_3D) -> dict[str, np.ndarray]:
    """n = 3: face-evaluated heat form against the features form, and the package identity, per grid size."""
    dens = density_3d()
    diff, ident = [], []
    for n in ns:
        _, heat = heat_faces(dens, initial_3d, n, t)
        _, feat = _features(dens, initial_3d, n, t)
        diff.append(np.max(np.abs(heat - feat)) / np.max(np.abs(feat)))
        ident.append(package_identity(dens, initial_3d, n, t))
    return {"h": 1.0 / np.asarray(ns, float), "difference": np.array(diff), "identity": np.array(ident)}


def n2_refusal() -> tuple[bool, str]:
    """(True, message) when form='heat' on a 2-D grid raises ValueError whose message explains n = 2."""
    T2 = Torus([1.0, 1.0])
    try:
        AttentionLimitPDE(Grid(T2, 8), cosine(T2, 0.5, (1, 0)), form="heat")
    except ValueError as exc:
        msg = str(exc)
        return ("n = 2" in msg or "dim != 2" in msg or "n=2" in msg), msg
    return False, "no error raised"


# ------------------------------------------------------------------------------------------ the study
def _figure(r1, r3, msg, ns1, ns3) -> Figure:
    fig = Figure(figsize=(15, 8.5), layout="constrained")
    axes = fig.subplots(2, 3)
    for ax, r, title in ((axes[0, 0], r1, "n = 1 (circle): arclength heat eq. vs features"),
                         (axes[0, 1], r3, "n = 3 (3-torus): face-evaluated heat form vs features")):
        ax.loglog(r["h"], r["difference"], "o-", label="independent heat form vs features")
        ax.loglog(r["h"], np.maximum(r["identity"], 1e-17), "s--", color="C3",
                  label="package form='heat' vs 'features' (round-off)")
        add_slope(ax, r["h"], 2.0, r["difference"][0] * 1.5, "h^2")
        slope, _ = fit_slope(r["h"], r["difference"])
        ax.set_title(f"{title}\nfitted slope {slope:.2f}", fontsize=9)
        ax.set_xlabel("grid spacing h")
        ax.set_ylabel("max |H_heat - H_features| / max |H|  at t_final")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)

    dens1 = density_1d()
    x = np.linspace(0, 1, 400)
    p = dens1.pdf(x[:, None])
    ax = axes[0, 2]
    ax.semilogy(x, conformal_factor(p, 1), "C1-", lw=2, label="F = p^-4 (heat rate)")
    ax.semilogy(x, p, "k--", label="p")
    xs, Hs = heat_arclength_1d(dens1, initial_1d, 48, T_FINAL_1D)
    ax.semilogy(xs, np.full_like(xs, 0.05), "|", color="C0", ms=10, label="uniform-in-s nodes (48)")
    ax.set_xlabel("x")
    ax.set_title("n = 1: conformal factor F = p^-4\nfast conduction where p is small", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    grid, feat = _features(dens1, initial_1d, 256, T_FINAL_1D)
    ax.plot(grid.axes[0], initial_1d(grid.points), "0.6", label="H0")
    ax.plot(grid.axes[0], feat, "k-", label=f"features form, t={T_FINAL_1D}")
    ax.plot(xs, Hs, "C0o", ms=4, label="heat eq. in arclength s (48 nodes)")
    ax.set_xlabel("x")
    ax.set_ylabel("H")
    ax.set_title("n = 1: the two forms at t_final", fontsize=9)
    ax.legend(fontsize=7)

    dens3 = density_3d()
    g = Grid(dens3.domain, 64)
    ax_, ay_ = g.axes[0], g.axes[1]
    X, Y = np.meshgrid(ax_, ay_, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel(), np.zeros(X.size)], 1)
    F3 = conformal_factor(dens3.pdf(pts), 3).reshape(X.shape)
    ax = axes[1, 1]
    im = ax.imshow(F3.T, origin="lower", extent=[0, 1, 0, 1], norm=LogNorm(), cmap="inferno")
    fig.colorbar(im, ax=ax, label="F = p^4")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("n = 3: conformal factor F = p^4 on the slice z = 0\nfast conduction where p is large", fontsize=9)

    ax = axes[1, 2]
    ax.axis("off")
    import textwrap

    text = "n = 2 is refused: AttentionLimitPDE(grid2d, p, form='heat') raises\n\nValueError: " + "\n".join(
        textwrap.wrap(msg, 60))
    text += (f"\n\nGrids: n=1 {list(ns1)} nodes, n=3 {list(ns3)} per axis.\n"
             "Both sides integrated exactly in time (expm_multiply).")
    ax.text(0.0, 1.0, text, va="top", ha="left", fontsize=8, family="monospace", transform=ax.transAxes)
    fig.suptitle("Theorem 4: At = F Delta_g~,  g~ = p^(4/(n-2)) g,  F = p^(4/(n-2))")
    return fig


@register(NAME, "Theorem 4: heat form under g~ = p^(4/(n-2)) g against the features form", order=50)
def run(quick: bool = True, seed: int = 0) -> StudyResult:
    """Difference slopes 2 +- 0.3 in 1-D and 3-D, finest differences < 5e-3, identity to 1e-10, n = 2 refused.

    Deterministic (no sampling): ``seed`` is unused.
    """
    ns1 = (32, 64, 128, 256) if quick else (32, 64, 128, 256, 512, 1024)
    ns3 = (8, 12, 16, 24) if quick else (8, 12, 16, 24, 32, 48)
    r1 = heat_vs_features_1d(ns1)
    r3 = heat_vs_features_3d(ns3)
    ok2, msg = n2_refusal()
    checks = []
    for tag, r in (("1-D", r1), ("3-D", r3)):
        slope, _ = fit_slope(r["h"], r["difference"])
        checks.append(Check.within(NAME, f"heat-vs-features slope in h, {tag}", slope, 2.0, 0.3))
        checks.append(Check.below(NAME, f"heat-vs-features difference at finest h, {tag}", r["difference"][-1], 5e-3))
        checks.append(Check.below(NAME, f"package heat == features (algebraic identity, round-off), {tag}", r["identity"].max(), 1e-10))
    checks.append(Check.equal(NAME, "n = 2 heat form refused with ValueError", float(ok2), 1.0))
    arrays = {
        "h_1d": r1["h"], "difference_1d": r1["difference"], "identity_1d": r1["identity"],
        "h_3d": r3["h"], "difference_3d": r3["difference"], "identity_3d": r3["identity"],
    }
    config = {
        "density_1d": density_1d().to_config(), "density_3d": density_3d().to_config(),
        "initial_1d": "cos(2 pi x) + 0.5 sin(4 pi x)", "initial_3d": "cos(2 pi x) + 0.5 sin(2 pi (y + z))",
        "t_final_1d": T_FINAL_1D, "t_final_3d": T_FINAL_3D, "ns_1d": list(ns1), "ns_3d": list(ns3),
        "n2_message": msg,
    }
    return StudyResult(NAME, checks, arrays, config, _figure(r1, r3, msg, ns1, ns3))
