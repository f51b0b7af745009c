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
