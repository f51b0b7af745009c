"""Input checks shared by the public boundaries of every layer (kernels assume valid input)."""

from __future__ import annotations

import math

__all__ = ["positive_float"]


def positive_float(value, name: str) -> float:
    """``float(value)`` if it is a finite number > 0; otherwise ValueError naming the parameter and value."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {name}={value!r}") from None
    if not (math.isfinite(v) and v > 0.0):
        raise ValueError(f"{name} must be positive and finite, got {name}={value!r}")
    return v
