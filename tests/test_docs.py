"""The docs name every public name: docs/api.md is regenerated from __all__ and must be current."""

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_api_page_is_current():
    spec = importlib.util.spec_from_file_location("make_api", DOCS / "make_api.py")
    make_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_api)
    assert (DOCS / "api.md").read_text() == make_api.render(), "run: python docs/make_api.py"


def test_every_public_name_has_a_docstring():
    spec = importlib.util.spec_from_file_location("make_api", DOCS / "make_api.py")
    make_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_api)
    missing = []
    for modname, _ in make_api.MODULES:
        mod = importlib.import_module(modname)
        for name in mod.__all__:
            obj = getattr(mod, name)
            if callable(obj) and not (getattr(obj, "__doc__", None) or "").strip():
                missing.append(f"{modname}.{name}")
    assert not missing, missing


def test_usage_tutorial_runs_as_written(tmp_path, monkeypatch):
    """Every ```python block of docs/usage.md, in order, in one namespace; its claims are asserted."""
    import re

    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    text = (DOCS / "usage.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 6
    ns: dict = {}
    for block in blocks:
        exec(compile(block, "docs/usage.md", "exec"), ns)  # noqa: S102 - our own documentation
    assert abs(ns["run"].times[-1] - 0.01) < 1e-15
    assert ns["np"].sqrt(ns["np"].mean(ns["err"] ** 2)) < 0.1
    assert -0.75 < ns["slope"] < -0.25  # sampling-dominated consistency error ~ N^-1/2
    assert ns["g"].shape == (50, 2, 2)
