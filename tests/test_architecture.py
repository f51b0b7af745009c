"""The layer order of docs/architecture.md, read from the imports of every module (function-level ones too).

A module may import only from layers strictly below its own, or from its own subpackage. The particle side
and the continuum side never import each other, and no module imports another module's private name.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "continuum_attention"

# (layer, side) of every top-level module or subpackage; docs/architecture.md draws the same picture.
LAYERS = {
    "_version": (0, None),
    "_validation": (0, None),
    "trackers": (1, None),
    "domains": (1, None),
    "densities": (2, None),
    "metrics": (3, None),
    "problem": (4, None),
    "attention": (5, "particles"),
    "particles": (6, "particles"),
    "grid": (5, "continuum"),
    "pde": (6, "continuum"),
    "analytic": (5, None),
    "compare": (7, None),
    "storage": (8, None),
    "config": (8, None),
    "plotting": (9, None),
    "studies": (10, None),
    "cli": (11, None),
}
# learn/ and real/ are annexes (optional heavy dependencies: torch; transformers): each may import the geometry,
# the metrics and the solvers, and storage to write its results as every study does; nothing else from the
# outer rooms, and no annex imports another. The core (layers 0-9) never imports an annex; only the outermost
# rooms, studies and cli, may (real/ imports transformers lazily, so importing a study costs nothing).
_ANNEX_MAY_IMPORT = {"_version", "_validation", "trackers", "domains", "densities", "metrics", "problem",
                     "attention", "particles", "grid", "pde", "storage"}
ANNEX = {"learn": _ANNEX_MAY_IMPORT, "real": _ANNEX_MAY_IMPORT}
ANNEX_USERS = {"studies", "cli"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield path, parts


def _unit(parts) -> str | None:
    """Top-level unit (module or subpackage) of a module path inside the package; None for the facade."""
    return None if parts in (("__init__",), ("__main__",)) else parts[0]


def _imports(path: Path, parts):
    """(unit imported, names imported, line) for every import of a package module, relative or absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = list(parts[:-1]) if parts[-1] != "__init__" else list(parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "continuum_attention":
                target = node.module.split(".")[1:]
            else:
                continue
            names = [a.name for a in node.names]
            if not target:  # "from . import x" at the top: each name is a unit (or a name of the facade)
                for name in names:
                    yield [name] if (PACKAGE / name).exists() or (PACKAGE / f"{name}.py").exists() else ["__init__", name], [], node.lineno
            else:
                yield target, names, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                bits = alias.name.split(".")
                if bits[0] == "continuum_attention" and len(bits) > 1:
                    yield bits[1:], [], node.lineno


def _edges():
    for path, parts in _modules():
        src = _unit(parts)
        for target, names, line in _imports(path, parts):
            yield path, parts, src, target, names, line


def test_every_unit_has_a_layer():
    units = {_unit(parts) for _, parts in _modules()} - {None}
    assert units <= set(LAYERS) | set(ANNEX), f"modules without a layer: {sorted(units - set(LAYERS) - set(ANNEX))}"


def _violations():
    bad = []
    for path, parts, src, target, names, line in _edges():
        dst = target[0]
        if src is None or dst == src:
            continue
        if dst == "__init__":
            bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target[-1]} from the package facade")
            continue
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {'.'.join(target)}"
        if src in ANNEX:
            if dst not in ANNEX[src]:
                bad.append(f"{where} (the annex {src}/ may import only {sorted(ANNEX[src])})")
            continue
        if dst in ANNEX:
            if src not in ANNEX_USERS:
                bad.append(f"{where} (only {sorted(ANNEX_USERS)} may import an annex)")
            continue
        (ls, ss), (ld, sd) = LAYERS[src], LAYERS[dst]
        if ss and sd and ss != sd:
            bad.append(f"{where} (the {ss} side imports the {sd} side)")
        elif ld >= ls:
            bad.append(f"{where} (layer {ld} is not below layer {ls})")
    return bad


def test_imports_only_go_down():
    assert _violations() == []


def test_no_module_imports_another_modules_private_names():
    bad = []
    for path, parts, src, target, names, line in _edges():
        same_module = list(parts[:-1]) + [parts[-1]] == target
        # shared infrastructure at the top (_validation, _version) is open to all; a private module inside a
        # subpackage (attention/_kernels) belongs to that subpackage
        private_module = any(t.startswith("_") and t != "__init__" for t in target[1:])
        for name in names:
            own_submodule = target[0] == src and (PACKAGE.joinpath(*target, f"{name}.py")).exists()
            if name.startswith("_") and not name.startswith("__") and not same_module and not own_submodule:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name} from {'.'.join(target)}")
        # a private module may be imported only inside its own subpackage
        if private_module and target[0] != src:
            bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports the private module {'.'.join(target)}")
    assert bad == []


def test_no_module_reads_another_modules_private_attributes():
    """``module._name`` through an imported package module counts as importing that private name."""
    bad = []
    for path, parts in _modules():
        tree = ast.parse(path.read_text())
        bound = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("continuum_attention")):
                bound |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                bound |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("continuum_attention")}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert bad == []


@pytest.mark.parametrize("target, source, expected", [
    ("pde/solver.py", "from ..storage import save\n",
     ["continuum_attention/pde/solver.py:1 imports storage (layer 8 is not below layer 6)"]),
    ("attention/operator.py", "from ..pde import AttentionLimitPDE\n",
     ["continuum_attention/attention/operator.py:1 imports pde (the particles side imports the continuum side)"]),
    ("plotting.py", "from .real import extract\n",
     ["continuum_attention/plotting.py:1 imports real (only ['cli', 'studies'] may import an annex)"]),
    ("real/heads.py", "from ..learn import SelfAttention\n",
     ["continuum_attention/real/heads.py:1 imports learn (the annex real/ may import only " + str(sorted(ANNEX["real"])) + ")"]),
    ("real/heads.py", "from ..plotting import figure\n",
     ["continuum_attention/real/heads.py:1 imports plotting (the annex real/ may import only " + str(sorted(ANNEX["real"])) + ")"]),
])
def test_the_checker_catches_an_upward_import(tmp_path, monkeypatch, target, source, expected):
    """The checker itself: a planted upward import is reported (guards against a checker that sees nothing)."""
    real = PACKAGE / target
    original = Path.read_text

    def fake_read_text(self, *args, **kwargs):
        text = original(self, *args, **kwargs)
        return source + text if self == real else text

    monkeypatch.setattr(Path, "read_text", fake_read_text)
    found = [v for v in _violations() if v.startswith(f"continuum_attention/{target}:1 ")]
    assert found == expected
