"""The pieces every study shares: checks, results and the registry behind ``reproduce``.

A study is a function ``run(quick: bool, seed: int) -> StudyResult`` registered with :func:`register`. It
measures something the theory predicts, compares it with the expected value within a stated tolerance
(:class:`Check`), and returns the arrays behind its figure, the figure itself and its configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


__all__ = ["Check", "StudyResult", "Study", "register", "registry"]


@dataclass(frozen=True)
class Check:
    """One line of the ``reproduce`` table: a measured quantity against its expected value.

    ``ok`` is ``|measured - expected| <= tolerance`` for :meth:`within`, ``measured < bound`` for
    :meth:`below`, ``measured > bound`` for :meth:`above`.
    """

    study: str
    quantity: str
    measured: float
    expected: str
    tolerance: str
    ok: bool

    @classmethod
    def within(cls, study: str, quantity: str, measured: float, expected: float, tolerance: float) -> "Check":
        ok = bool(np.isfinite(measured) and abs(measured - expected) <= tolerance)
        return cls(study, quantity, float(measured), f"{expected:.4g}", f"+-{tolerance:.3g}", ok)

    @classmethod
    def below(cls, study: str, quantity: str, measured: float, bound: float) -> "Check":
        ok = bool(np.isfinite(measured) and measured < bound)
        return cls(study, quantity, float(measured), f"< {bound:.3g}", "", ok)

    @classmethod
    def above(cls, study: str, quantity: str, measured: float, bound: float) -> "Check":
        ok = bool(np.isfinite(measured) and measured > bound)
        return cls(study, quantity, float(measured), f"> {bound:.3g}", "", ok)

    @classmethod
    def report(cls, study: str, quantity: str, measured: float, expected: float) -> "Check":
        """A measured value shown beside its theory value without a pass/fail claim (tolerance "reported")."""
        return cls(study, quantity, float(measured), f"{expected:.4g}", "reported", True)

    @classmethod
    def equal(cls, study: str, quantity: str, measured: float, expected: float) -> "Check":
        return cls(study, quantity, float(measured), f"{expected:g}", "exact", bool(measured == expected))

    def row(self) -> list[str]:
        value = f"{self.measured:.4g}" if math.isfinite(self.measured) else str(self.measured)
        verdict = "-" if self.tolerance == "reported" else ("ok" if self.ok else "FAIL")
        return [self.study, self.quantity, value, self.expected, self.tolerance, verdict]


@dataclass
class StudyResult:
    """What a study returns: its checks, the arrays behind its figure, its configuration, its figure."""

    name: str
    checks: list[Check]
    arrays: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    figure: Any = None  # matplotlib Figure; not stored in HDF5 (the PNG is)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def to_storage(self) -> tuple[dict[str, Any], dict[str, Any]]:
        checks = {
            f"{i:03d}": {
                "quantity": c.quantity,
                "measured": np.float64(c.measured),
                "expected": c.expected,
                "tolerance": c.tolerance,
                "ok": np.bool_(c.ok),
            }
            for i, c in enumerate(self.checks)
        }
        return {"data": self.arrays, "checks": checks, "name": self.name}, {"name": self.name, **self.config}

    @classmethod
    def from_storage(cls, arrays: dict[str, Any], config: dict[str, Any]) -> "StudyResult":
        name = config.get("name", arrays.get("name", "?"))
        checks = [
            Check(name, str(c["quantity"]), float(c["measured"]), str(c["expected"]), str(c["tolerance"]), bool(c["ok"]))
            for _, c in sorted(arrays.get("checks", {}).items())
        ]
        cfg = {k: v for k, v in config.items() if k != "name"}
        return cls(name, checks, arrays.get("data", {}), cfg, None)


@dataclass(frozen=True)
class Study:
    """A registered study: ``run(quick, seed)`` returns a :class:`StudyResult`."""

    name: str
    title: str
    order: int
    run: Callable[..., StudyResult]


_REGISTRY: dict[str, Study] = {}


def register(name: str, title: str, order: int = 100) -> Callable:
    """Decorator registering ``run(quick: bool = True, seed: int = 0) -> StudyResult`` under ``name``."""

    def wrap(fn: Callable[..., StudyResult]) -> Callable[..., StudyResult]:
        if name in _REGISTRY and _REGISTRY[name].run is not fn:
            raise ValueError(f"study name {name!r} registered twice")
        _REGISTRY[name] = Study(name, title, order, fn)
        return fn

    return wrap


def registry() -> dict[str, Study]:
    """Registered studies in their reproduce order."""
    return dict(sorted(_REGISTRY.items(), key=lambda item: (item[1].order, item[0])))
