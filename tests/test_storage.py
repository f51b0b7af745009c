import json

import h5py
import numpy as np
import pytest

from continuum_attention import storage
from continuum_attention.studies import Check, StudyResult


def test_save_load_round_trip_with_provenance(tmp_path):
    arrays = {"x": np.arange(5.0), "nested": {"y": np.eye(3), "label": "abc"}}
    path = storage.save(tmp_path / "r.h5", arrays, {"seed": 3, "eps": 1e-3, "sizes": [1, 2]})
    got, meta = storage.load(path)
    np.testing.assert_array_equal(got["x"], arrays["x"])
    np.testing.assert_array_equal(got["nested"]["y"], np.eye(3))
    assert meta["config"] == {"seed": 3, "eps": 1e-3, "sizes": [1, 2]}
    assert meta["versions"]["numpy"] == np.__version__
    assert "git_commit" in meta and "created" in meta
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_failed_write_leaves_old_file_intact(tmp_path):
    path = storage.save(tmp_path / "r.h5", {"x": np.ones(3)}, {"a": 1})
    with pytest.raises(ValueError, match="cannot be stored"):
        storage.save(path, {"x": np.zeros(3)}, {"a": object()})
    got, _ = storage.load(path)
    np.testing.assert_array_equal(got["x"], np.ones(3))
    assert len(list(tmp_path.iterdir())) == 1


def test_sweep_cells_resume(tmp_path):
    path = tmp_path / "sweep.h5"
    cfg = {"N": [10, 20]}
    assert storage.finished_cells(path) == set()
    storage.write_cell(path, "N=10", {"err": np.array([0.1, 0.2])}, cfg)
    storage.write_cell(path, "N=20", {"err": np.array([0.05])}, cfg)
    assert storage.finished_cells(path) == {"N=10", "N=20"}
    np.testing.assert_array_equal(storage.read_cells(path)["N=20"]["err"], [0.05])
    with pytest.raises(ValueError, match="another configuration"):
        storage.write_cell(path, "N=40", {"err": np.array([0.0])}, {"N": [40]})
    with h5py.File(path) as f:
        assert json.loads(f.attrs["config"]) == cfg


def test_study_result_round_trip(tmp_path):
    res = StudyResult(
        "demo",
        [Check.within("demo", "slope", -0.48, -0.5, 0.1), Check.below("demo", "error", 0.2, 0.1)],
        {"n": np.array([1, 2, 3])},
        {"quick": True},
    )
    assert [c.ok for c in res.checks] == [True, False] and not res.ok
    path = storage.save_result(tmp_path / "demo.h5", res)
    back = storage.load_result(path)
    assert back.name == "demo" and back.checks == res.checks and back.config == {"quick": True}
    np.testing.assert_array_equal(back.arrays["n"], [1, 2, 3])


def test_load_missing_file():
    with pytest.raises(FileNotFoundError):
        storage.load("/nonexistent/file.h5")


def test_load_result_in_a_fresh_interpreter(tmp_path):
    """The stored kind is enough: no need to import the module that defines the result class first."""
    import subprocess
    import sys

    res = StudyResult("demo", [Check.within("demo", "slope", -0.5, -0.5, 0.1)], {"n": np.arange(3)}, {"quick": True})
    path = storage.save_result(tmp_path / "demo.h5", res)
    code = (
        "import sys; from continuum_attention.storage import load_result; "
        f"r = load_result({str(path)!r}); print(type(r).__name__, r.checks[0].quantity, r.arrays['n'].sum())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["StudyResult", "slope", "3"]


def test_solutions_round_trip_through_hdf5(tmp_path):
    """ParticleSolution and PDESolution come back as the same objects (arrays, grid, configuration)."""
    from continuum_attention import AttentionLimitPDE, Grid, ParticleSolver, Torus
    from continuum_attention.densities import cosine

    circle = Torus(1.0)
    dens = cosine(circle, 0.5, 1)
    pts = dens.sample(200, 0)
    for mode, initial in (("features", lambda x: np.cos(2 * np.pi * x[:, 0])), ("tokens", None)):
        sol = ParticleSolver(pts, 1e-3, domain=circle, mode=mode).run(initial, n_layers=4, n_snapshots=3)
        back = storage.load_result(storage.save_result(tmp_path / f"{mode}.h5", sol))
        assert type(back) is type(sol) and back.mode == mode and back.eps == sol.eps
        for name in ("times", "layers", "values", "points"):
            np.testing.assert_array_equal(getattr(back, name), getattr(sol, name))
    pde_sol = AttentionLimitPDE(Grid(circle, 64), dens).solve(lambda x: np.cos(2 * np.pi * x[:, 0]), 0.01, n_snapshots=3)
    back = storage.load_result(storage.save_result(tmp_path / "pde.h5", pde_sol))
    assert back.grid.shape == (64,) and back.grid.domain == circle and back.method == pde_sol.method
    np.testing.assert_array_equal(back.values, pde_sol.values)
    np.testing.assert_array_equal(back.interpolate(pts), pde_sol.interpolate(pts))
