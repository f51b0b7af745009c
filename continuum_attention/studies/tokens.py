"""Tokens: self-consistent attention is blurring mean-shift; Gaussian tokens follow an exact affine map.

THEORY.md section 2: with S recomputed from the moved tokens every layer, ``x <- S_eps(x) x`` is exactly
blurring mean-shift, ``x <- x + eps grad log p_hat_eps(x)`` (p_hat_eps the Gaussian KDE of variance eps). It
clusters, and its eps -> 0 limit is an ill-posed backward heat equation, so it is compared at fixed eps.

1. Clustering (2-D): tokens drawn from a mixture of four Gaussian bumps collapse, bump by bump, onto single
   points; clusters far apart (distance^2 / (2 eps) ~ 30) do not feel each other. Clusters are the connected
   components of the final tokens at distance < 0.05. Check: their number equals the number of bumps.

2. Gaussian tokens (THEORY.md section 5): for tokens ~ N(mu, Sigma) and N -> infinity one layer is affine,
   ``x' = A x + (I - A) mu`` with ``A = (I + eps Sigma^-1)^-1``, so the covariance maps to ``A Sigma A``. The
   map is applied *per layer with the current covariance*: ``Sigma_(k+1) = A_k Sigma_k A_k``,
   ``A_k = Sigma_k (Sigma_k + eps I)^-1`` (:func:`continuum_attention.analytic.gaussian_tokens_evolve`); with
   a fixed A, ``A^K Sigma A^K`` would be wrong after the first layer. The map is exact at every eps, so no
   eps -> 0 is needed, only N -> infinity.

   Measurement: the empirical covariance of N tokens after K layers, averaged over R seeds, against the exact
   Sigma_K; the standard error is the spread over seeds / sqrt(R) (for each of the three entries). Check:
   every entry within 3 standard errors. Cross-check of that spread by Wishart theory: the initial sample
   covariance is Wishart(N - 1, Sigma / (N - 1)); pushed through the exact (nonlinear) covariance map it gives
   the per-run spread expected from the initial sampling alone (stored beside the measured spread; they agree
   within ~10%, any excess being the finite-N noise of the kernel update itself). The map amplifies relative
   fluctuations (d log Sigma' / d log Sigma = 3 - 2 Sigma / (Sigma + eps) > 1), so the plain Wishart formula
   for Sigma_K, ``(S_ij^2 + S_ii S_jj) / (N - 1)``, would underestimate the spread about threefold.

   Finite-N bias. The update is a ratio of kernel sums, ``x_i' = sum_j w_ij x_j / sum_j w_ij``, self term
   w_ii = 1 included. Where the expected number of neighbours, ``N (2 pi eps)^(d/2) p_eps(x)``, is small -- in
   the tails, which carry the covariance -- tokens barely move (their self weight dominates), so the
   covariance shrinks too little: a positive bias that grows as eps/Sigma decreases (at N = 2000, K = 3 it
   is up to 10% and 8 standard errors at eps = 0.05-0.1; see the eps sweep panel). With eps = 0.5 (comparable to
   Sigma) the tails have O(N) neighbours and the bias is O(1/N): at N = 2000, R = 24 it is about 0.8 standard
   errors (mean z over 8 seeds; ~2-3% of Sigma_K), at N = 4000 about 0.7, while K = 2 layers still contract
   Sigma eightfold.
   The update is deterministic given the points; seeds only draw the initial tokens.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..analytic import gaussian_tokens_evolve
from ..densities import gaussian, mixture
from ..particles import ParticleSolver
from ._base import Check, StudyResult, register

NAME = "tokens"

BUMP_MEANS = [(0.0, 0.0), (3.0, 0.5), (0.8, 3.0), (3.8, 3.4)]
BUMP_COVS = [[[0.09, 0.03], [0.03, 0.06]], [[0.05, 0.0], [0.0, 0.12]], [[0.10, -0.04], [-0.04, 0.08]],
             [[0.07, 0.0], [0.0, 0.07]]]
BUMP_WEIGHTS = [0.3, 0.25, 0.25, 0.2]
MU = np.array([0.5, -0.2])
SIGMA = np.array([[1.0, 0.3], [0.3, 0.5]])
ENTRIES = ((0, 0), (0, 1), (1, 1))


def bumps_density():
    """Mixture of four anisotropic Gaussian bumps in R^2 (pairwise distances of the means about 3.0 or more)."""
    return mixture([gaussian(m, c) for m, c in zip(BUMP_MEANS, BUMP_COVS)], BUMP_WEIGHTS)


def run_tokens(x0: np.ndarray, eps: float, n_layers: int, n_snapshots: int = 2) -> np.ndarray:
    """Token positions (n_snapshots, N, d) under K self-consistent layers (ParticleSolver, mode='tokens')."""
    sol = ParticleSolver(x0, eps, mode="tokens").run(n_layers=n_layers, n_snapshots=n_snapshots, progress=False)
    return sol.values


def count_clusters(x: np.ndarray, radius: float = 0.05) -> tuple[int, np.ndarray]:
    """Connected components of the tokens at mutual distance < radius: (count, labels)."""
    pairs = cKDTree(x).query_pairs(radius, output_type="ndarray")
    n = len(x)
    graph = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)


def clustering(N: int = 600, eps: float = 0.15, n_layers: int = 20, seed: int = 0) -> dict[str, object]:
    """Blurring mean-shift of tokens from the four-bump mixture: trajectories, cluster count and spread."""
    x0 = bumps_density().sample(N, seed)
    traj = run_tokens(x0, eps, n_layers, n_layers + 1)
    count, labels = count_clusters(traj[-1])
    spread = max(float(np.ptp(traj[-1][labels == c], axis=0).max()) for c in range(count))
    return {"trajectories": traj, "count": count, "labels": labels, "spread": spread}


def gaussian_covariance(N: int = 2000, eps: float = 0.5, n_layers: int = 2, repeats: int = 24, seed: int = 0,
                        mu=MU, Sigma=SIGMA) -> dict[str, np.ndarray]:
    """Empirical token covariance per layer over ``repeats`` seeds against the exact map.

    Returns ``measured`` (repeats, K+1, 2, 2), ``exact`` (K+1, 2, 2), ``mean``, ``se`` (standard error of the
    mean over seeds), ``z`` = (mean - exact) / se at layer K for the entries (0,0), (0,1), (1,1), and the
    Wishart-propagated per-run spread ``wishart_sd`` at layer K with the measured per-run spread ``seed_sd``.
    """
    mu, Sigma = np.asarray(mu, float), np.asarray(Sigma, float)
    chol = np.linalg.cholesky(Sigma)
    measured = np.empty((repeats, n_layers + 1, 2, 2))
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        x0 = mu + rng.standard_normal((N, 2)) @ chol.T
        traj = run_tokens(x0, eps, n_layers, n_layers + 1)
        measured[r] = [np.cov(x.T) for x in traj]
    exact = np.array([gaussian_tokens_evolve(mu, mu, Sigma, eps, k)[1] for k in range(n_layers + 1)])
    mean = measured.mean(0)
    seed_sd = measured.std(0, ddof=1)
    se = seed_sd / np.sqrt(repeats)
    SK = exact[-1]
    z = np.array([(mean[-1][i, j] - SK[i, j]) / se[-1][i, j] for i, j in ENTRIES])
    return {"measured": measured, "exact": exact, "mean": mean, "se": se, "z": z,
            "seed_sd": np.array([seed_sd[-1][i, j] for i, j in ENTRIES]),
            "wishart_sd": wishart_sd(N, eps, n_layers, Sigma, seed=seed)}


def _covariance_map(S: np.ndarray, eps: float) -> np.ndarray:
    """Batched exact layer Sigma -> A Sigma A, A = Sigma (Sigma + eps I)^-1, for S of shape (..., d, d)."""
    eye = np.eye(S.shape[-1])
    A = np.swapaxes(np.linalg.solve(S + eps * eye, S), -1, -2)  # (S + eps)^-1 S transposed = S (S + eps)^-1
    return A @ S @ np.swapaxes(A, -1, -2)


def wishart_sd(N: int, eps: float, n_layers: int, Sigma=SIGMA, draws: int = 20000, seed: int = 0) -> np.ndarray:
    """Per-run sd of the layer-K covariance entries (0,0), (0,1), (1,1) from initial sampling alone:
    Wishart(N - 1, Sigma / (N - 1)) sample covariances pushed through the exact covariance map."""
    from scipy.stats import wishart

    S = wishart(df=N - 1, scale=np.asarray(Sigma, float) / (N - 1)).rvs(draws, random_state=np.random.default_rng([seed, 7]))
    for _ in range(n_layers):
        S = _covariance_map(S, eps)
    return np.array([S[:, i, j].std(ddof=1) for i, j in ENTRIES])


def bias_sweep(eps_values=(0.05, 0.1, 0.2, 0.5), N: int = 2000, n_layers: int = 3, repeats: int = 12, seed: int = 100
               ) -> dict[str, np.ndarray]:
    """Relative deviation of the layer-K covariance from the exact map, and its z-score, against eps."""
    rel, z = [], []
    for eps in eps_values:
        r = gaussian_covariance(N, eps, n_layers, repeats, seed)
        SK, m = r["exact"][-1], r["mean"][-1]
        rel.append([(m[i, j] - SK[i, j]) / SK[i, j] for i, j in ENTRIES])
        z.append(r["z"])
    return {"eps": np.asarray(eps_values, float), "relative": np.array(rel), "z": np.array(z)}


# ------------------------------------------------------------------------------------------- the study
def _ellipse(ax, cov, center, **kw):
    vals, vecs = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
    ax.add_patch(Ellipse(center, 2 * 2 * np.sqrt(vals[1]), 2 * 2 * np.sqrt(vals[0]), angle=angle, fill=False, **kw))


def _figure(cl, gc, sweep, cfg) -> Figure:
    fig = Figure(figsize=(15, 8.5), layout="constrained")
    axes = fig.subplots(2, 3)
    ax = axes[0, 0]
    traj = cl["trajectories"]
    show = np.arange(0, traj.shape[1], max(1, traj.shape[1] // 150))
    for i in show:
        ax.plot(traj[:, i, 0], traj[:, i, 1], "-", color="0.6", lw=0.5)
    ax.scatter(traj[0, :, 0], traj[0, :, 1], c=cl["labels"], s=4, cmap="tab10", vmin=0, vmax=9, label="initial")
    ax.plot(traj[-1, :, 0], traj[-1, :, 1], "k*", ms=14, label=f"after {traj.shape[0] - 1} layers")
    ax.set_aspect("equal")
    ax.set_title(f"blurring mean-shift, N={cfg['N_cluster']}, eps={cfg['eps_cluster']}: "
                 f"{cl['count']} clusters for {len(BUMP_MEANS)} bumps", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    k = np.arange(traj.shape[0])
    for c in range(cl["count"]):
        sel = cl["labels"] == c
        ax.semilogy(k, np.maximum(traj[:, sel].std(axis=1).max(axis=1), 1e-17), "o-", ms=3, label=f"cluster {c}")
    ax.set_xlabel("layer")
    ax.set_ylabel("cluster spread (max sd)")
    ax.set_title("each bump collapses (covariance contracts every layer)", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[0, 2]
    rng = np.random.default_rng([cfg["seed"], 0])
    x0 = MU + rng.standard_normal((cfg["N_gauss"], 2)) @ np.linalg.cholesky(SIGMA).T
    xs = run_tokens(x0, cfg["eps_gauss"], cfg["K_gauss"], cfg["K_gauss"] + 1)
    for layer, col in zip(range(cfg["K_gauss"] + 1), ("C0", "C1", "C2", "C3", "C4")):
        ax.plot(xs[layer][:, 0], xs[layer][:, 1], ".", ms=1.5, color=col, alpha=0.5)
        _ellipse(ax, gc["exact"][layer], MU, color=col, lw=2, label=f"exact 2-sd ellipse, layer {layer}")
        _ellipse(ax, np.cov(xs[layer].T), MU, color="k", lw=0.8, ls="--")
    ax.set_aspect("equal")
    ax.set_title(f"Gaussian tokens N(mu, Sigma), eps={cfg['eps_gauss']} (dashed: empirical)", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[1, 0]
    layers = np.arange(cfg["K_gauss"] + 1)
    for (i, j), col in zip(ENTRIES, ("C0", "C1", "C2")):
        ax.semilogy(layers, np.abs(gc["exact"][:, i, j]), "-", color=col, label=f"exact Sigma_k[{i},{j}]")
        ax.errorbar(layers, np.abs(gc["mean"][:, i, j]), yerr=3 * gc["se"][:, i, j], fmt="o", color=col, capsize=4)
    ax.set_xlabel("layer k")
    ax.set_ylabel("|covariance entry|")
    ax.set_title(f"Sigma_(k+1) = A_k Sigma_k A_k: mean of {cfg['repeats']} seeds +- 3 SE", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    for e, (i, j) in enumerate(ENTRIES):
        ax.plot(sweep["eps"], sweep["z"][:, e], "o-", label=f"entry [{i},{j}]")
    ax.axhspan(-3, 3, color="0.9", label="+-3 SE")
    ax.set_xscale("log")
    ax.set_xlabel("eps")
    ax.set_ylabel("(mean - exact) / SE at layer K")
    ax.set_title(f"finite-N bias of the KDE update (N={cfg['N_gauss']}, K={cfg['sweep_K']}, "
                 f"{cfg['sweep_repeats']} seeds):\nsmall eps leaves tail tokens behind", fontsize=9)
    ax.legend(fontsize=7)
    axes[1, 2].axis("off")
    lines = [f"layer {cfg['K_gauss']}: z-scores {np.round(gc['z'], 2)}",
             f"per-run sd (seeds)   {np.array2string(gc['seed_sd'], precision=3)}",
             f"per-run sd (Wishart) {np.array2string(gc['wishart_sd'], precision=3)}",
             "", f"relative deviation vs eps (K={cfg['sweep_K']}):"]
    lines += [f"  eps={e:<5g} {np.round(100 * r, 2)} %" for e, r in zip(sweep["eps"], sweep["relative"])]
    axes[1, 2].text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=8, transform=axes[1, 2].transAxes)
    fig.suptitle("Tokens: blurring mean-shift clusters; Gaussian tokens follow x' = A x + (I - A) mu")
    return fig


@register(NAME, "Tokens: blurring mean-shift clustering; Gaussian tokens' covariance map", order=80)
def run(quick: bool = True, seed: int = 0) -> StudyResult:
    """Cluster count = number of bumps; Gaussian tokens' covariance entries within 3 SE of the exact map."""
    cfg = {"N_cluster": 600 if quick else 3000, "eps_cluster": 0.15, "K_cluster": 20,
           "N_gauss": 2000 if quick else 8000, "eps_gauss": 0.5, "K_gauss": 2, "repeats": 24 if quick else 64,
           "sweep_eps": [0.05, 0.1, 0.2, 0.5], "sweep_K": 3, "sweep_repeats": 12 if quick else 32, "seed": seed}
    cl = clustering(cfg["N_cluster"], cfg["eps_cluster"], cfg["K_cluster"], seed)
    gc = gaussian_covariance(cfg["N_gauss"], cfg["eps_gauss"], cfg["K_gauss"], cfg["repeats"], seed)
    sweep = bias_sweep(cfg["sweep_eps"], cfg["N_gauss"], cfg["sweep_K"], cfg["sweep_repeats"], seed + 1000)
    checks = [Check.equal(NAME, "clusters after blurring mean-shift = bumps", cl["count"], len(BUMP_MEANS)),
              Check.below(NAME, "largest cluster spread after collapse", cl["spread"], 1e-6)]
    for e, (i, j) in enumerate(ENTRIES):
        checks.append(Check.within(NAME, f"Gaussian tokens: (cov - exact)/SE, entry [{i},{j}], layer {cfg['K_gauss']}",
                                   gc["z"][e], 0.0, 3.0))
    arrays = {"trajectories": cl["trajectories"], "cluster_labels": cl["labels"],
              "cov_measured": gc["measured"], "cov_exact": gc["exact"], "cov_se": gc["se"], "z": gc["z"],
              "seed_sd": gc["seed_sd"], "wishart_sd": gc["wishart_sd"],
              "sweep_eps": sweep["eps"], "sweep_relative": sweep["relative"], "sweep_z": sweep["z"]}
    config = {**cfg, "bumps": bumps_density().to_config(), "mu": MU.tolist(), "Sigma": SIGMA.tolist()}
    return StudyResult(NAME, checks, arrays, config, _figure(cl, gc, sweep, cfg))
