"""Study ``pseudo_metric``: a general pseudo-metric moves features to the nearest point (Theorem 5, Example 3).

For the dot-product score f(x, y) = -x^T Q^T K y on the unit sphere S^2 with ``-Q^T K = P^T diag(a) P``
(P orthogonal, a with distinct positive entries; not a metric: f(x, x) is not the minimum of f(x, .)):

* the kernel of one attention layer at x is ``exp(x^T Q^T K y / (2 eps)) = exp(v . y / (2 eps))`` with
  ``v = K^T Q x = B^T x`` (B = Q^T K), a von Mises-Fisher kernel of concentration ``kappa = |v| / (2 eps)``
  centred at the nearest point ``A_x = argmin_y f(x, y) = argmax_y v . y = v / |v|``; here B is symmetric,
  ``B = -P^T diag(a) P``, so ``A_x = normalize(-P^T diag(a) P x)``. With a > 0, ``x . A_x < 0``: A_x is always
  more than 90 degrees away from x (Example 1, Q = K = I, is a = (-1, -1, -1) and gives A_x = x);
* as eps -> 0 the new feature tends to the old one at the nearest point,
  ``(S_eps H)(x) = H(A_x) + eps C(x) + O(eps^2)``, and Laplace's method on the sphere (E[g] = g(mu) +
  Delta g(mu) / (2 kappa) + O(kappa^-2) for a von Mises-Fisher law) gives the first-order coefficient
  ``C(x) = (2 / |v|) (Delta H / 2 + <grad log p, grad H>)(A_x)`` (round metric of S^2, p the sampling density).

The N -> infinity kernel integral is evaluated by a deterministic product rule in a frame rotated to A_x:
composite Gauss-Legendre in ``sigma = kappa (1 - cos theta)`` on panels [0, 1/4, 1/2, 1, ..., 64] (the
kernel is e^-sigma; beyond sigma = 64 it is below 1e-27) times the trapezoid rule in the azimuth (spectral
for the smooth periodic integrand). Its panels scale with kappa, so the Laplace regime is resolved at every eps
(checked: doubling both orders changes the values by < 1e-14). The particle operator (AttentionOperator with
DotProduct on points sampled from p) is compared with the quadrature at a moderate eps, against its own
delta-method sampling standard error.
"""

from __future__ import annotations

import time

import numpy as np
from matplotlib.figure import Figure

from ..attention import AttentionOperator
from ..compare import fit_slope
from ..domains import Euclidean as EuclideanSpace
from ..metrics import DotProduct
from ._base import Check, StudyResult, register

__all__ = [
    "SphereProblem",
    "default_problem",
    "nearest_point",
    "fibonacci_sphere",
    "sample_von_mises_fisher",
    "kernel_quadrature",
    "first_order_coefficient",
    "zeroth_order_errors",
    "particle_agreement",
    "run",
]

NAME = "pseudo_metric"

# sigma = kappa (1 - cos theta) panel breaks of the product rule; the kernel is exp(-sigma).
_SIGMA_BREAKS = np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])


# ------------------------------------------------------------------------------------------------ geometry
def fibonacci_sphere(n: int) -> np.ndarray:
    """n nearly uniform deterministic points on S^2 (Fibonacci spiral), shape (n, 3)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5.0**0.5) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def sample_von_mises_fisher(n: int, kappa: float, mean, rng: np.random.Generator) -> np.ndarray:
    """Exact samples of p(y) = kappa exp(kappa mean . y) / (4 pi sinh kappa) on S^2 (w.r.t. area), (n, 3)."""
    mean = np.asarray(mean, dtype=np.float64)
    mean = mean / np.linalg.norm(mean)
    u = rng.random(n)
    w = 1.0 + np.log(u + (1.0 - u) * np.exp(-2.0 * kappa)) / kappa  # inverse CDF of w = mean . y
    phi = 2.0 * np.pi * rng.random(n)
    r = np.sqrt(np.clip(1.0 - w * w, 0.0, None))
    e1, e2 = _tangent_frame(mean[None, :])
    return w[:, None] * mean + r[:, None] * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2)


def _tangent_frame(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal e1, e2 (M, 3) completing the unit vectors m (M, 3) to a right-handed frame."""
    t = np.where(np.abs(m[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    e1 = t - np.sum(t * m, axis=1, keepdims=True) * m
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return e1, np.cross(m, e1)


def _rotation(angles) -> np.ndarray:
    """Orthogonal matrix Rz(a) Ry(b) Rx(c)."""
    a, b, c = angles
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1.0, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1.0, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


# ------------------------------------------------------------------------------------------------ problem
class SphereProblem:
    """Example 3 on S^2: Q, K with -Q^T K = P^T diag(a) P, a vMF sampling density, a quadratic feature.

    H(y) = c . y + (w . y)^2 (an l <= 2 polynomial: Delta H = 2|w|^2 - 6 (w.y)^2 - 2 c.y on S^2), and
    p(y) proportional to exp(kappa_p m_p . y) (grad log p = kappa_p (I - y y^T) m_p).
    """

    def __init__(self, a=(0.5, 1.0, 2.0), angles=(0.7, 0.4, -0.3), key_matrix=None, kappa_p: float = 1.5,
                 mean_p=(0.0, 0.0, 1.0), c=(0.3, -0.5, 0.8), w=(0.6, 0.0, 0.8)):
        self.a = np.asarray(a, dtype=np.float64)
        self.P = _rotation(angles)
        self.B = -self.P.T @ np.diag(self.a) @ self.P  # B = Q^T K
        self.K = np.array([[1.0, 0.3, -0.2], [0.1, 0.9, 0.4], [-0.3, 0.2, 1.1]]) if key_matrix is None \
            else np.asarray(key_matrix, dtype=np.float64)
        self.Q = (self.B @ np.linalg.inv(self.K)).T  # Q^T K = B
        self.kappa_p = float(kappa_p)
        self.mean_p = np.asarray(mean_p, dtype=np.float64) / np.linalg.norm(mean_p)
        self.c = np.asarray(c, dtype=np.float64)
        self.w = np.asarray(w, dtype=np.float64)
        self.angles = tuple(float(v) for v in angles)

    @property
    def metric(self) -> DotProduct:
        return DotProduct(self.Q, self.K)

    def H(self, y: np.ndarray) -> np.ndarray:
        return y @ self.c + (y @ self.w) ** 2

    def laplacian_H(self, y: np.ndarray) -> np.ndarray:
        return 2.0 * (self.w @ self.w) - 6.0 * (y @ self.w) ** 2 - 2.0 * (y @ self.c)

    def grad_H(self, y: np.ndarray) -> np.ndarray:
        g = self.c + 2.0 * (y @ self.w)[..., None] * self.w
        return g - np.sum(g * y, axis=-1, keepdims=True) * y

    def log_p(self, y: np.ndarray) -> np.ndarray:
        """log p up to a constant (exactly kappa_p (m_p . y - 1))."""
        return self.kappa_p * (y @ self.mean_p - 1.0)

    def grad_log_p(self, y: np.ndarray) -> np.ndarray:
        g = np.broadcast_to(self.kappa_p * self.mean_p, y.shape)
        return g - np.sum(g * y, axis=-1, keepdims=True) * y

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return sample_von_mises_fisher(n, self.kappa_p, self.mean_p, rng)

    def config(self) -> dict:
        return {"a": self.a.tolist(), "P_angles_zyx": list(self.angles), "Q": self.Q.tolist(), "K": self.K.tolist(),
                "density": {"type": "von_mises_fisher", "kappa": self.kappa_p, "mean": self.mean_p.tolist()},
                "H": {"c": self.c.tolist(), "w": self.w.tolist(), "formula": "c.y + (w.y)^2"}}


def default_problem() -> SphereProblem:
    return SphereProblem()


def nearest_point(problem: SphereProblem, x: np.ndarray) -> np.ndarray:
    """A_x = argmin_{y in S^2} f(x, y) = argmax_y x^T Q^T K y = K^T Q x / |K^T Q x|, (M, 3)."""
    v = x @ problem.Q.T @ problem.K  # rows (K^T Q x_i)^T = x_i^T Q^T K
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------------ quadrature
def kernel_quadrature(problem: SphereProblem, x: np.ndarray, eps: float, *, order: int = 16, n_phi: int = 64,
                      chunk: int = 256) -> np.ndarray:
    """(S_eps H)(x) in the N -> infinity limit: int k H p dA / int k p dA, k = exp(-f(x, y) / (2 eps)).

    Product rule in the frame of A_x (see the module docstring), vectorised over x in chunks; (M,) values.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    xi, wi = np.polynomial.legendre.leggauss(order)
    phi = 2.0 * np.pi * np.arange(n_phi) / n_phi
    cos_phi, sin_phi = np.cos(phi)[None, None, :, None], np.sin(phi)[None, None, :, None]
    out = np.empty(len(x))
    for start in range(0, len(x), chunk):
        xs = x[start : start + chunk]
        v = xs @ problem.B  # v_i = B^T x_i: f(x_i, y) = -v_i . y
        norm = np.linalg.norm(v, axis=1)
        kappa, m = norm / (2.0 * eps), v / norm[:, None]
        e1, e2 = _tangent_frame(m)
        num, den = np.zeros(len(xs)), np.zeros(len(xs))
        for lo, hi in zip(_SIGMA_BREAKS[:-1], _SIGMA_BREAKS[1:]):
            lo_, hi_ = np.minimum(lo, 2.0 * kappa), np.minimum(hi, 2.0 * kappa)  # sigma <= 2 kappa (theta <= pi)
            half, mid = 0.5 * (hi_ - lo_), 0.5 * (hi_ + lo_)
            sigma = mid[:, None] + half[:, None] * xi[None, :]  # (M, q)
            u = 1.0 - sigma / kappa[:, None]  # cos theta
            r = np.sqrt(np.clip(1.0 - u * u, 0.0, None))
            y = u[:, :, None, None] * m[:, None, None, :] + r[:, :, None, None] * (
                cos_phi * e1[:, None, None, :] + sin_phi * e2[:, None, None, :])  # (M, q, n_phi, 3)
            weight = (half[:, None] * wi[None, :] * np.exp(-sigma))[:, :, None] * np.exp(problem.log_p(y))
            num += np.sum(weight * problem.H(y), axis=(1, 2))
            den += np.sum(weight, axis=(1, 2))
        out[start : start + chunk] = num / den
    return out


def first_order_coefficient(problem: SphereProblem, x: np.ndarray) -> np.ndarray:
    """C(x) with (S_eps H)(x) = H(A_x) + eps C(x) + O(eps^2): (2/|B^T x|) (Delta H/2 + <grad log p, grad H>)(A_x)."""
    A = nearest_point(problem, x)
    speed = np.linalg.norm(x @ problem.B, axis=1)
    drift = np.sum(problem.grad_log_p(A) * problem.grad_H(A), axis=1)
    return (2.0 / speed) * (0.5 * problem.laplacian_H(A) + drift)


# ------------------------------------------------------------------------------------------------ measurements
def zeroth_order_errors(problem: SphereProblem, eps_values, n_test: int = 200, *, order: int = 16,
                        n_phi: int = 64) -> dict:
    """RMS over n_test Fibonacci points of (S_eps H)(x) - H(A_x), its first-order prediction and the fit.

    Returns eps, rms (zeroth-order error), rms_first (of S_eps H - H(A) - eps C, the O(eps^2) remainder),
    coef_rel (RMS of (S_eps H - H(A))/eps - C relative to RMS of C), slope, angles (x to A_x, degrees),
    quad_change (max change when the quadrature orders are raised by half, at the smallest eps).
    """
    eps_values = np.asarray(eps_values, dtype=np.float64)
    x = fibonacci_sphere(n_test)
    A = nearest_point(problem, x)
    HA, C = problem.H(A), first_order_coefficient(problem, x)
    rms, rms_first, coef_rel = [], [], []
    for eps in eps_values:
        S = kernel_quadrature(problem, x, eps, order=order, n_phi=n_phi)
        rms.append(np.sqrt(np.mean((S - HA) ** 2)))
        rms_first.append(np.sqrt(np.mean((S - HA - eps * C) ** 2)))
        coef_rel.append(np.sqrt(np.mean(((S - HA) / eps - C) ** 2)) / np.sqrt(np.mean(C**2)))
    e0 = eps_values.min()
    finer = kernel_quadrature(problem, x, e0, order=order + order // 2, n_phi=n_phi + n_phi // 2)
    change = float(np.max(np.abs(finer - kernel_quadrature(problem, x, e0, order=order, n_phi=n_phi))))
    slope, slope_se = fit_slope(eps_values, np.asarray(rms))
    angles = np.degrees(np.arccos(np.clip(np.sum(x * A, axis=1), -1.0, 1.0)))
    return {"eps": eps_values, "rms": np.asarray(rms), "rms_first": np.asarray(rms_first),
            "coef_rel": np.asarray(coef_rel), "slope": slope, "slope_se": slope_se, "angles": angles,
            "test_points": x, "quad_change": change}


def particle_agreement(problem: SphereProblem, n_points: int, eps: float, seeds, n_check: int = 400) -> dict:
    """The particle operator against the quadrature at n_check sample points, in units of sampling error.

    For each seed: N points from p, (S_eps H)_i by AttentionOperator(DotProduct(Q, K)); the delta-method
    standard error of the self-normalised kernel average, se_i^2 = sum_j S_ij^2 (H_j - (S H)_i)^2, uses
    S_ij^2 = exp(-f_ij / eps) / Z_i^2 = (Z'_i / Z_i^2) S'_ij with S', Z' the operator at eps/2. Returns the
    pooled RMS of z_i = ((S H)_i - quadrature_i) / se_i (about 1 when particles and quadrature agree within
    sampling error), the RMS difference, the RMS se and, for contrast, the RMS of (S H)_i - H(A_{x_i}).
    """
    metric, space = problem.metric, EuclideanSpace(3)
    z_all, diff_all, se_all, zeroth_all = [], [], [], []
    sample_x, sample_particle, sample_quad = None, None, None
    for seed in seeds:
        rng = np.random.default_rng(seed)
        X = problem.sample(n_points, rng)
        h = problem.H(X)
        op = AttentionOperator(X, eps, metric=metric, domain=space)
        half = AttentionOperator(X, eps / 2.0, metric=metric, domain=space)
        SH = op.apply(h)[:n_check]
        V = half.apply(np.stack([h * h, h], axis=1))[:n_check]
        factor = np.exp(half.log_degrees()[:n_check] - 2.0 * op.log_degrees()[:n_check])
        se = np.sqrt(np.clip(factor * (V[:, 0] - 2.0 * SH * V[:, 1] + SH**2), 0.0, None))
        quad = kernel_quadrature(problem, X[:n_check], eps)
        z_all.append((SH - quad) / se)
        diff_all.append(SH - quad)
        se_all.append(se)
        zeroth_all.append(SH - problem.H(nearest_point(problem, X[:n_check])))
        if sample_x is None:
            sample_x, sample_particle, sample_quad = X[:n_check], SH, quad
    z, diff, se, zeroth = map(np.concatenate, (z_all, diff_all, se_all, zeroth_all))
    return {"z_rms": float(np.sqrt(np.mean(z**2))), "z_mean": float(np.mean(z)),
            "diff_rms": float(np.sqrt(np.mean(diff**2))), "se_rms": float(np.sqrt(np.mean(se**2))),
            "zeroth_rms": float(np.sqrt(np.mean(zeroth**2))), "x": sample_x, "particle": sample_particle,
            "quadrature": sample_quad}


# ------------------------------------------------------------------------------------------------ figure
def _figure(problem: SphereProblem, zero: dict, part: dict, eps_particle: float) -> Figure:
    fig = Figure(figsize=(15, 4.4))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    x, ang = zero["test_points"], zero["angles"]
    lon, lat = np.degrees(np.arctan2(x[:, 1], x[:, 0])), np.degrees(np.arcsin(np.clip(x[:, 2], -1, 1)))
    sc = ax1.scatter(lon, lat, c=ang, cmap="viridis", s=18)
    fig.colorbar(sc, ax=ax1, label="angle between x and A_x (deg)")
    ax1.set_xlabel("longitude of x (deg)")
    ax1.set_ylabel("latitude of x (deg)")
    ax1.set_title("nearest point A_x = argmin_y f(x, y) is far from x")

    eps = zero["eps"]
    ax2.loglog(eps, zero["rms"], "o-", label=f"|S_eps H(x) - H(A_x)| RMS (slope {zero['slope']:.3f})")
    ax2.loglog(eps, zero["rms_first"], "s-", label="after the first-order term eps C(x)")
    ax2.loglog(eps, zero["rms"][0] * eps / eps[0], "k--", lw=1, label="slope 1")
    ax2.loglog(eps, zero["rms_first"][0] * (eps / eps[0]) ** 2, "k:", lw=1, label="slope 2")
    ax2.set_xlabel("eps")
    ax2.set_ylabel("RMS error over S^2 (quadrature, N = infinity)")
    ax2.set_title("zeroth-order error is O(eps)")
    ax2.legend(fontsize=8)

    ax3.plot(part["quadrature"], part["particle"], ".", ms=3, label="particles (AttentionOperator)")
    lo, hi = float(np.min(part["quadrature"])), float(np.max(part["quadrature"]))
    ax3.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x")
    A = nearest_point(problem, part["x"])
    ax3.plot(part["quadrature"], problem.H(A), "+", ms=3, alpha=0.5, label="zeroth order H(A_x)")
    ax3.set_xlabel("quadrature (S_eps H)(x), N = infinity")
    ax3.set_ylabel("value at x")
    ax3.set_title(f"particles vs quadrature at eps = {eps_particle:g} (RMS z = {part['z_rms']:.2f})")
    ax3.legend(fontsize=8)
    fig.suptitle("General pseudo-metric f = -x^T Q^T K y on S^2 (Theorem 5 / Example 3): features move to A_x")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------ study
@register(NAME, "General pseudo-metric on S^2: features tend to H(A_x), error O(eps) (Theorem 5, Example 3)",
          order=120)
def run(quick: bool = True, seed: int = 0) -> StudyResult:
    start = time.perf_counter()
    problem = default_problem()
    if quick:
        eps_values, n_test, n_points, n_seeds, n_check = np.geomspace(0.002, 0.032, 5), 200, 2000, 3, 300
    else:
        eps_values, n_test, n_points, n_seeds, n_check = np.geomspace(0.001, 0.032, 11), 800, 8000, 10, 1000
    eps_particle = 0.05
    zero = zeroth_order_errors(problem, eps_values, n_test)
    seeds = [seed + 1000 * k for k in range(n_seeds)]
    part = particle_agreement(problem, n_points, eps_particle, seeds, n_check)

    checks = [
        Check.above(NAME, "min angle(x, A_x) over S^2 test points, deg (sanity: a > 0)", float(zero["angles"].min()), 90.0),
        Check.within(NAME, "slope of |S_eps H(x) - H(A_x)| vs eps", zero["slope"], 1.0, 0.2),
        Check.below(NAME, "first-order coefficient rel. error at smallest eps", float(zero["coef_rel"][0]), 0.05),
        Check.below(NAME, "quadrature change on refinement (smallest eps)", zero["quad_change"], 1e-10),
        Check.within(NAME, f"particles vs quadrature, RMS z-score (eps={eps_particle:g})", part["z_rms"], 1.0, 0.35),
        Check.above(NAME, f"particle |S H - H(A_x)| / sampling se (eps={eps_particle:g})",
                    part["zeroth_rms"] / part["se_rms"], 3.0),
    ]
    arrays = {
        "eps": zero["eps"], "rms_zeroth": zero["rms"], "rms_after_first_order": zero["rms_first"],
        "first_order_coef_rel_error": zero["coef_rel"], "angles_deg": zero["angles"],
        "test_points": zero["test_points"],
        "particle_points": part["x"], "particle_values": part["particle"], "quadrature_values": part["quadrature"],
    }
    config = {
        "problem": problem.config(), "eps_values": eps_values.tolist(), "n_test": n_test, "n_points": n_points,
        "particle_seeds": seeds, "n_check": n_check, "eps_particle": eps_particle,
        "quadrature": {"gauss_legendre_order": 16, "n_phi": 64, "sigma_breaks": _SIGMA_BREAKS.tolist()},
        "particle_diff_rms": part["diff_rms"], "particle_se_rms": part["se_rms"], "z_mean": part["z_mean"],
        "slope": zero["slope"], "seconds": round(time.perf_counter() - start, 2),
    }
    return StudyResult(NAME, checks, arrays, config, _figure(problem, zero, part, eps_particle))
