"""The validation layer: each bad input gets one ValueError (bad value) or TypeError (wrong type) naming the
parameter and the value; the CLI turns them into one line and exit status 2."""

import numpy as np
import pytest

from continuum_attention import AttentionOperator, Box, Grid, Torus
from continuum_attention import densities as D
from continuum_attention import _validation as V
from continuum_attention import compare
from continuum_attention.problem import Problem
from continuum_attention.cli import main
from continuum_attention.domains import Euclidean
from continuum_attention.metrics import Euclidean as EuclideanMetric
from continuum_attention.metrics import Learned, Mahalanobis, ScaledMetric

X = np.random.default_rng(0).random((20, 2))


# ------------------------------------------------------------------------------------------------ the layer
@pytest.mark.parametrize("value, exc", [
    (1, None), (2.5, None), (np.float32(0.1), None), (np.array(3.0), None),
    ("1.5", TypeError), (None, TypeError), (True, TypeError), (1 + 2j, TypeError), ([1.0], TypeError),
    (0.0, ValueError), (-1e-300, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
    (10**400, ValueError),  # an int beyond float range is a bad value, not an OverflowError
])
def test_positive_float(value, exc):
    if exc is None:
        assert V.positive_float(value, "eps") == float(value)
    else:
        with pytest.raises(exc, match="eps"):
            V.positive_float(value, "eps")


@pytest.mark.parametrize("value, exc", [
    (3, None), (np.int64(3), None), (3.0, None),
    (2.5, ValueError), (0, ValueError), (-4, ValueError),
    ("3", TypeError), (True, TypeError), (None, TypeError), (3 + 0j, TypeError),
])
def test_positive_int_refuses_what_it_would_truncate(value, exc):
    if exc is None:
        assert V.positive_int(value, "N") == 3
    else:
        with pytest.raises(exc, match="N"):
            V.positive_int(value, "N")


def test_integer_bounds_on_both_sides():
    assert V.integer(10, "k", minimum=3, maximum=10) == 10 and V.integer(3, "k", minimum=3, maximum=10) == 3
    with pytest.raises(ValueError, match="k must be an integer <= 10"):
        V.integer(11, "k", minimum=3, maximum=10)
    with pytest.raises(ValueError, match="k must be an integer >= 3"):
        V.integer(2, "k", minimum=3, maximum=10)


def test_option():
    assert V.option("numba", "backend", ("numba", "numpy")) == "numba"
    assert V.option(True, "truncate", (True, False, "auto")) is True
    for bad in ("cuda", 1, None, np.zeros(3)):  # 1 == True, but 1 is not the option True
        with pytest.raises(ValueError, match="backend must be one of"):
            V.option(bad, "backend", ("numba", "numpy", True))


@pytest.mark.parametrize("value, exc, fragment", [
    (np.ones(3, dtype=complex), TypeError, "real numbers"),
    (["a", "b"], TypeError, "real numbers"),
    ([[1.0, 2.0], [3.0]], TypeError, "rectangular"),
    (np.array([True, False]), TypeError, "real numbers"),
    ("abc", TypeError, "real numbers"),
    ([1.0, np.nan], ValueError, "NaN"),
    (np.ones((2, 2)), ValueError, "dimension"),
])
def test_real_array(value, exc, fragment):
    with pytest.raises(exc, match=fragment):
        V.real_array(value, "H", ndim=1)


def test_seeds_are_integers():
    a = V.random_generator(5).random(3)
    np.testing.assert_array_equal(a, np.random.default_rng(5).random(3))
    for bad, exc in ((2.0, TypeError), ("7", TypeError), (True, TypeError), (-1, ValueError)):
        with pytest.raises(exc, match="seed"):
            V.random_generator(bad)


# ----------------------------------------------------------------------------------- public boundaries
CUBE = Torus([1.0, 1.0])


@pytest.mark.parametrize("call, exc, fragment", [
    (lambda: AttentionOperator(X, "0.1"), TypeError, "eps"),
    (lambda: AttentionOperator(X, 5e-324 * 0), ValueError, "eps"),
    (lambda: AttentionOperator(X + 0j, 0.1), TypeError, "points"),
    (lambda: AttentionOperator(X, 0.1, domain="torus"), TypeError, "domain"),
    (lambda: AttentionOperator(X, 0.1, metric="euclid"), TypeError, "metric"),
    (lambda: AttentionOperator(X, 0.1, backend="cuda"), ValueError, "backend"),
    (lambda: AttentionOperator(X, 0.1, truncate=1), ValueError, "truncate"),
    (lambda: AttentionOperator(X, 0.1, tolerance="small"), TypeError, "tolerance"),
    (lambda: AttentionOperator(X, 0.1, sinkhorn_max_iter=2.5), ValueError, "sinkhorn_max_iter"),
    (lambda: AttentionOperator(X, 0.1).apply(np.ones(20) * 1j), TypeError, "H"),
    (lambda: AttentionOperator(X, 0.1).apply(np.ones(19)), ValueError, "H"),
    (lambda: AttentionOperator(X, 0.1).apply_rows("0", np.ones(20)), TypeError, "rows"),
    (lambda: Grid(CUBE, "abc"), TypeError, "shape"),
    (lambda: Grid(CUBE, 2.5), ValueError, "shape"),
    (lambda: Grid(CUBE, (8, 2)), ValueError, "shape"),
    (lambda: Grid("torus", 8), TypeError, "domain"),
    (lambda: Torus("abc"), TypeError, "lengths"),
    (lambda: Box([0, 0], ["a", 1]), TypeError, "upper"),
    (lambda: Euclidean(2.5), ValueError, "dim"),
    (lambda: Mahalanobis("identity"), TypeError, "M"),
    (lambda: Learned(3), TypeError, "phi"),
    (lambda: EuclideanMetric(dim="2"), TypeError, "dim"),
    (lambda: ScaledMetric(EuclideanMetric(), 0.0), ValueError, "scale"),
    (lambda: ScaledMetric("euclid", 1.0), TypeError, "metric"),
    (lambda: D.gaussian([np.nan], [[1.0]]), ValueError, "mean"),
    (lambda: D.gaussian(["0"], [[1.0]]), TypeError, "mean"),
    (lambda: D.cosine(CUBE, "0.5"), TypeError, "amplitude"),
    (lambda: D.cosine(CUBE, 0.5, 1.5), ValueError, "wavevector"),
    (lambda: D.von_mises(CUBE, [0.1, 0.2, 0.3]), ValueError, "mean"),
    (lambda: D.uniform(CUBE).sample(2.5), ValueError, "n"),
    (lambda: D.uniform(CUBE).sample(10, "seed"), TypeError, "seed"),
    (lambda: D.Density("torus", lambda x: x[:, 0]), TypeError, "domain"),
    (lambda: D.Density(CUBE, "pdf"), TypeError, "pdf"),
    (lambda: Problem(CUBE, "uniform"), TypeError, "density"),
    (lambda: Problem(CUBE, D.uniform(CUBE), "euclid"), TypeError, "metric"),
    (lambda: Problem(CUBE, D.uniform(CUBE), None, "cos(x)"), TypeError, "initial"),
    (lambda: Problem(CUBE, D.uniform(CUBE), t_final=float("nan")), ValueError, "t_final"),
    (lambda: compare.ConvergenceStudy(lambda N, e, s: 1.0, [100, 2.5], [0.1]).run(progress=False), ValueError, "N_values"),
    (lambda: compare.ConvergenceStudy(lambda N, e, s: 1.0, [100], "0.1").run(progress=False), TypeError, "eps_values"),
    (lambda: compare.ConvergenceStudy(lambda N, e, s: np.nan, [100], [0.1], seeds=[3]).run(progress=False),
     ValueError, r"N=100_eps=0.1, seed=3"),
    (lambda: compare.fit_slope([1, 2, 3], [1.0, 0.0, 2.0]), ValueError, "positive y"),
    (lambda: compare.fit_slope([1, 2], [1.0, np.nan]), ValueError, "NaN"),
    (lambda: compare.consistency_error(Problem(CUBE, D.uniform(CUBE), None, np.sin), 10.5, 0.1), ValueError, "N"),
])
def test_bad_input_table(call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()


# ------------------------------------------------------------------------------------------------- the CLI
BASE = """
[problem]
domain = {domain}
density = {{ type = "cosine", amplitude = 0.5, wavevector = [1] }}
initial = "cos(2*pi*x)"
t_final = 0.001

[particles]
N = {N}
eps = 1e-3
seed = {seed}

[pde]
shape = {shape}
"""


@pytest.mark.parametrize("fields, fragment", [
    ({"seed": '"zero"'}, "[particles] seed"),
    ({"seed": "1.5"}, "[particles] seed"),
    ({"N": "2.5"}, "[particles] N"),
    ({"N": '"many"'}, "[particles] N"),
    ({"shape": '"big"'}, "[pde] shape"),
    ({"shape": "2"}, "[pde] shape"),
    ({"domain": "5"}, "domain"),
])
def test_cli_config_errors_are_one_line_naming_the_key(tmp_path, capsys, fields, fragment):
    values = {"domain": '{ type = "Torus", lengths = [1.0] }', "N": "200", "seed": "0", "shape": "32", **fields}
    cfg = tmp_path / "bad.toml"
    cfg.write_text(BASE.format(**values))
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1, err


@pytest.mark.parametrize("eps", [5e-324, 1e-310, 1e-300])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("normalization", ["row", ("alpha", 0.5), "sinkhorn"])
def test_smallest_eps_gives_the_identity(eps, backend, normalization):
    """eps down to the smallest float: 1/(2 eps) overflows, and S is exactly I (distinct points), never NaN."""
    op = AttentionOperator(X, eps, backend=backend, normalization=normalization)
    H = np.arange(20.0)
    np.testing.assert_array_equal(op.apply(H), H)
    np.testing.assert_array_equal(op.dense(), np.eye(20))
    cut = AttentionOperator(X, eps, domain=CUBE, truncate=True, backend=backend, normalization=normalization)
    assert cut.nnz == 20
    np.testing.assert_array_equal(cut.apply(H), H)


@pytest.mark.parametrize("source, fragment", [
    ("9**9**9**9", "cannot be evaluated"),       # integer literals are floats: overflows at once, never hangs
    ("1/0", "cannot be evaluated"),
    ("x" * 2001, "2001 characters"),
    ("+".join(["x"] * 300), "syntax nodes"),
    ("1j*x", "only real numbers"),
    ("x.real", "Attribute"),
])
def test_configuration_expressions_are_bounded(source, fragment):
    import time

    from continuum_attention.problem import Expression

    start = time.perf_counter()
    with pytest.raises(ValueError, match=fragment):
        Expression(source, 1)(np.array([[0.25], [0.5]]))
    assert time.perf_counter() - start < 1.0  # measured ~1 ms


def test_expression_bounds_on_both_sides():
    from continuum_attention.problem import MAX_EXPRESSION_CHARS, Expression

    ok = "x" + " " * (MAX_EXPRESSION_CHARS - 1)
    np.testing.assert_array_equal(Expression(ok, 1)(np.array([[0.5]])), [0.5])
    with pytest.raises(ValueError, match="characters"):
        Expression(ok + " ", 1)
    np.testing.assert_allclose(Expression("2**10 * x", 1)(np.array([[0.5]])), [512.0], rtol=0)


def test_memory_is_refused_before_allocating_with_the_estimate(monkeypatch):
    """The estimate is compared with the budget on both sides: just above refuses, just below runs."""
    need = 8.0 * 20 * 20 + 3 * 8.0 * 20 * 20  # dense() of N = 20: the matrix and three row-block temporaries
    op = AttentionOperator(X, 0.1)
    monkeypatch.setenv("CONTINUUM_ATTENTION_MEMORY", str(int(need) - 1))
    with pytest.raises(ValueError, match=r"dense\(\) \(an 20 x 20 matrix\) needs about .* GiB"):
        op.dense()
    monkeypatch.setenv("CONTINUUM_ATTENTION_MEMORY", str(int(need)))
    assert op.dense().shape == (20, 20)
    monkeypatch.setenv("CONTINUUM_ATTENTION_MEMORY", "1000")
    with pytest.raises(ValueError, match=r"sample\(n=1000000\)"):
        D.uniform(CUBE).sample(10**6)


def test_an_enormous_sample_is_refused_at_once():
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match="GiB"):
        D.uniform(CUBE).sample(10**13)  # 10^13 points: hundreds of TiB
    assert time.perf_counter() - start < 1.0


def test_run_lengths_are_refused_before_starting_on_both_sides():
    import time

    from continuum_attention import AttentionLimitPDE, ParticleSolver
    from continuum_attention.particles import MAX_LAYERS

    solver = ParticleSolver(X, 1e-3)
    start = time.perf_counter()
    for kwargs in ({"n_layers": MAX_LAYERS + 1}, {"t_final": 1e300}, {"n_layers": 10**9}):
        with pytest.raises(ValueError, match="layers"):
            solver.run(np.zeros(20), **kwargs)
    assert time.perf_counter() - start < 1.0
    assert solver.run(np.zeros(20), n_layers=5, max_layers=5, n_snapshots=1).layers.tolist() == [5]
    with pytest.raises(ValueError, match="max_layers=4"):
        solver.run(np.zeros(20), n_layers=5, max_layers=4)
    with pytest.raises(ValueError, match="n_layers"):
        solver.run(np.zeros(20), n_layers=2.5)
    circle = Torus(1.0)
    pde = AttentionLimitPDE(Grid(circle, 16), D.uniform(circle))
    for t in (1e300, 1e12):
        with pytest.raises(ValueError, match="steps"):
            pde.solve(np.zeros(16), t, method="explicit")
    # exactly max_steps runs, one fewer is refused: 10 snapshot intervals of 3 steps
    dt = pde.max_stable_dt() * 0.5
    assert pde.solve(np.zeros(16), 30 * dt, method="explicit", dt=dt, max_steps=30, n_snapshots=11).n_steps == 30
    with pytest.raises(ValueError, match="max_steps=29"):
        pde.solve(np.zeros(16), 30 * dt, method="explicit", dt=dt, max_steps=29, n_snapshots=11)


def test_a_density_negative_on_a_narrow_interval_is_refused_where_it_is_met():
    """Negative on (0.5005, 0.5015), between the quadrature nodes: accepted at construction (the quadrature
    cannot see it), refused the moment a sample or a grid node lands there, never used silently."""
    circle = Torus(1.0)
    dip = lambda x: np.where(np.abs(x[:, 0] - 0.501) < 5e-4, -1.0, 1.0)  # noqa: E731
    dens = D.Density(circle, dip)
    with pytest.raises(ValueError, match="non-negative"):
        dens.pdf(np.array([[0.501]]))
    with pytest.raises(ValueError, match="non-negative"):
        dens.sample(20000, 0)  # candidates land in the dip
    from continuum_attention import AttentionLimitPDE

    with pytest.raises(ValueError, match="non-negative"):
        AttentionLimitPDE(Grid(circle, 1000), dens)  # node 501 sits at 0.501
