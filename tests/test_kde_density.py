"""densities.truncated_kde: exact normalisation on the box, analytic grad log q, the formula, input checks."""

import numpy as np
import pytest

from continuum_attention.densities import Density, truncated_kde
from continuum_attention.domains import Box, Torus


def _gauss_legendre(box: Box, panel: float, order: int = 12):
    """Tensor-product composite Gauss-Legendre rule with panels no wider than ``panel``."""
    xi, wi = np.polynomial.legendre.leggauss(order)
    axes, weights = [], []
    for a, b in zip(box.lower, box.upper):
        edges = np.linspace(a, b, int(np.ceil((b - a) / panel)) + 1)
        half, mid = 0.5 * np.diff(edges), 0.5 * (edges[1:] + edges[:-1])
        axes.append((mid[:, None] + half[:, None] * xi).ravel())
        weights.append((half[:, None] * wi).ravel())
    nodes = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, box.dim)
    w = weights[0]
    for wk in weights[1:]:
        w = np.multiply.outer(w, wk).ravel()
    return nodes, w


CASES = [  # (box, points, bandwidth, floor): points inside, on and outside the box edges
    (Box([0.0], [2.0]), [[0.1], [1.0], [1.95], [2.3], [-0.2]], 0.15, 0.05),
    (Box([-1.75, -1.25], [2.75, 1.75]), "moons", 0.2, 0.02),
    (Box([-1.0, 0.0, 0.0], [1.0, 1.0, 0.5]), "cube", 0.25, 0.1),
]


def _points(box: Box, spec):
    if not isinstance(spec, str):
        return np.asarray(spec, float)
    rng = np.random.default_rng(3)
    n = 40 if spec == "moons" else 15
    # spread a little beyond the box so that some kernels are cut off strongly
    return box.lower - 0.1 + (box.lengths + 0.2) * rng.random((n, box.dim))


@pytest.mark.parametrize("box, spec, h, f", CASES)
def test_integral_over_the_box_is_one(box, spec, h, f):
    """Composite Gauss-Legendre (12 nodes on panels of width h, exact to rounding for these Gaussians):
    the integral of q over the box is 1 to 1e-12, for the kernel part alone too (floor 0)."""
    pts = _points(box, spec)
    nodes, w = _gauss_legendre(box, h)
    for floor in (f, 0.0):
        q = truncated_kde(box, pts, h, floor)
        assert isinstance(q, Density) and q.name == "kde"
        assert abs(q.pdf(nodes) @ w - 1.0) < 1e-12


@pytest.mark.parametrize("box, spec, h, f", CASES)
def test_grad_log_pdf_matches_finite_differences(box, spec, h, f):
    pts = _points(box, spec)
    q = truncated_kde(box, pts, h, f)
    rng = np.random.default_rng(7)
    x = box.lower + box.lengths * (0.02 + 0.96 * rng.random((60, box.dim)))
    step = 1e-5
    fd = np.empty_like(x)
    for i in range(box.dim):
        e = np.zeros(box.dim)
        e[i] = step
        fd[:, i] = (q.log_pdf(x + e) - q.log_pdf(x - e)) / (2 * step)
    g = q.grad_log_pdf(x)
    np.testing.assert_allclose(g, fd, rtol=2e-8, atol=2e-8 * np.abs(fd).max())  # reaches 1.6e-3 of 1e-6 (FD)


def test_the_formula_in_one_dimension():
    """q(x) = (1 - f) phi_h(x - p) / m + f / L for one point p in [0, L], m the kernel's mass in [0, L]."""
    from scipy.special import erf
    from scipy.stats import norm

    L, p, h, f = 3.0, 0.4, 0.5, 0.1
    q = truncated_kde(Box([0.0], [L]), [[p]], h, f)
    x = np.linspace(0.0, L, 31)
    m = 0.5 * (erf((L - p) / (np.sqrt(2) * h)) - erf(-p / (np.sqrt(2) * h)))
    np.testing.assert_allclose(q.pdf(x[:, None]), (1 - f) * norm.pdf(x, p, h) / m + f / L, rtol=2e-15)  # reaches 1.9e-16
    np.testing.assert_allclose(q.grad_log_pdf(x[:, None])[:, 0],
                               -(1 - f) * norm.pdf(x, p, h) * (x - p) / (h**2 * m) / q.pdf(x[:, None]), rtol=3e-15,
                               atol=1e-15)  # reaches 2.9e-16 relative, 8.9e-16 absolute


def test_floor_bounds_the_density_below_and_one_is_uniform():
    box = Box([0.0, 0.0], [4.0, 2.0])
    x = box.lower + box.lengths * np.random.default_rng(0).random((200, 2))
    q = truncated_kde(box, [[0.5, 0.5]], 0.1, 0.2)
    assert np.all(q.pdf(x) >= 0.2 / box.volume)
    u = truncated_kde(box, [[0.5, 0.5]], 0.1, 1.0)
    np.testing.assert_allclose(u.pdf(x), 1 / box.volume, rtol=1e-15)  # reaches exact
    np.testing.assert_array_equal(u.grad_log_pdf(x), 0.0)


def test_samples_lie_in_the_box_and_config_describes_the_estimate():
    box = Box([0.0, 0.0], [1.0, 1.0])
    q = truncated_kde(box, [[0.2, 0.3], [0.7, 0.8]], 0.1, 0.05)
    s = q.sample(500, rng=1)
    assert s.shape == (500, 2) and np.all(box.contains(s))
    cfg = q.to_config()
    assert cfg["type"] == "kde" and cfg["bandwidth"] == 0.1 and cfg["floor"] == 0.05
    assert cfg["points"] == [[0.2, 0.3], [0.7, 0.8]]


@pytest.mark.parametrize("kwargs, error", [
    (dict(points=[[0.5]]), ValueError),                   # wrong dimension
    (dict(points=np.zeros((0, 2))), ValueError),          # no points
    (dict(points=[[0.5, np.nan]]), ValueError),
    (dict(bandwidth=0.0), ValueError),
    (dict(bandwidth=-0.1), ValueError),
    (dict(bandwidth=np.inf), ValueError),
    (dict(bandwidth="0.2"), TypeError),
    (dict(floor=-0.01), ValueError),
    (dict(floor=1.5), ValueError),
    (dict(floor=True), TypeError),
    (dict(points=[[1e3, 1e3]], bandwidth=0.01), ValueError),  # no kernel mass inside the box
])
def test_bad_input_is_refused(kwargs, error):
    args = dict(box=Box([0.0, 0.0], [1.0, 1.0]), points=[[0.5, 0.5]], bandwidth=0.2, floor=0.02)
    args.update(kwargs)
    with pytest.raises(error):
        truncated_kde(**args)
    with pytest.raises(TypeError):
        truncated_kde(Torus([1.0, 1.0]), [[0.5, 0.5]])


def test_bridge_kde_density_is_truncated_kde_on_the_bridge_box():
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from continuum_attention.learn import bridge as B

    pts = np.random.default_rng(2).normal(size=(50, 2))
    x = np.random.default_rng(5).uniform(B.BOX[0], B.BOX[1], (40, 2))
    a, b = B.kde_density(pts), truncated_kde(Box(*B.BOX), pts, 0.2, 0.02)
    np.testing.assert_array_equal(a.pdf(x), b.pdf(x))
    np.testing.assert_array_equal(a.grad_log_pdf(x), b.grad_log_pdf(x))
