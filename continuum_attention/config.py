"""TOML configurations for ``continuum-attention run`` and ``study``.

Every table has a fixed set of keys; an unknown key is an error that lists the valid ones, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["load_config", "SCHEMA"]

#: valid keys per table, with defaults (None: required)
SCHEMA: dict[str, dict[str, Any]] = {
    "problem": {"domain": None, "density": None, "metric": {}, "initial": None, "t_final": 0.01},
    "particles": {"N": 2000, "eps": 1e-3, "seed": 0, "mode": "features", "truncate": False},
    "pde": {"shape": 256, "method": "crank-nicolson"},
    "study": {"quantity": "propagation", "N": None, "eps": None, "seeds": 3, "key": "rms"},
    "output": {"name": "", "dir": "."},
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
