"""TOML configurations for ``continuum-attention run`` and ``study``.

Every table has a fixed set of keys; an unknown key is an error that lists the valid ones, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ._validation import describe, integer, option, positive_float, positive_int, random_generator

__all__ = ["load_config", "SCHEMA"]

#: valid keys per table, with defaults (None: required)
SCHEMA: dict[str, dict[str, Any]] = {
    "problem": {"domain": None, "density": None, "metric": {}, "initial": None, "t_final": 0.01},
    "particles": {"N": 2000, "eps": 1e-3, "seed": 0, "mode": "features", "truncate": "auto"},
    "pde": {"shape": 256, "method": "crank-nicolson"},
    "study": {"quantity": "propagation", "N": None, "eps": None, "seeds": 3, "key": "rms"},
    "output": {"name": "", "dir": "."},
}

def _int_list(value, name: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise TypeError(f"{name} must be a non-empty list of integers, got {name}={describe(value)}")
    return [positive_int(v, name) for v in value]


def _float_list(value, name: str) -> list[float]:
    if not isinstance(value, list) or not value:
        raise TypeError(f"{name} must be a non-empty list of numbers, got {name}={describe(value)}")
    return [positive_float(v, name) for v in value]


def _seed(value, name: str) -> int:
    random_generator(value, name)  # integers >= 0 only: a float or a string is refused
    return int(value)


def _seeds(value, name: str):
    if isinstance(value, list):
        return [_seed(v, name) for v in value]
    return positive_int(value, name)


def _shape(value, name: str):
    if isinstance(value, list):
        return [integer(v, name, minimum=3) for v in value]
    return integer(value, name, minimum=3)


def _string(value, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {name}={describe(value)}")
    return value


#: checks per key (the name in messages is "[table] key"); keys without one are checked where they are used
_CHECKS: dict[str, dict[str, Callable[[Any, str], Any]]] = {
    "problem": {"t_final": positive_float, "initial": _string},
    "particles": {"N": positive_int, "eps": positive_float, "seed": _seed,
                  "mode": lambda v, n: option(v, n, ("features", "walkers")),
                  "truncate": lambda v, n: option(v, n, (True, False, "auto"))},
    "pde": {"shape": _shape, "method": _string},
    "study": {"quantity": lambda v, n: option(v, n, ("consistency", "propagation", "walkers")),
              "N": _int_list, "eps": _float_list, "seeds": _seeds, "key": _string},
    "output": {"name": _string, "dir": _string},
}

_SECTIONS = {"run": ("problem", "particles", "pde", "output"), "study": ("problem", "study", "pde", "output")}


def _check_table(name: str, table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ValueError(f"[{name}] must be a table, got {table!r}")
    valid = SCHEMA[name]
    unknown = sorted(set(table) - set(valid))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in [{name}]; valid keys: {sorted(valid)}")
    merged = {k: v for k, v in valid.items() if v is not None}
    merged.update(table)
    for key, check in _CHECKS[name].items():
        if key in table:
            merged[key] = check(table[key], f"[{name}] {key}")
    if name == "problem":
        if not merged.get("metric"):
            merged.pop("metric", None)
        return merged
    missing = [k for k, v in valid.items() if v is None and k not in table]
    if missing:
        raise ValueError(f"[{name}] is missing required key(s) {missing}")
    return merged


def load_config(path: str | Path, command: str) -> dict[str, dict[str, Any]]:
    """Read and validate a TOML file for ``command`` ("run" or "study"); defaults filled in.

    ``[output] name`` defaults to the file's stem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no configuration file at {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    sections = _SECTIONS[command]
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise ValueError(f"unknown table(s) {unknown} in {path.name}; valid tables for '{command}': {list(sections)}")
    if "problem" not in raw:
        raise ValueError(f"{path.name} needs a [problem] table")
    config = {name: _check_table(name, raw.get(name, {})) for name in sections if name in raw or name != "study"}
    if command == "study" and "study" not in raw:
        raise ValueError(f"{path.name} needs a [study] table")
    config["output"]["name"] = config["output"]["name"] or path.stem
    return config
