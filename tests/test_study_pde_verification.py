"""The pde_verification study through the reproduce machinery: checks, HDF5, PNG, and skipping on rerun."""

import numpy as np

from continuum_attention.storage import load_result
from continuum_attention.studies import format_table, reproduce
from continuum_attention.studies import pde_verification as pv


def test_reproduce_runs_writes_and_skips(tmp_path, monkeypatch):
    (res,) = reproduce(only=["pde_verification"], out=tmp_path, progress=False)
    assert res.ok, format_table([res])
    h5, png = tmp_path / "results" / "pde_verification.h5", tmp_path / "figures" / "pde_verification.png"
    assert h5.is_file() and png.is_file()
    stored = load_result(h5)
    assert stored.checks == res.checks and stored.config["mode"] == "quick"
    np.testing.assert_array_equal(stored.arrays["space_error"], res.arrays["space_error"])
    # a rerun loads the finished result instead of recomputing it
    monkeypatch.setattr(pv, "analytic_errors", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    (again,) = reproduce(only=["pde_verification"], out=tmp_path, progress=False)
    assert again.checks == res.checks
