import numpy as np
import pytest

from continuum_attention import Torus
from continuum_attention import densities as D
from continuum_attention.config import load_config
from continuum_attention.problem import Expression, Problem


def test_expression_evaluates_numpy_in_coordinates():
    f = Expression("cos(2*pi*x) + 0.3*sin(4*pi*y)", 2)
    pts = np.array([[0.0, 0.125], [0.5, 0.0]])
    np.testing.assert_allclose(f(pts), [1.3, -1.0], rtol=0, atol=1e-15)  # reaches exact
    np.testing.assert_array_equal(Expression("2.5", 1)(np.zeros((3, 1))), [2.5, 2.5, 2.5])  # exact by construction: a constant


@pytest.mark.parametrize(
    "source, match",
    [
        ("__import__('os')", "unknown name"),
        ("x.real", "Attribute"),
        ("[t.__class__ for t in x]", "ListComp"),
        ("[t.__class__ for t in x][0] is not None", "not allowed"),
        ("lambda: x", "Lambda"),
        ("(lambda: 1)()", "other than a listed function"),
        ("x[0]", "Subscript"),
        ("cos(", "not a valid expression"),
        ("y", "unknown name"),
    ],
)
def test_expression_refuses_unknown_names_and_syntax(source, match):
    with pytest.raises(ValueError, match=match):
        Expression(source, 1)


def test_problem_round_trip_and_validation():
    cfg = {
        "domain": {"type": "Torus", "lengths": [1.0]},
        "density": {"type": "cosine", "amplitude": 0.5, "wavevector": [1]},
        "initial": "cos(2*pi*x)",
        "t_final": 0.01,
    }
    prob = Problem.from_config(cfg)
    again = Problem.from_config(prob.to_config())
    pts = np.linspace(0, 1, 7)[:, None]
    np.testing.assert_array_equal(again.initial(pts), prob.initial(pts))
    np.testing.assert_array_equal(again.density.pdf(pts), prob.density.pdf(pts))
    with pytest.raises(ValueError, match="unknown key"):
        Problem.from_config({**cfg, "tfinal": 1})
    with pytest.raises(ValueError, match="t_final"):
        Problem(Torus(1.0), D.uniform(Torus(1.0)), t_final=-1.0)
    with pytest.raises(ValueError, match="density lives on"):
        Problem(Torus(2.0), D.uniform(Torus(1.0)))


def test_config_unknown_keys_list_valid_ones(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[problem]\ndomain = {type="Torus", lengths=[1.0]}\ndensity = {type="uniform"}\ninitial = "x"\n[particles]\nN = 100\n')
    cfg = load_config(good, "run")
    assert cfg["particles"]["N"] == 100 and cfg["particles"]["eps"] == 1e-3 and cfg["output"]["name"] == "good"
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text() + "epsilon = 0.1\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['epsilon'\] in \[particles\]; valid keys: \['N', 'eps'"):
        load_config(bad, "run")
    worse = tmp_path / "worse.toml"
    worse.write_text(good.read_text() + "[solver]\nx = 1\n")
    with pytest.raises(ValueError, match="unknown table"):
        load_config(worse, "run")
    only_problem = tmp_path / "only_problem.toml"
    only_problem.write_text(good.read_text().split("[particles]")[0])
    with pytest.raises(ValueError, match="needs a \\[study\\] table"):
        load_config(only_problem, "study")
    with pytest.raises(ValueError, match="unknown table.*particles"):
        load_config(good, "study")
