"""Densities p on a domain: evaluation, grad log p, and sampling.

Convention (THEORY.md section 3, "Pitfall"): a :class:`Density` is the *coordinate* density q of the samples,
with respect to Lebesgue measure dx on the domain. The attention limit needs the density with respect to the
Riemannian volume of the metric g, p = q / sqrt|g|; the PDE side does that conversion in one place
(:mod:`continuum_attention.pde`), so that the same Density object drives particles and grids.
For Euclidean and constant (Mahalanobis) metrics sqrt|g| is constant and p, q differ by a constant factor
that cancels in grad log p.

Built-ins: :func:`uniform`, :func:`gaussian`, :func:`cosine`, :func:`von_mises`, :func:`mixture`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import special

from ._validation import check_memory, describe, positive_int, random_generator, real_array, real_number, table
from .domains import Box, Domain, Euclidean, Torus, as_points

__all__ = ["Density", "uniform", "gaussian", "cosine", "von_mises", "mixture", "density_from_config", "truncated_kde"]

ArrayFn = Callable[[np.ndarray], np.ndarray]

# Composite Gauss-Legendre rule per axis: (panels, nodes per panel) by dimension. Exponentially accurate for
# smooth integrands, including periodic ones; about 1e5-1e6 pdf evaluations at most.
_QUADRATURE = {1: (64, 8), 2: (32, 8), 3: (16, 6)}


def _quadrature(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tensor-product composite Gauss-Legendre nodes (M, d) and weights (M,) on a box."""
    d = lower.size
    if d not in _QUADRATURE:
        raise ValueError(f"numerical normalisation (tensor-product quadrature) works in 1 to 3 dimensions, not {d}: "
                         "give a normalised pdf with normalize=False (the built-ins uniform, gaussian, cosine and "
                         "von_mises are exact in any dimension)")
    panels, order = _QUADRATURE[d]
    xi, wi = np.polynomial.legendre.leggauss(order)
    axes, weights = [], []
    for a, b in zip(lower, upper):
        edges = np.linspace(a, b, panels + 1)
        half = 0.5 * np.diff(edges)
        mid = 0.5 * (edges[1:] + edges[:-1])
        axes.append((mid[:, None] + half[:, None] * xi[None, :]).ravel())
        weights.append((half[:, None] * wi[None, :]).ravel())
    mesh = np.meshgrid(*axes, indexing="ij")
    nodes = np.stack([m.ravel() for m in mesh], axis=1)
    w = weights[0]
    for extra in weights[1:]:
        w = np.multiply.outer(w, extra).ravel()
    return nodes, w


class Density:
    """A probability density q on a domain, vectorised on (M, d) arrays.

    Parameters
    ----------
    domain : Domain
        Where the density lives. On :class:`Euclidean` a ``support`` box is required for normalisation
        and sampling (built-ins such as :func:`gaussian` bring their own exact formulas instead).
    pdf : callable
        ``pdf(x)`` for x of shape (M, d) returns (M,) non-negative values, up to a constant factor.
    grad_log_pdf : callable, optional
        ``grad_log_pdf(x)`` returns (M, d). When omitted, central finite differences of log pdf are used
        (step 1e-5 times the domain scale; error O(step^2)).
    support : Box, optional
        Region holding (numerically) all the mass, for unbounded domains.
    normalize : bool
        Divide by the numerically integrated mass (composite Gauss-Legendre quadrature). Set False only when
        ``pdf`` is already normalised exactly.
    name : str
        Label used in configurations and plots.

    Raises
    ------
    ValueError
        If the pdf is negative, NaN or infinite at a quadrature node, or its mass is zero or infinite.
    """

    def __init__(
        self,
        domain: Domain,
        pdf: ArrayFn,
        grad_log_pdf: ArrayFn | None = None,
        *,
        support: Box | None = None,
        normalize: bool = True,
        name: str = "custom",
        config: dict | None = None,
    ):
        if not isinstance(domain, Domain):
            raise TypeError(f"domain must be a Domain (Torus, Box, Euclidean), got domain={describe(domain)}")
        if not callable(pdf):
            raise TypeError(f"pdf must be callable (M, d) -> (M,), got pdf={describe(pdf)}")
        if grad_log_pdf is not None and not callable(grad_log_pdf):
            raise TypeError(f"grad_log_pdf must be callable (M, d) -> (M, d) or None, got {describe(grad_log_pdf)}")
        if support is not None and not isinstance(support, Box):
            raise TypeError(f"support must be a Box or None, got support={describe(support)}")
        if support is None and not domain.bounded and normalize:
            raise ValueError(f"a Density on {domain!r} needs support=Box(...) to normalise and sample")
        if support is not None and support.dim != domain.dim:
            raise ValueError(f"support has dimension {support.dim}, domain has dimension {domain.dim}")
        self.domain = domain
        self.support = support if support is not None else (domain if domain.bounded else None)
        self.name = name
        self._raw_pdf = pdf
        self._raw_grad_log = grad_log_pdf
        self._config = dict(config) if config is not None else {"type": name}
        self._norm = self._normalisation() if normalize else 1.0
        self._envelope: float | None = None

    # -- evaluation -----------------------------------------------------------------------------------------
    def _evaluate_raw(self, x: np.ndarray, *, name: str = "points") -> np.ndarray:
        values = real_array(self._raw_pdf(x), "pdf(points)", finite=False).reshape(-1)
        if values.shape[0] != x.shape[0]:
            raise ValueError(f"pdf returned {values.shape[0]} values for {x.shape[0]} {name}")
        if np.any(values < 0):  # a dip below zero between quadrature nodes is caught where it is evaluated
            bad = int(np.argmin(values))
            raise ValueError(f"pdf must be non-negative, got pdf={values[bad]:.3g} at x={x[bad]} ({name})")
        return values

    def _normalisation(self) -> float:
        box = self.support
        nodes, weights = _quadrature(box.lower, box.upper)
        values = self._evaluate_raw(nodes, name="quadrature nodes")
        if not np.all(np.isfinite(values)):
            bad = int(np.argmax(~np.isfinite(values)))
            raise ValueError(f"pdf is NaN or infinite at x={nodes[bad]} (value {values[bad]})")
        if np.any(values < 0):
            bad = int(np.argmin(values))
            raise ValueError(f"pdf must be non-negative, got pdf={values[bad]:.3g} at x={nodes[bad]}")
        mass = float(values @ weights)
        if not (np.isfinite(mass) and mass > 0):
            raise ValueError(f"pdf is not normalisable: its integral over {box!r} is {mass!r}")
        self._quad_max = float(values.max()) / mass
        return mass

    def pdf(self, points) -> np.ndarray:
        """Normalised density q(x), shape (M,)."""
        x = as_points(points, self.domain.dim)
        return self._evaluate_raw(x) / self._norm

    def __call__(self, points) -> np.ndarray:
        return self.pdf(points)

    def log_pdf(self, points) -> np.ndarray:
        """log q(x), shape (M,); -inf where q = 0."""
        with np.errstate(divide="ignore"):
            return np.log(self.pdf(points))

    def grad_log_pdf(self, points) -> np.ndarray:
        """grad log q(x), shape (M, d) (units: 1 / length)."""
        x = as_points(points, self.domain.dim)
        if self._raw_grad_log is not None:
            return np.asarray(self._raw_grad_log(x), dtype=np.float64).reshape(x.shape)
        scale = self.support.lengths if self.support is not None else np.ones(x.shape[1])
        grad = np.empty_like(x)
        for axis in range(x.shape[1]):
            step = 1e-5 * scale[axis]
            e = np.zeros(x.shape[1])
            e[axis] = step
            with np.errstate(divide="ignore"):
                grad[:, axis] = (np.log(self._evaluate_raw(x + e)) - np.log(self._evaluate_raw(x - e))) / (2 * step)
        return grad

    # -- sampling -------------------------------------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Draw n i.i.d. points, shape (n, d). ``rng`` is a Generator or a seed (same seed, same points)."""
        n = positive_int(n, "n")
        # the points and, for rejection sampling, one batch of candidates with their pdf values and ratios
        check_memory(8.0 * n * self.domain.dim * 2 + 8.0 * 1.2 * n * 3, f"sample(n={n}) in {self.domain.dim}-D")
        return self._sample(n, random_generator(rng))

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        # Rejection sampling from the uniform law on the support, with an envelope from the quadrature nodes
        # and a safety factor. If a draw ever exceeds it, the envelope is raised and the generator rewound to
        # its state on entry, so the points depend on the seed only, never on earlier calls.
        box = self.support
        if box is None:
            raise ValueError(f"cannot sample from {self.name!r} on {self.domain!r} without a support box")
        volume = box.volume
        if self._envelope is None:
            self._envelope = 1.25 * self._peak_estimate() * volume
        start = rng.bit_generator.state
        while True:
            rng.bit_generator.state = start
            out, have, ok = np.empty((n, self.domain.dim)), 0, True
            batch = max(1024, int(1.2 * n * self._envelope))
            while have < n:
                x = box.lower + box.lengths * rng.random((batch, self.domain.dim))
                ratio = self.pdf(x) * volume / self._envelope
                if ratio.max() > 1.0:
                    self._envelope *= 1.5 * ratio.max()
                    ok = False
                    break
                keep = x[rng.random(batch) < ratio][: n - have]
                out[have : have + len(keep)] = keep
                have += len(keep)
            if ok:
                return self.domain.wrap(out)

    def _peak_estimate(self) -> float:
        """Largest normalised pdf value on the quadrature nodes of the support (an envelope estimate)."""
        if not hasattr(self, "_quad_max"):
            nodes, _ = _quadrature(self.support.lower, self.support.upper)
            self._quad_max = float(self.pdf(nodes).max())
        return self._quad_max

    # -- configuration --------------------------------------------------------------------------------------
    def to_config(self) -> dict:
        """Plain-data description (built-ins can be rebuilt from it with :func:`density_from_config`)."""
        return {**self._config, "domain": self.domain.to_config()}

    def __repr__(self) -> str:
        return f"Density({self.name!r} on {self.domain!r})"


# ---------------------------------------------------------------------------------------------------------
# Built-ins
# ---------------------------------------------------------------------------------------------------------


class _Uniform(Density):
    def _sample(self, n, rng):
        return self.domain.uniform_sample(n, rng)


def uniform(domain: Domain) -> Density:
    """Uniform density 1 / |domain| on a bounded domain; grad log p = 0."""
    if not domain.bounded:
        raise ValueError(f"a uniform density needs a bounded domain, got {domain!r}")
    vol = domain.volume
    return _Uniform(
        domain,
        lambda x: np.full(x.shape[0], 1.0 / vol),
        lambda x: np.zeros_like(x),
        normalize=False,
        name="uniform",
        config={"type": "uniform"},
    )


class _Gaussian(Density):
    def _sample(self, n, rng):
        mean, chol = self._mean, self._chol
        if isinstance(self.domain, Euclidean):
            return mean + rng.standard_normal((n, mean.size)) @ chol.T
        out, have = np.empty((n, mean.size)), 0
        while have < n:  # truncated to the Box: draw from the full Gaussian, keep the inside
            x = mean + rng.standard_normal((2 * (n - have) + 64, mean.size)) @ chol.T
            x = x[self.domain.contains(x)][: n - have]
            out[have : have + len(x)] = x
            have += len(x)
        return out


def gaussian(mean, cov, domain: Domain | None = None) -> Density:
    """Gaussian N(mean, cov) with any symmetric positive definite covariance.

    On :class:`Euclidean` (the default) normalisation and sampling are exact; on a :class:`Box` the density
    is truncated to the box and renormalised numerically. grad log p(x) = -cov^-1 (x - mean).
    """
    mean = np.atleast_1d(real_array(mean, "mean", ndim=(0, 1)))
    cov = np.atleast_2d(real_array(cov, "cov", ndim=(0, 1, 2)))
    d = mean.size
    if cov.shape == (1, 1) and d > 1:
        cov = cov[0, 0] * np.eye(d)
    if cov.shape != (d, d):
        raise ValueError(f"cov must have shape ({d}, {d}) to match mean, got shape {cov.shape}")
    if not np.allclose(cov, cov.T) or np.any(np.linalg.eigvalsh(cov) <= 0):
        raise ValueError(f"cov must be symmetric positive definite, got cov={cov.tolist()}")
    domain = domain if domain is not None else Euclidean(d)
    if isinstance(domain, Torus):
        raise ValueError("gaussian() is not periodic: use von_mises() on a Torus")
    if domain.dim != d:
        raise ValueError(f"mean has dimension {d}, domain {domain!r} has dimension {domain.dim}")
    prec = np.linalg.inv(cov)
    log_norm = -0.5 * (d * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1])

    def pdf(x):
        z = x - mean
        return np.exp(log_norm - 0.5 * np.einsum("ij,jk,ik->i", z, prec, z))

    dens = _Gaussian(
        domain,
        pdf,
        lambda x: -(x - mean) @ prec,
        normalize=domain.bounded,
        name="gaussian",
        config={"type": "gaussian", "mean": mean.tolist(), "cov": cov.tolist()},
    )
    dens._mean, dens._chol, dens.cov = mean, np.linalg.cholesky(cov), cov
    return dens


class _Cosine(Density):
    def _sample(self, n, rng):
        out, have = np.empty((n, self.domain.dim)), 0
        bound = 1.0 + abs(self._amplitude)
        while have < n:
            x = self.domain.uniform_sample(2 * (n - have) + 64, rng)
            keep = x[rng.random(len(x)) * bound < self._raw_pdf(x) * self.domain.volume][: n - have]
            out[have : have + len(keep)] = keep
            have += len(keep)
        return out


def cosine(domain: Torus, amplitude: float = 0.5, wavevector: Sequence[int] | int = 1, phase: float = 0.0) -> Density:
    """Cosine-perturbed density on a torus: p(x) = (1 + a cos(2 pi k.(x/L) + phase)) / |T|, |a| < 1.

    ``wavevector`` holds integers k_i (one per axis; an int means (k, 0, 0, ...)). The test density of the
    project, p(x) = 1 + 0.5 cos(2 pi x) on the circle of length 1, is ``cosine(Torus(1.0), 0.5, 1)``.
    """
    if not isinstance(domain, Torus):
        raise ValueError(f"cosine() needs a Torus, got {domain!r}")
    amplitude, phase = real_number(amplitude, "amplitude"), real_number(phase, "phase")
    if not abs(amplitude) < 1:
        raise ValueError(f"amplitude must satisfy |amplitude| < 1 for a positive density, got amplitude={amplitude}")
    k = np.zeros(domain.dim)
    kk = np.atleast_1d(real_array(wavevector, "wavevector", ndim=(0, 1)))
    if kk.size > domain.dim or np.any(kk != np.round(kk)):
        raise ValueError(f"wavevector must hold at most {domain.dim} integers, got wavevector={wavevector!r}")
    k[: kk.size] = kk
    if np.all(k == 0):
        raise ValueError(f"wavevector must be non-zero (k = 0 is the uniform density), got wavevector={wavevector!r}")
    omega = 2 * np.pi * k / domain.lengths
    vol = domain.volume

    def pdf(x):
        return (1.0 + amplitude * np.cos(x @ omega + phase)) / vol

    def grad_log(x):
        arg = x @ omega + phase
        return (-amplitude * np.sin(arg) / (1.0 + amplitude * np.cos(arg)))[:, None] * omega

    dens = _Cosine(
        domain,
        pdf,
        grad_log,
        normalize=False,
        name="cosine",
        config={"type": "cosine", "amplitude": float(amplitude), "wavevector": k.astype(int).tolist(), "phase": float(phase)},
    )
    dens._amplitude = float(amplitude)
    return dens


class _VonMises(Density):
    def _sample(self, n, rng):
        L = self.domain.lengths
        ang = np.stack([rng.vonmises(0.0, k, size=n) if k > 0 else rng.uniform(-np.pi, np.pi, n) for k in self._kappa], 1)
        return self.domain.wrap(self._mu + ang * L / (2 * np.pi))


def von_mises(domain: Torus, mean=0.0, kappa=1.0) -> Density:
    """Product von Mises density on a torus: p(x) = prod_i exp(kappa_i cos(2 pi (x_i - mu_i)/L_i)) / (L_i I0(kappa_i)).

    kappa_i >= 0 is the concentration (variance about (L_i / 2 pi)^2 / kappa_i for large kappa_i).
    """
    if not isinstance(domain, Torus):
        raise ValueError(f"von_mises() needs a Torus, got {domain!r}")
    mu, kappa = real_array(mean, "mean", ndim=(0, 1)), real_array(kappa, "kappa", ndim=(0, 1), finite=False)
    if mu.size not in (1, domain.dim) or kappa.size not in (1, domain.dim):
        raise ValueError(f"mean and kappa must hold 1 or {domain.dim} values, got mean={describe(mean)}, kappa={describe(kappa)}")
    mu = np.broadcast_to(mu.ravel(), (domain.dim,)).copy()
    kappa = np.broadcast_to(kappa.ravel(), (domain.dim,)).copy()
    if np.any(kappa < 0) or not np.all(np.isfinite(kappa)):
        raise ValueError(f"kappa must be finite and >= 0, got kappa={kappa.tolist()}")
    L = domain.lengths
    omega = 2 * np.pi / L
    # ive(0, k) = I0(k) exp(-k): keeps the normalisation finite for large kappa.
    log_norm = -np.sum(np.log(L * special.ive(0, kappa)) + kappa)

    def pdf(x):
        return np.exp(log_norm + np.sum(kappa * np.cos(omega * (x - mu)), axis=1))

    dens = _VonMises(
        domain,
        pdf,
        lambda x: -kappa * omega * np.sin(omega * (x - mu)),
        normalize=False,
        name="von_mises",
        config={"type": "von_mises", "mean": mu.tolist(), "kappa": kappa.tolist()},
    )
    dens._mu, dens._kappa = mu, kappa
    return dens


class _Mixture(Density):
    def _sample(self, n, rng):
        counts = rng.multinomial(n, self._weights)
        parts = [c.sample(k, rng) for c, k in zip(self._components, counts) if k > 0]
        x = np.concatenate(parts, axis=0)
        return x[rng.permutation(n)]


def mixture(components: Sequence[Density], weights: Sequence[float] | None = None) -> Density:
    """Mixture sum_k w_k p_k of densities on one domain; grad log p = sum_k w_k p_k grad log p_k / p."""
    components = list(components)
    if not components:
        raise ValueError("mixture() needs at least one component")
    domain = components[0].domain
    for c in components[1:]:
        if c.domain != domain:
            raise ValueError(f"all mixture components must share a domain, got {domain!r} and {c.domain!r}")
    w = np.ones(len(components)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(components),) or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(components)} non-negative numbers with a positive sum, got {weights!r}")
    w = w / w.sum()

    def pdf(x):
        return sum(wk * c.pdf(x) for wk, c in zip(w, components))

    def grad_log(x):
        num = sum(wk * c.pdf(x)[:, None] * c.grad_log_pdf(x) for wk, c in zip(w, components))
        return num / pdf(x)[:, None]

    supports = [c.support for c in components]
    support = None
    if not domain.bounded and all(s is not None for s in supports):
        support = Box(np.min([s.lower for s in supports], 0), np.max([s.upper for s in supports], 0))
    dens = _Mixture(
        domain,
        pdf,
        grad_log,
        support=support,
        normalize=False,
        name="mixture",
        config={"type": "mixture", "weights": w.tolist(), "components": [c.to_config() for c in components]},
    )
    dens._components, dens._weights = components, w
    return dens


def density_from_config(config: dict, domain: Domain) -> Density:
    """Build a built-in density from a plain-data table (as in TOML configs and stored results)."""
    config = {k: v for k, v in table(config, "density").items() if k != "domain"}
    kind = config.pop("type", None)
    if kind == "mixture":
        comps = [density_from_config(c, domain) for c in config.pop("components", [])]
        return mixture(comps, **config)
    makers = {
        "uniform": lambda: uniform(domain, **config),
        "gaussian": lambda: gaussian(domain=domain, **config),
        "cosine": lambda: cosine(domain, **config),
        "von_mises": lambda: von_mises(domain, **config),
    }
    if kind not in makers:
        raise ValueError(f"density type must be one of {sorted(makers) + ['mixture']}, got type={kind!r}")
    try:
        return makers[kind]()
    except TypeError as exc:
        raise ValueError(f"bad parameters for density {kind!r}: {config!r} ({exc})") from None


def truncated_kde(box: Box, points, bandwidth: float = 0.2, floor: float = 0.02) -> Density:
    """Gaussian kernel density estimate of ``points``, truncated to ``box``, mixed with a uniform floor.

    With K points p_k in R^d, bandwidth h and floor f in [0, 1],

        q(x) = (1 - f) * sum_k phi_h(x - p_k) / sum_k m_k + f / |box|,   x in box,

    where phi_h(z) = (2 pi h^2)^(-d/2) exp(-|z|^2 / (2 h^2)) and m_k is the mass of phi_h(. - p_k) inside the box,

        m_k = prod_i (erf((b_i - p_ki) / (sqrt(2) h)) - erf((a_i - p_ki) / (sqrt(2) h))) / 2

    for the box prod_i [a_i, b_i]. The normalisation is exact (no quadrature): the kernel sum integrates to
    sum_k m_k over the box, so q integrates to 1. The floor keeps q >= f / |box| > 0, hence log q finite, away
    from the points. The gradient of log q is analytic,

        grad log q(x) = -(1 - f) * sum_k phi_h(x - p_k) (x - p_k) / (h^2 sum_k m_k) / q(x).

    Parameters
    ----------
    box : Box
        The domain of the density (points outside it still contribute their truncated kernels).
    points : array_like, shape (K, d)
        The sample points, d = ``box.dim``, K >= 1, finite.
    bandwidth : float
        The kernel standard deviation h > 0.
    floor : float
        The weight f in [0, 1] of the uniform density mixed in.

    Returns
    -------
    Density
        Named ``"kde"``; its configuration holds the points, the bandwidth and the floor.

    Raises
    ------
    TypeError
        If ``box`` is not a :class:`Box`.
    ValueError
        If the points are not a finite (K, d) array, the bandwidth is not positive and finite, the floor is
        outside [0, 1], or the kernels have no mass inside the box (all points far outside it).
    """
    if not isinstance(box, Box):
        raise TypeError(f"box must be a Box, got box={type(box).__name__}")
    pts = np.array(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != box.dim or pts.shape[0] < 1:
        raise ValueError(f"points must have shape (K, {box.dim}) with K >= 1, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points must be finite (no NaN or infinity)")
    if isinstance(bandwidth, bool) or not (np.isscalar(bandwidth) and np.isreal(bandwidth)):
        raise TypeError(f"bandwidth must be a real number, got bandwidth={bandwidth!r}")
    if isinstance(floor, bool) or not (np.isscalar(floor) and np.isreal(floor)):
        raise TypeError(f"floor must be a real number, got floor={floor!r}")
    bandwidth, floor = float(bandwidth), float(floor)
    if not (np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be positive and finite, got bandwidth={bandwidth!r}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got floor={floor!r}")
    d = box.dim
    vol = float(box.volume)
    z = np.sqrt(2.0) * bandwidth
    mass = np.prod(0.5 * (special.erf((box.upper - pts) / z) - special.erf((box.lower - pts) / z)), axis=1)  # (K,)
    if not mass.sum() > 0:
        raise ValueError(f"the kernels of the points have no mass inside {box!r} (bandwidth {bandwidth})")
    # sum_k m_k written as K * mean(m_k), and (2 pi h^2)^(d/2) with exponent 1.0 for d = 2: the same floating
    # point operations as the bridge's original estimate, so its numbers are unchanged
    denom = (2 * np.pi * bandwidth**2) ** (d / 2) * len(pts) * mass.mean()

    def parts(x: np.ndarray):
        diff = x[:, None, :] - pts[None, :, :]
        k = np.exp(-0.5 * (diff**2).sum(-1) / bandwidth**2) / denom
        return diff, k

    def pdf(x: np.ndarray) -> np.ndarray:
        return (1 - floor) * parts(x)[1].sum(1) + floor / vol

    def grad_log(x: np.ndarray) -> np.ndarray:
        diff, k = parts(x)
        return -(1 - floor) * np.einsum("pk,pkd->pd", k, diff) / bandwidth**2 / pdf(x)[:, None]

    return Density(box, pdf, grad_log, normalize=False, name="kde",
                   config={"type": "kde", "points": pts.tolist(), "bandwidth": bandwidth, "floor": floor})
