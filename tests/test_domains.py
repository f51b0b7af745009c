import numpy as np
import pytest

from continuum_attention import Box, Euclidean, Grid, Torus
from continuum_attention.domains import as_points, domain_from_config


def test_torus_minimum_image_is_shortest_difference():
    T = Torus([1.0, 2.0])
    x = np.array([[0.05, 1.9]])
    y = np.array([[0.95, 0.1]])
    d = T.difference(x, y)
    np.testing.assert_allclose(d, [[0.1, -0.2]], rtol=0, atol=1e-15)  # reaches 1.7e-16
    # the minimum image never exceeds half a period on any axis
    rng = np.random.default_rng(0)
    a, b = rng.random((500, 2)) * [1, 2], rng.random((500, 2)) * [1, 2]
    assert np.all(np.abs(T.difference(a, b)) <= np.array([0.5, 1.0]) + 1e-15)


def test_wrap_and_validate():
    T = Torus(1.0)
    np.testing.assert_array_equal(T.validate_points([1.25, -0.25]).ravel(), [0.25, 0.75])  # exact: dyadic values
    B = Box([0, 0], [1, 2])
    with pytest.raises(ValueError, match="outside"):
        B.validate_points([[0.5, 2.5]])
    # a Box does not wrap: differences are plain
    np.testing.assert_allclose(B.difference([0.9, 0.1], [0.1, 1.9]), [0.8, -1.8], rtol=1e-15)  # reaches 1.2e-16


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Torus([1.0, -1.0]), "lengths"),
        (lambda: Grid(Torus([1, 1, 1, 1]), 4), "1 to 3 dimensions"),  # particles take any d, grids do not
        (lambda: Box([0, 0], [1]), "same length"),
        (lambda: Box([0], [0]), "upper must exceed lower"),
        (lambda: Euclidean(0), "dim"),
        (lambda: as_points([[0.0, np.nan]]), "NaN"),
        (lambda: as_points(np.zeros((3, 2)), 3), "dimension"),
    ],
)
def test_bad_domains_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_domain_config_round_trip():
    for dom in (Torus([1.0, 3.0]), Box([-1.0], [2.0]), Euclidean(3)):
        assert domain_from_config(dom.to_config()) == dom
    with pytest.raises(ValueError, match="type"):
        domain_from_config({"type": "Sphere"})


def test_grid_nodes_and_integration():
    T = Torus(2.0)
    g = Grid(T, 8)
    np.testing.assert_array_equal(g.axes[0], np.arange(8) * 0.25)  # exact: dyadic nodes;  # periodic nodes start at 0
    B = Box([0.0, -1.0], [1.0, 1.0])
    gb = Grid(B, (4, 5))
    np.testing.assert_array_equal(gb.axes[0], [0.125, 0.375, 0.625, 0.875])  # exact: dyadic  # cell centres
    assert gb.points.shape == (20, 2)
    # midpoint rule is exact for linear functions on a box and spectral for periodic trigonometric ones
    x = gb.points
    assert gb.integrate(3 + x[:, 0] + 2 * x[:, 1]) == pytest.approx(2 * 3 + 1.0, rel=1e-14)
    gt = Grid(Torus([1.0, 1.0]), 16)
    y = gt.points
    assert gt.integrate(np.cos(2 * np.pi * y[:, 0]) ** 2 * np.sin(4 * np.pi * y[:, 1]) ** 2) == pytest.approx(0.25, rel=1e-13)
    with pytest.raises(ValueError, match="shape"):
        Grid(T, 2)
    with pytest.raises(ValueError, match="Torus or a Box"):
        Grid(Euclidean(1), 10)


def test_grid_shape_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="shape must be an int or 1 ints"):
        Grid(Torus(1.0), [8, 8])
