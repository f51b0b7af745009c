import numpy as np
import pytest

from continuum_attention import Torus
from continuum_attention import compare
from continuum_attention import densities as D
from continuum_attention.cli import main
from continuum_attention.metrics import Mahalanobis, PseudoMetric
from continuum_attention.problem import Problem
from continuum_attention.storage import SweepFile


def circle_problem(t_final=0.01):
    circle = Torus(1.0)
    H0 = lambda x: np.cos(2 * np.pi * x[:, 0]) + 0.3 * np.sin(4 * np.pi * x[:, 0])  # noqa: E731
    return Problem(circle, D.cosine(circle, 0.5, 1), None, H0, t_final)


def test_limit_operator_matches_closed_form_on_the_circle():
    prob = circle_problem()
    x = np.linspace(0, 1, 50, endpoint=False)[:, None]
    s = x[:, 0]
    f, fp = np.cos(2 * np.pi * s), -2 * np.pi * np.sin(2 * np.pi * s)
    logp_prime = -np.pi * np.sin(2 * np.pi * s) / (1 + 0.5 * np.cos(2 * np.pi * s))
    exact = -4 * np.pi**2 * f + 2 * logp_prime * fp  # f'' + 2 (log p)' f'
    got = compare.limit_operator(lambda y: np.cos(2 * np.pi * y[:, 0]), prob.density, x)
    np.testing.assert_allclose(got, exact, atol=2e-6 * np.abs(exact).max())  # reaches 2.2e-7 * max


class _SameTensorNoShortcut(PseudoMetric):
    """A constant metric presented as a varying one, to exercise the general divergence path."""

    is_metric = True
    is_constant = False

    def __init__(self, M):
        self.M = np.asarray(M)

    def tensor(self, points):
        return np.broadcast_to(self.M, (len(points), *self.M.shape))


def test_limit_operator_general_path_equals_constant_metric_formula():
    torus = Torus([1.0, 1.0])
    dens = D.von_mises(torus, [0.4, 0.6], [1.0, 2.0])
    M = np.array([[2.0, 0.5], [0.5, 1.0]])
    f = lambda y: np.sin(2 * np.pi * y[:, 0]) * np.cos(2 * np.pi * y[:, 1])  # noqa: E731
    pts = dens.sample(40, 0)
    fast = compare.limit_operator(f, dens, pts, Mahalanobis(M))
    general = compare.limit_operator(f, dens, pts, _SameTensorNoShortcut(M))
    np.testing.assert_allclose(general, fast, atol=1e-5 * np.abs(fast).max())
    # and the constant formula itself: tr(M^-1 Hess f) + 2 grad log p . M^-1 grad f
    Minv = np.linalg.inv(M)
    u, v = 2 * np.pi * pts[:, 0], 2 * np.pi * pts[:, 1]
    grad = 2 * np.pi * np.stack([np.cos(u) * np.cos(v), -np.sin(u) * np.sin(v)], 1)
    hess = -4 * np.pi**2 * np.stack(
        [np.stack([np.sin(u) * np.cos(v), np.cos(u) * np.sin(v)], 1), np.stack([np.cos(u) * np.sin(v), np.sin(u) * np.cos(v)], 1)], 1
    )
    exact = np.einsum("ij,mji->m", Minv, hess) + 2 * np.einsum("mi,ij,mj->m", dens.grad_log_pdf(pts), Minv, grad)
    np.testing.assert_allclose(fast, exact, atol=3e-6 * np.abs(exact).max())  # reaches 2.8e-7 * max


def test_features_agree_with_pde_on_the_circle():
    """Issue 3: N = 8000, eps = 1e-4, t = 0.01: RMS error at the points below 0.04."""
    prob = circle_problem()
    err = compare.propagation_error(prob, 8000, 1e-4, seed=0, grid_shape=512, operator_kwargs={"truncate": True})
    assert err.extra["layers"] == 200
    assert err.rms < 0.04


def test_mean_error_over_seeds_falls_with_N():
    prob = circle_problem(t_final=0.005)
    sol = compare._pde(prob, "features", 256).solve(prob.initial, prob.t_final, n_snapshots=2)
    mean = {
        N: np.mean([compare.propagation_error(prob, N, 2.5e-4, s, solution=sol, operator_kwargs={"truncate": True}).rms for s in range(4)])
        for N in (500, 4000)
    }
    # sampling error ~ N^-1/2: eight times the points should cut it by about sqrt(8) = 2.8
    assert mean[4000] < 0.6 * mean[500]


def test_walkers_track_fokker_planck():
    circle = Torus(1.0)
    prob = Problem(circle, D.cosine(circle, 0.5, 1), None, lambda x: 1 + 0.8 * np.cos(2 * np.pi * (x[:, 0] - 0.3)), 0.01)
    err = compare.walker_error(prob, 3000, 5e-4, seed=1, grid_shape=256)
    assert err.extra["layers"] == 40
    assert err.extra["l1"] < 0.1 and err.extra["w1"] < 0.01


def test_n_layers_must_be_whole():
    assert compare.n_layers_for(0.01, 1e-4) == 200
    with pytest.raises(ValueError, match="not a multiple of the layer time"):
        compare.n_layers_for(0.01, 3e-4)


def test_fit_slope_and_best_eps_on_synthetic_errors():
    N = np.array([1e3, 4e3, 1.6e4, 6.4e4])
    slope, err = compare.fit_slope(N, 3.0 * N**-0.5)
    assert slope == pytest.approx(-0.5, abs=1e-12) and err < 1e-10
    eps = np.geomspace(1e-4, 1e-1, 25)
    a, b = 2.0, 0.3
    errors = a * eps[None, :] + b / (np.sqrt(N)[:, None] * eps[None, :])  # eps* = sqrt(b / a) N^-1/4
    res = compare.ConvergenceResult(N, eps, np.array([0]), errors[:, :, None])
    np.testing.assert_allclose(res.best_eps(), np.sqrt(b / a) * N**-0.25, rtol=7.5e-3)  # reaches 7.4e-4
    assert res.best_eps_exponent()[0] == pytest.approx(-0.25, abs=0.02)


def test_convergence_study_resumes_without_recomputing(tmp_path):
    calls = []

    def measure(N, eps, seed):
        calls.append((N, eps, seed))
        rng = np.random.default_rng(seed)
        return N**-0.5 * (1 + 0.01 * rng.standard_normal())

    path = tmp_path / "sweep.h5"
    study = compare.ConvergenceStudy(measure, [100, 400, 1600], [0.1], seeds=[0, 1, 2], store=SweepFile(path))
    first = study.run(progress=False)
    assert len(calls) == 9
    second = study.run(progress=False)
    assert len(calls) == 9  # nothing recomputed
    np.testing.assert_array_equal(first.errors, second.errors)
    slope, stderr = first.slope_in_N()
    assert slope == pytest.approx(-0.5, abs=0.02) and stderr < 0.02
    assert np.all(first.ci > 0)


def test_circular_wasserstein_of_point_masses():
    # masses at 0.1 and 0.9 on a circle of length 1 are 0.2 apart (through 0), not 0.8
    w1 = compare.circular_wasserstein1(np.array([0.1]), np.array([1.0]), np.array([0.9]), np.array([1.0]), 1.0)
    assert w1 == pytest.approx(0.2, abs=1e-12)
    # a grid of 100 equal masses shifted by half its spacing: every mass moves 0.005
    x = np.linspace(0, 1, 100, endpoint=False)
    assert compare.circular_wasserstein1(x, np.ones(100), np.mod(x + 0.005, 1), np.ones(100), 1.0) == pytest.approx(0.005, abs=1e-12)
    assert compare.circular_wasserstein1(x, np.ones(100), np.mod(x + 0.05, 1), np.ones(100), 1.0) == pytest.approx(0.0, abs=1e-12)


def test_cli_run_writes_results_and_plot(tmp_path, capsys):
    cfg = tmp_path / "small.toml"
    cfg.write_text(
        '[problem]\ndomain = {type="Torus", lengths=[1.0]}\ndensity = {type="cosine", amplitude=0.5, wavevector=[1]}\n'
        'initial = "cos(2*pi*x)"\nt_final = 0.002\n[particles]\nN = 1500\neps = 1e-3\n[pde]\nshape = 128\n'
        f'[output]\ndir = "{tmp_path}"\n'
    )
    assert main(["run", str(cfg)]) == 0
    out = capsys.readouterr().out
    rms = float(next(line.split()[1] for line in out.splitlines() if line.startswith("rms")))
    assert 0 < rms < 0.1
    h5 = tmp_path / "results" / "small.h5"
    assert h5.is_file() and (tmp_path / "figures" / "small.png").is_file()
    from continuum_attention.storage import load_result

    stored = load_result(h5)
    assert stored.errors["rms"] == pytest.approx(rms, rel=1e-5) and stored.config["N"] == 1500
    assert main(["plot", str(h5), "-o", str(tmp_path / "again.png")]) == 0 and (tmp_path / "again.png").is_file()
    cfg.write_text(cfg.read_text().replace("N = 1500", "N = 1500\nepsilon = 2"))
    assert main(["run", str(cfg)]) == 2
    assert "unknown key(s) ['epsilon'] in [particles]" in capsys.readouterr().err


def test_cli_study_sweeps_and_resumes(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(
        '[problem]\ndomain = {type="Torus", lengths=[1.0]}\ndensity = {type="cosine", amplitude=0.5, wavevector=[1]}\n'
        'initial = "cos(2*pi*x)"\n[study]\nquantity = "consistency"\nN = [500, 2000]\neps = [1e-3]\nseeds = 2\n'
        f'[output]\ndir = "{tmp_path}"\n'
    )
    assert main(["study", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "slope in N at eps=0.001" in out
    assert (tmp_path / "results" / "sweep.h5").is_file() and (tmp_path / "figures" / "sweep.png").is_file()
    # the rerun reads every cell back instead of measuring: make measuring impossible
    monkeypatch.setattr(compare, "consistency_error", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert main(["study", str(cfg)]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == out.splitlines()[:3]


def test_solvers_from_problem_match_explicit_construction():
    from continuum_attention import AttentionLimitPDE, Grid, ParticleSolver

    prob = Problem(Torus([1.0, 1.0]), D.von_mises(Torus([1.0, 1.0]), [0.5, 0.5], 1.0), Mahalanobis([[2.0, 0.3], [0.3, 1.0]]),
                   lambda x: np.cos(2 * np.pi * x[:, 0]), 0.01)
    solver = ParticleSolver.from_problem(prob, 300, 1e-3, seed=4, mode="walkers")
    np.testing.assert_array_equal(solver.points, prob.density.sample(300, 4))
    assert solver.mode == "walkers" and solver.operator.metric is prob.metric and solver.operator.domain is prob.domain
    pde = AttentionLimitPDE.from_problem(prob, 16, form="walkers")
    manual = AttentionLimitPDE(Grid(prob.domain, 16), prob.density, metric=prob.metric, form="walkers")
    H = np.sin(2 * np.pi * pde.grid.points[:, 1])
    np.testing.assert_array_equal(pde.apply(H), manual.apply(H))


def test_convergence_study_refuses_a_changed_configuration(tmp_path):
    """Reusing stored cells is only right for the same problem, seeds and key: anything else is refused."""
    path = tmp_path / "sweep.h5"
    compare.ConvergenceStudy(lambda N, eps, s: 1.0, [100], [0.1], seeds=[0], store=SweepFile(path), config={"problem": "A"}).run(progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        compare.ConvergenceStudy(lambda N, eps, s: 2.0, [100], [0.1], seeds=[0], store=SweepFile(path), config={"problem": "B"}).run(progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        compare.ConvergenceStudy(lambda N, eps, s: 1.0, [100], [0.1], seeds=[0, 1, 2], store=SweepFile(path), config={"problem": "A"}).run(progress=False)
    assert compare.cell_key(100, 1e-3) != compare.cell_key(100, 1.0000001e-3)
