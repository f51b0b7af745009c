"""The one validation layer: input checks shared by the public boundaries of every layer.

Every check names the parameter and the value it got. A value of the wrong *type* (a string where a number
belongs, a complex array, None) raises ``TypeError``; a value of the right type that is out of range (NaN,
negative, not an integer, not one of the options) raises ``ValueError``. Kernels assume valid input, so the
public functions call these once, at the boundary (scikit-learn's ``utils/_param_validation`` is the model).
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "real_number",
    "positive_float",
    "nonnegative_float",
    "positive_int",
    "nonnegative_int",
    "integer",
    "option",
    "real_array",
    "point_array",
    "describe",
    "random_generator",
    "table",
    "memory_budget",
    "check_memory",
]


def describe(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (arrays of a million points do not flood a message)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_real_scalar(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, np.ndarray):
        return value.ndim == 0 and value.dtype.kind in "iuf"
    return isinstance(value, numbers.Real)


def real_number(value: Any, name: str) -> float:
    """``float(value)`` for a finite real number; TypeError for other types, ValueError for NaN or inf."""
    if not _is_real_scalar(value):
        raise TypeError(f"{name} must be a real number, got {name}={describe(value)} of type {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float range
        raise ValueError(f"{name} must be a finite number, got {name}={describe(value)}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {name}={describe(value)}")
    return v


def positive_float(value: Any, name: str) -> float:
    """A finite real number > 0 as float (TypeError for other types, ValueError otherwise)."""
    v = real_number(value, name)
    if not v > 0.0:
        raise ValueError(f"{name} must be positive and finite, got {name}={describe(value)}")
    return v


def nonnegative_float(value: Any, name: str) -> float:
    """A finite real number >= 0 as float."""
    v = real_number(value, name)
    if v < 0.0:
        raise ValueError(f"{name} must be non-negative and finite, got {name}={describe(value)}")
    return v


def integer(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (Python or NumPy int, or a float with an integral value) within [minimum, maximum].

    2.5 is refused (ValueError), not truncated to 2; a bool or a string is a TypeError.
    """
    if isinstance(value, (bool, np.bool_)) or not _is_real_scalar(value):
        raise TypeError(f"{name} must be an integer, got {name}={describe(value)} of type {type(value).__name__}")
    if isinstance(value, (numbers.Integral, np.integer)) or (isinstance(value, np.ndarray) and value.dtype.kind in "iu"):
        v = int(value)
    else:
        f = float(value)
        if not (math.isfinite(f) and f == int(f)):
            raise ValueError(f"{name} must be an integer, got {name}={describe(value)}")
        v = int(f)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={describe(value)}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be an integer <= {maximum}, got {name}={describe(value)}")
    return v


def positive_int(value: Any, name: str, *, maximum: int | None = None) -> int:
    """An integer >= 1."""
    return integer(value, name, minimum=1, maximum=maximum)


def nonnegative_int(value: Any, name: str, *, maximum: int | None = None) -> int:
    """An integer >= 0."""
    return integer(value, name, minimum=0, maximum=maximum)


def option(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """``value`` if it is one of ``choices`` (compared with ==), else ValueError listing them."""
    choices = tuple(choices)
    try:
        # 1 is not True and 0.0 is not False: a bool option matches only a bool
        flag = isinstance(value, (bool, np.bool_))
        ok = any(bool(value == c) and flag == isinstance(c, (bool, np.bool_)) for c in choices)
    except (TypeError, ValueError):  # an array compared with a string
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {list(choices)}, got {name}={describe(value)}")
    return value


def real_array(value: Any, name: str, *, ndim: int | Sequence[int] | None = None,
               shape: Sequence[int | None] | None = None, finite: bool = True) -> np.ndarray:
    """A float64 array of real numbers with the given dimension(s) or shape (None entries match any size).

    TypeError for complex, string, object or ragged input; ValueError for a wrong shape or NaN/inf.
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be an array of real numbers, got {name}={describe(value)}")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):  # ragged nested sequences
        raise TypeError(f"{name} must be a rectangular array of real numbers, got {name}={describe(value)}") from None
    if raw.dtype.kind not in "biuf" or raw.dtype.kind == "b":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {raw.dtype} ({name}={describe(value)})")
    a = raw.astype(np.float64, copy=False)
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if dims is not None and a.ndim not in dims:
        raise ValueError(f"{name} must have {' or '.join(map(str, dims))} dimension(s), got shape {a.shape}")
    if shape is not None and (a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape))):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got shape {a.shape}")
    if finite and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def point_array(value: Any, name: str = "points", dim: int | None = None) -> np.ndarray:
    """Points as a C-contiguous (N, d) float64 array (a 1-D array is N points in 1-D), N >= 1, finite."""
    x = real_array(value, name, ndim=(1, 2))
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one point of dimension >= 1, got shape {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have dimension {dim}, got shape {x.shape}")
    return np.ascontiguousarray(x)


def random_generator(seed: Any, name: str = "seed") -> np.random.Generator:
    """A NumPy Generator from a Generator, a non-negative integer seed or None (fresh entropy).

    A float, a string or a negative number is refused: the same seed must always mean the same numbers.
    """
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed)
    if not isinstance(seed, (numbers.Integral, np.integer)) or isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer seed, a numpy Generator or None, "
                        f"got {name}={describe(seed)} of type {type(seed).__name__}")
    return np.random.default_rng(nonnegative_int(seed, name))


def table(value: Any, name: str) -> dict:
    """A mapping (a TOML table or a stored configuration) as a dict; TypeError naming it otherwise."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a table (a mapping of keys to values), got {name}={describe(value)}")
    return dict(value)


def memory_budget() -> int:
    """Bytes a single allocation may take: ``CONTINUUM_ATTENTION_MEMORY`` (bytes) if set, else the memory the
    operating system reports available now (``MemAvailable``; total physical memory where that is unknown)."""
    env = os.environ.get("CONTINUUM_ATTENTION_MEMORY")
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise ValueError(f"CONTINUUM_ATTENTION_MEMORY must be a number of bytes, got {env!r}") from None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no way to tell: do not refuse
        return 1 << 62


def check_memory(nbytes: float, what: str) -> None:
    """Refuse, before allocating, work whose estimated memory exceeds :func:`memory_budget` (ValueError with the
    estimate, the budget and what to change)."""
    budget = memory_budget()
    if nbytes > budget:
        raise ValueError(f"{what} needs about {nbytes / 2**30:.3g} GiB, more than the {budget / 2**30:.3g} GiB "
                         "available (set CONTINUUM_ATTENTION_MEMORY to change the budget)")
