"""A Problem bundles what both sides need: domain, density, metric, initial condition, final time.

``ParticleSolver`` and ``AttentionLimitPDE`` are both built from it, and ``compare`` takes a Problem plus
N, eps and a seed. Problems load from plain tables (TOML) and write back to them, so any result can be rerun.

Initial conditions in configurations are NumPy expressions in the coordinates ``x, y, z`` (and ``pi``,
``sin``, ``cos``, ``exp``, ...), for example ``"cos(2*pi*x) + 0.3*sin(4*pi*x)"``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .densities import Density, density_from_config
from .domains import Domain, domain_from_config
from ._validation import describe, positive_float
from .metrics import as_metric, metric_from_config

__all__ = ["Problem", "Expression"]

_EXPR_NAMES = {
    name: getattr(np, name)
    for name in ("sin", "cos", "tan", "exp", "log", "sqrt", "abs", "tanh", "sinh", "cosh", "arctan", "where", "pi", "minimum", "maximum")
}
_COORDS = ("x", "y", "z")
# Node types an initial condition may contain: arithmetic, comparisons, conditionals and plain calls.
# No attribute access, subscripts, comprehensions or lambdas, so nothing reaches beyond the listed names.
_EXPR_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call, ast.Name, ast.Load,
    ast.Constant, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)


# Bounds on a configuration expression: evaluation costs O(nodes) array operations, each O(points).
MAX_EXPRESSION_CHARS = 2000
MAX_EXPRESSION_NODES = 500


class _FloatConstants(ast.NodeTransformer):
    """Integer literals become floats, so 9**9**9**9 overflows at once instead of building a huge integer."""

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        if isinstance(node.value, int) and not isinstance(node.value, bool):
            return ast.copy_location(ast.Constant(float(node.value)), node)
        return node


class Expression:
    """A NumPy expression in the coordinates ``x, y, z``, callable on (M, d) points.

    Only arithmetic, comparisons and calls of the names in :data:`_EXPR_NAMES`, on the coordinates and
    numbers, are allowed (checked on the syntax tree: no attribute access, subscripts, comprehensions,
    lambdas or builtins), so a configuration can describe a function without running arbitrary code.
    """

    def __init__(self, source: str, dim: int):
        if not isinstance(source, str):
            raise TypeError(f"initial must be an expression string, got initial={describe(source)}")
        if len(source) > MAX_EXPRESSION_CHARS:
            raise ValueError(f"initial condition has {len(source)} characters; at most {MAX_EXPRESSION_CHARS} are allowed")
        self.source = source
        self.dim = int(dim)
        try:
            tree = ast.parse(self.source, "<initial condition>", mode="eval")
        except SyntaxError as exc:
            raise ValueError(f"initial condition {self.source!r} is not a valid expression: {exc.msg}") from None
        allowed = set(_EXPR_NAMES) | set(_COORDS[: self.dim])
        nodes = sum(1 for _ in ast.walk(tree))
        if nodes > MAX_EXPRESSION_NODES:
            raise ValueError(f"initial condition {self.source[:60]!r}... has {nodes} syntax nodes; "
                             f"at most {MAX_EXPRESSION_NODES} are allowed")
        for node in ast.walk(tree):
            if not isinstance(node, _EXPR_NODES):
                raise ValueError(
                    f"initial condition {self.source!r} uses {type(node).__name__}, which is not allowed "
                    "(arithmetic, comparisons and calls of the listed functions only)"
                )
            if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name):
                raise ValueError(f"initial condition {self.source!r} calls something other than a listed function")
        unknown = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - allowed)
        if unknown:
            raise ValueError(
                f"initial condition {self.source!r} uses unknown name(s) {unknown}; allowed: {sorted(allowed)}"
            )
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and (isinstance(node.value, bool) or not isinstance(node.value, (int, float))):
                raise ValueError(f"initial condition {self.source!r} holds the constant {node.value!r}; "
                                 "only real numbers are allowed")
        tree = ast.fix_missing_locations(_FloatConstants().visit(tree))
        self._code = compile(tree, "<initial condition>", "eval")

    def __call__(self, points: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(points, dtype=np.float64))
        env = dict(_EXPR_NAMES)
        env.update({name: x[:, i] for i, name in enumerate(_COORDS[: self.dim])})
        try:
            with np.errstate(all="ignore"):  # non-finite values are refused by the solvers, naming H0
                value = eval(self._code, {"__builtins__": {}}, env)  # noqa: S307 - names checked in __init__
        except (OverflowError, ZeroDivisionError) as exc:
            raise ValueError(f"initial condition {self.source!r} cannot be evaluated: {exc}") from None
        return np.broadcast_to(np.asarray(value, dtype=np.float64), (x.shape[0],)).copy()

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


@dataclass(frozen=True)
class Problem:
    """Domain, density, metric, initial condition and final time of one attention-limit problem.

    Parameters
    ----------
    domain : Domain
    density : Density
        Coordinate density q of the points (see :mod:`continuum_attention.densities`).
    metric : pseudo-metric or None
        A :mod:`continuum_attention.metrics` object (None: Euclidean).
    initial : callable
        H0(points (M, d)) -> (M,) for features; the walkers' initial density for walkers.
    t_final : float
        Final time; K layers reach t = K eps / 2.
    """

    domain: Domain
    density: Density
    metric: Any = None
    initial: Callable[[np.ndarray], np.ndarray] | None = None
    t_final: float = 0.01

    def __post_init__(self):
        if not isinstance(self.domain, Domain):
            raise TypeError(f"domain must be a Torus, Box or Euclidean domain, got domain={describe(self.domain)}")
        if not isinstance(self.density, Density):
            raise TypeError(f"density must be a Density, got density={describe(self.density)}")
        if self.density.domain != self.domain:
            raise ValueError(f"density lives on {self.density.domain!r}, problem domain is {self.domain!r}")
        if self.metric is not None:
            as_metric(self.metric)  # TypeError / ValueError here, not deep inside a solver
        if self.initial is not None and not callable(self.initial):
            raise TypeError(f"initial must be a callable of points (M, d) -> (M,) or None, got initial={describe(self.initial)}")
        object.__setattr__(self, "t_final", positive_float(self.t_final, "t_final"))

    @property
    def dim(self) -> int:
        return self.domain.dim

    def to_config(self) -> dict:
        """Plain data describing the problem (initial conditions round-trip when they are Expressions)."""
        cfg: dict[str, Any] = {
            "domain": self.domain.to_config(),
            "density": {k: v for k, v in self.density.to_config().items() if k != "domain"},
            "t_final": float(self.t_final),
        }
        if self.metric is not None:
            cfg["metric"] = self.metric.to_config()
        if isinstance(self.initial, Expression):
            cfg["initial"] = self.initial.source
        elif self.initial is not None:
            cfg["initial"] = getattr(self.initial, "__name__", repr(self.initial))
        return cfg

    @classmethod
    def from_config(cls, config: dict) -> "Problem":
        """Build a Problem from a table with keys domain, density, metric (optional), initial, t_final."""
        valid = {"domain", "density", "metric", "initial", "t_final"}
        unknown = sorted(set(config) - valid)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in [problem]; valid keys: {sorted(valid)}")
        for key in ("domain", "density"):
            if key not in config:
                raise ValueError(f"[problem] needs a {key!r} table")
        domain = domain_from_config(config["domain"])
        density = density_from_config(config["density"], domain)
        metric = None
        if config.get("metric") is not None:
            metric = metric_from_config(config["metric"])
        initial = Expression(config["initial"], domain.dim) if "initial" in config else None
        return cls(domain, density, metric, initial, float(config.get("t_final", 0.01)))
