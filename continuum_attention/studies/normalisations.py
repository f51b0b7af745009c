"""Normalisations of the kernel and their limits (THEORY.md section 4, Coifman-Lafon alpha; Sinkhorn).

With q the degrees, the alpha-normalised kernel k(x, y) / (q(x)^alpha q(y)^alpha), then row-normalised, has
(S - I)/(eps/2) -> L_c = Delta + c grad log p . grad with drift coefficient c = 2 (1 - alpha):

* alpha = 0 (attention): c = 2 (At);  alpha = 1/2: c = 1 (Fokker-Planck with stationary p);  alpha = 1: c = 0;
* Sinkhorn (doubly stochastic, diag(u) K diag(u)): u ~ q^-1/2 to leading order, so it acts like alpha = 1/2
  (c = 1); the generators of the two differ by O(eps).

Measured on the circle (p = 1 + 0.5 cos 2 pi x, f = sin 2 pi x) in two ways:

1. N sample points, the package's :class:`AttentionOperator` with ``normalization="row" | ("alpha", a) |
   "sinkhorn"``: the RMS error of (S f - f)/(eps/2) against L_c f for c in {2, 1, 0}, and the fitted drift
   coefficient c_hat = <G - Delta f, g> / <g, g> (G the discrete generator, g = grad log p . grad f; both
   from :func:`compare.limit_operator`).
2. N = infinity: the same operators as integrals on a fine periodic grid (FFT convolutions with the
   minimum-image Gaussian; Sinkhorn by the same damped symmetric iteration on the grid), which isolates the
   O(eps) bias: c_hat_inf(eps) -> c linearly, and ||G_sinkhorn - G_alpha=1/2|| = O(eps).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import t as t_dist
from matplotlib.figure import Figure

from ..attention import AttentionOperator
from ..compare import fit_slope, limit_operator
from ..densities import uniform
from ..plotting import add_slope
from ._base import Check, StudyResult, register
from .consistency import Case, circle_case

NAME = "normalisations"

#: name -> (AttentionOperator normalization, drift coefficient c of its limit Delta + c grad log p . grad)
NORMALISATIONS = {
    "alpha=0 (attention)": ("row", 2.0),
    "alpha=1/2": (("alpha", 0.5), 1.0),
    "alpha=1": (("alpha", 1.0), 0.0),
    "Sinkhorn": ("sinkhorn", 1.0),
}
C_VALUES = (2.0, 1.0, 0.0)
#: the O(eps) slope of the Sinkhorn - alpha=1/2 difference is fitted where it is asymptotic (it bends over above)
SINKHORN_FIT_MAX = 2e-3

__all__ = ["NORMALISATIONS", "C_VALUES", "measure", "continuum", "run"]


def _parts(case: Case, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Delta f and g = grad log p . grad f at x (At f = Delta f + 2 g)."""
    At = limit_operator(case.f, case.density, x)
    lap = limit_operator(case.f, uniform(case.domain), x)
    return lap, (At - lap) / 2


def _scores(gens: dict, lap: np.ndarray, g: np.ndarray, weights: np.ndarray) -> dict:
    """Errors against L_c for every c, fitted c_hat, and the Sinkhorn - alpha=1/2 generator difference."""
    w = weights / weights.sum()
    rms = lambda v: float(np.sqrt(np.sum(w * v**2)))  # noqa: E731
    out = {"errors": np.array([[rms(G - lap - c * g) for c in C_VALUES] for G in gens.values()]),
           "c_hat": np.array([float(np.sum(w * (G - lap) * g) / np.sum(w * g * g)) for G in gens.values()])}
    out["sinkhorn_vs_half"] = rms(gens["Sinkhorn"] - gens["alpha=1/2"]) / rms(lap + g)
    return out


def measure(case: Case, N: int, eps_values, seeds) -> dict:
    """For every eps and seed: errors[e, s, n, c], c_hat[e, s, n], sinkhorn_vs_half[e, s] on N points."""
    E = np.empty((len(eps_values), len(seeds), len(NORMALISATIONS), len(C_VALUES)))
    C = np.empty((len(eps_values), len(seeds), len(NORMALISATIONS)))
    D = np.empty((len(eps_values), len(seeds)))
    iterations = np.zeros((len(eps_values), len(seeds)), dtype=int)
    for s, seed in enumerate(seeds):
        x = case.density.sample(int(N), seed)
        fx = case.f(x)
        lap, g = _parts(case, x)
        for e, eps in enumerate(eps_values):
            gens = {}
            for name, (norm, _) in NORMALISATIONS.items():
                op = AttentionOperator(x, eps, domain=case.domain, normalization=norm)
                gens[name] = (op.apply(fx) - fx) / (eps / 2)
                if norm == "sinkhorn":
                    iterations[e, s] = op.sinkhorn_iterations
            sc = _scores(gens, lap, g, np.ones(len(x)))
            E[e, s], C[e, s], D[e, s] = sc["errors"], sc["c_hat"], sc["sinkhorn_vs_half"]
    return {"errors": E, "c_hat": C, "sinkhorn_vs_half": D, "sinkhorn_iterations": iterations}


def continuum(case: Case, eps_values, nodes: int = 4096, tol: float = 1e-13) -> dict:
    """The N = infinity operators on a periodic grid (1-D): c_hat_inf[e, n], errors_inf[e, n, c], and
    ||G_sinkhorn - G_alpha=1/2|| / ||L_1 f|| per eps (p-weighted norms)."""
    if case.dim != 1:
        raise ValueError("continuum() is written for the circle (d = 1)")
    L = float(case.domain.lengths[0])
    x = (np.arange(nodes) * L / nodes)[:, None]
    p = case.density.pdf(x)
    F = case.f(x)
    lap, g = _parts(case, x)
    r = np.minimum(x[:, 0], L - x[:, 0])
    C, E, D = [], [], []
    for eps in eps_values:
        if L / nodes > 0.4 * np.sqrt(eps):
            raise ValueError(f"grid too coarse for eps={eps:g}")
        kh = np.fft.rfft(np.exp(-(r**2) / (2 * eps)))
        K = lambda v: np.fft.irfft(np.fft.rfft(v) * kh, n=nodes)  # noqa: E731
        q = K(p)
        gens = {}
        for name, (norm, _) in NORMALISATIONS.items():
            if norm == "sinkhorn":
                log_u = -0.5 * np.log(q)
                for _ in range(10000):
                    log_ku = np.log(K(np.exp(log_u) * p))
                    if np.max(np.abs(np.expm1(log_u + log_ku))) <= tol:
                        break
                    log_u = 0.5 * (log_u - log_ku)
                weight = np.exp(log_u) * p
            else:
                a = 0.0 if norm == "row" else norm[1]
                weight = p * q ** (-a)
            gens[name] = (K(weight * F) / K(weight) - F) / (eps / 2)
        sc = _scores(gens, lap, g, p)
        C.append(sc["c_hat"])
        E.append(sc["errors"])
        D.append(sc["sinkhorn_vs_half"])
    return {"c_hat": np.array(C), "errors": np.array(E), "sinkhorn_vs_half": np.array(D)}


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(N=8000, eps=[1e-3, 2e-3, 4e-3], seeds=4, eps_inf=np.geomspace(1e-4, 1e-2, 9))
    # not 8e-3: there attention's O(eps) bias has moved its drift to c_hat = 1.23, closer to 1 than to its limit 2
    # (reproduce --full, 2026-12-02), so "the own limit is the closest" stops being a test of the limit
    return dict(N=16000, eps=[5e-4, 1e-3, 2e-3, 4e-3], seeds=6, eps_inf=np.geomspace(1e-4, 1e-2, 17))


def _figure(sizes, fin, inf) -> Figure:
    fig = Figure(figsize=(15, 4.4), layout="constrained")
    ax_t, ax_c, ax_d = fig.subplots(1, 3)
    names = list(NORMALISATIONS)
    E = fin["errors"].mean(axis=1)  # (eps, norm, c)
    e0 = 0
    width = 0.25
    xs = np.arange(len(names))
    for k, c in enumerate(C_VALUES):
        ax_t.bar(xs + (k - 1) * width, E[e0, :, k], width, label=f"against Delta + {c:g} grad log p . grad")
    ax_t.set_xticks(xs, [f"{n}\n(limit c = {NORMALISATIONS[n][1]:g})" for n in names], fontsize=7)
    ax_t.set_ylabel("RMS of (S f - f)/(eps/2) - L_c f")
    ax_t.set_title(f"N = {sizes['N']}, eps = {sizes['eps'][e0]:g}: each is closest to its own limit", fontsize=9)
    for n, name in enumerate(names):
        col = f"C{n}"
        ax_c.semilogx(sizes["eps_inf"], inf["c_hat"][:, n], "-", color=col, label=f"{name}, N = inf")
        ax_c.errorbar(sizes["eps"], fin["c_hat"][:, :, n].mean(axis=1), yerr=fin["c_hat"][:, :, n].std(axis=1),
                      fmt="o", color=col, capsize=2, ms=4, label=f"{name}, N = {sizes['N']}")
    for c in (2.0, 1.0, 0.0):
        ax_c.axhline(c, color="k", ls="--", lw=0.8)
    ax_c.set_xlabel("kernel scale eps")
    ax_c.set_ylabel("fitted drift coefficient c_hat")
    ax_c.set_title("drift c in Delta + c grad log p . grad (dashed: 2, 1, 0)", fontsize=9)
    ax_d.loglog(sizes["eps_inf"], inf["sinkhorn_vs_half"], "k-", lw=2, label="N = inf (quadrature)")
    ax_d.errorbar(sizes["eps"], fin["sinkhorn_vs_half"].mean(axis=1), yerr=fin["sinkhorn_vs_half"].std(axis=1),
                  fmt="o", capsize=2, label=f"N = {sizes['N']}")
    add_slope(ax_d, sizes["eps_inf"], 1.0, inf["sinkhorn_vs_half"][0] * 2, "theory eps^1")
    ax_d.set_xlabel("kernel scale eps")
    ax_d.set_ylabel("||G_Sinkhorn - G_alpha=1/2|| / ||L_1 f||")
    ax_d.set_title("Sinkhorn against alpha = 1/2 (generators G = (S - I)/(eps/2))", fontsize=9)
    for ax in (ax_t, ax_c, ax_d):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, loc="center left" if ax is ax_c else "best")
    fig.suptitle("Kernel normalisations: alpha = 0, 1/2, 1 and Sinkhorn converge to Delta + c grad log p . grad, "
                 "c = 2, 1, 0, 1 (circle, p = 1 + 0.5 cos 2 pi x, f = sin 2 pi x)", fontsize=10)
    return fig


@register(NAME, "Normalisations: alpha = 0, 1/2, 1 -> drift 2, 1, 0; Sinkhorn acts like alpha = 1/2", order=110)
def run(quick: bool = True, seed: int = 0) -> StudyResult:
    """Own limit closest (exact); finite-N c_hat against the N = inf value at the same eps (which carries the
    O(eps) bias: 1.874 for attention at eps = 1e-3, not 2), within the 99% Student-t interval of the seed mean;
    c_hat within 0.02 of c at N = inf, eps = 1e-4; Sinkhorn - alpha=1/2 generator difference O(eps) at N = inf
    (slope 1 +- 0.2 for eps <= 2e-3) and < 5% of ||L_1 f|| at N points (there sampling noise, not the O(eps)
    difference, dominates: the bound shows Sinkhorn is far from alpha = 0, whose drift differs by ||L_1 f||)."""
    sizes = _sizes(quick)
    case = circle_case()
    seeds = [1000 * seed + s for s in range(sizes["seeds"])]
    fin = measure(case, sizes["N"], sizes["eps"], seeds)
    inf = continuum(case, sizes["eps_inf"])
    E = fin["errors"].mean(axis=1)
    c_same_eps = continuum(case, sizes["eps"][:1])["c_hat"][0]  # N = inf at the finite-N eps: the right target
    S = len(seeds)
    checks = []
    for n, (name, (_, c)) in enumerate(NORMALISATIONS.items()):
        best = [C_VALUES[int(np.argmin(E[e, n]))] for e in range(len(sizes["eps"]))]
        checks.append(Check.equal(NAME, f"{name}: limit with the smallest error, every eps (N={sizes['N']})",
                                  float(best[0]) if len(set(best)) == 1 else float("nan"), c))
        per_seed = fin["c_hat"][0, :, n]
        half = float(t_dist.ppf(0.995, S - 1) * per_seed.std(ddof=1) / np.sqrt(S))
        checks.append(Check.within(NAME, f"{name}: c_hat, N={sizes['N']}, eps={sizes['eps'][0]:g}, vs N=inf "
                                   f"(99% t-interval, {S} seeds)", float(per_seed.mean()), float(c_same_eps[n]), half))
        checks.append(Check.within(NAME, f"{name}: fitted drift c_hat, N=inf, eps={sizes['eps_inf'][0]:g}",
                                   float(inf["c_hat"][0, n]), c, 0.02))
    small = sizes["eps_inf"] <= SINKHORN_FIT_MAX
    slope = fit_slope(sizes["eps_inf"][small], inf["sinkhorn_vs_half"][small])
    checks += [
        Check.within(NAME, f"Sinkhorn - alpha=1/2 generator difference: eps-slope, N=inf, eps<={SINKHORN_FIT_MAX:g}",
                     slope[0], 1.0, 0.2),
        Check.below(NAME, f"Sinkhorn - alpha=1/2 generator difference / ||L_1 f||, N={sizes['N']}, max over eps",
                    float(fin["sinkhorn_vs_half"].mean(axis=1).max()), 0.05),
    ]
    arrays = {
        "eps": np.asarray(sizes["eps"]), "seeds": np.asarray(seeds), "c_values": np.asarray(C_VALUES),
        "errors": fin["errors"], "c_hat": fin["c_hat"], "sinkhorn_vs_half": fin["sinkhorn_vs_half"],
        "sinkhorn_iterations": fin["sinkhorn_iterations"],
        "eps_inf": sizes["eps_inf"], "c_hat_inf": inf["c_hat"], "errors_inf": inf["errors"],
        "sinkhorn_vs_half_inf": inf["sinkhorn_vs_half"],
    }
    config = {"case": case.to_config(), "N": sizes["N"], "seeds": seeds, "normalisations": list(NORMALISATIONS),
              "layout": "errors[eps, seed, normalisation, c]; c_hat[eps, seed, normalisation]", "quadrature_grid": 4096}
    return StudyResult(NAME, checks, arrays, config, _figure(sizes, fin, inf))
