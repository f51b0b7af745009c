"""HDF5 storage: atomic writes, full provenance, resumable sweeps.

Every file written here carries, as root attributes,

* ``config``: the JSON-encoded configuration that produced it (enough to rerun it),
* ``kind``: the type of object stored (so :func:`load_result` can rebuild it),
* ``versions``: JSON of the Python, NumPy, SciPy, Numba, h5py and package versions (and torch if imported),
* ``git_commit``: the commit of the working tree when available, and ``created``: an ISO time stamp.

Writes are atomic: the file is written to a temporary name in the same folder and renamed over the target with
:func:`os.replace`, so an interrupted run never leaves a half-written result. :func:`write_cell` adds one cell
of a sweep the same way, and :func:`finished_cells` tells a rerun which cells to skip.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

__all__ = [
    "save",
    "load",
    "save_result",
    "load_result",
    "register_result",
    "RESULT_TYPES",
    "SweepFile",
    "write_cell",
    "check_sweep_config",
    "read_cells",
    "finished_cells",
    "environment_metadata",
    "package_revision",
    "remove_stale_temporaries",
    "output_lock",
]

# Result types by stored ``kind``: "module:Class", imported only when a file of that kind is read. The table
# lives here, in the outer room, so that the core modules defining these classes never import storage.
RESULT_TYPES: dict[str, str] = {
    "ParticleSolution": "continuum_attention.particles:ParticleSolution",
    "PDESolution": "continuum_attention.pde.solver:PDESolution",
    "ConvergenceResult": "continuum_attention.compare:ConvergenceResult",
    "RunResult": "continuum_attention.compare:RunResult",
    "StudyResult": "continuum_attention.studies._base:StudyResult",
}
_RESULT_CLASSES: dict[str, type] = {}
_META_KEYS = ("kind", "config", "versions", "git_commit", "git_dirty", "created")
_JSON_PREFIX = "json:"


def register_result(cls: type) -> type:
    """Register a result class of your own (``to_storage() -> (arrays, config)``, ``from_storage(arrays, config)``).

    The package's own result types are in :data:`RESULT_TYPES` and need no registration.
    """
    if not (callable(getattr(cls, "to_storage", None)) and callable(getattr(cls, "from_storage", None))):
        raise TypeError(f"a result type needs to_storage() and from_storage(arrays, config), got {cls!r}")
    _RESULT_CLASSES[cls.__name__] = cls
    return cls


def _result_class(kind: str) -> type | None:
    if kind not in _RESULT_CLASSES and kind in RESULT_TYPES:
        import importlib

        module, name = RESULT_TYPES[kind].split(":")
        _RESULT_CLASSES[kind] = getattr(importlib.import_module(module), name)
    return _RESULT_CLASSES.get(kind)


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def package_revision() -> dict[str, str]:
    """The package's own commit and whether its source tree differs from it.

    Only a repository whose top level holds this package (``continuum_attention/`` tracked there) counts, not
    one that merely encloses the install (a site-packages inside somebody's project): otherwise both are "".
    ``dirty`` is "true" when tracked files of that repository differ from the commit.
    """
    package = Path(__file__).resolve().parent
    root = package.parent
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:
        return {"commit": "", "dirty": ""}
    if _git(root, "ls-files", "--error-unmatch", f"{package.name}/__init__.py") is None:
        return {"commit": "", "dirty": ""}
    commit = _git(root, "rev-parse", "HEAD") or ""
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": "" if status is None else ("true" if status else "false")}


def _git_commit() -> str:
    return package_revision()["commit"]


def _provenance(attrs) -> None:
    """Versions, the package's commit and dirty flag, and a time stamp, as attributes of a new file."""
    revision = package_revision()
    attrs["versions"] = json.dumps(environment_metadata(), sort_keys=True)
    attrs["git_commit"] = revision["commit"]
    attrs["git_dirty"] = revision["dirty"]
    attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def environment_metadata() -> dict[str, str]:
    """Versions of the interpreter and the numerical stack (torch only when already imported)."""
    from importlib import metadata

    from ._version import __version__

    versions = {"python": platform.python_version(), "continuum_attention": __version__}
    for name in ("numpy", "scipy", "numba", "h5py", "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    if "torch" in sys.modules:
        versions["torch"] = str(sys.modules["torch"].__version__)
    return versions


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    raise ValueError(f"configuration value {obj!r} of type {type(obj).__name__} cannot be stored")


def _write_group(group, arrays: Mapping[str, Any]) -> None:
    for key, value in arrays.items():
        if isinstance(value, Mapping):
            _write_group(group.create_group(str(key)), value)
        elif isinstance(value, str):
            group.attrs[str(key)] = value
        else:
            data = np.asarray(value)
            if data.dtype.kind in "OU":
                group.attrs[_JSON_PREFIX + str(key)] = json.dumps(_jsonable(value))
            else:
                group.create_dataset(str(key), data=data, compression="gzip" if data.size > 4096 else None)


def _read_group(group) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in group.attrs.items():
        if key.startswith(_JSON_PREFIX):
            out[key[len(_JSON_PREFIX) :]] = json.loads(value)
        elif key not in _META_KEYS:
            out[key] = value
    for key, item in group.items():
        out[key] = _read_group(item) if hasattr(item, "items") else item[()]
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete temporary files of ``path`` left by writers that no longer run (a SIGKILL inside a write).

    Temporaries are named ``.NAME.PID.XXXX.tmp``; one whose PID is alive belongs to a running write and stays.
    """
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        parts = tmp.name[len(path.name) + 2 :].split(".")
        if parts and parts[0].isdigit() and not _pid_alive(int(parts[0])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def _open_read(path: Path):
    """h5py.File(path, "r"), with an unreadable file reported as a ValueError naming it."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path} is not a readable HDF5 file ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None
    with f:
        yield f


@contextlib.contextmanager
def output_lock(directory: str | Path):
    """Hold an exclusive lock on a results folder for one run (``DIR/.continuum-attention.lock``).

    A second run on the same folder is refused at once (ValueError naming the folder and the holder's PID)
    instead of both recomputing and overwriting each other's files. The lock is the operating system's
    (flock): it is released when the process ends, however it ends (SIGKILL included).
    """
    import fcntl

    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"output folder {directory} is a file, not a folder")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"cannot create the output folder {directory}: a part of it is a file") from None
    lock = directory / ".continuum-attention.lock"
    handle = open(lock, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ValueError(f"another continuum-attention run (pid {holder}) is writing to {directory}; "
                             "wait for it to finish or use another output folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield lock
    finally:
        handle.close()


def _atomic(path: Path, fill: Callable[[Path], None]) -> Path:
    path = Path(path)
    if path.parent.exists() and not path.parent.is_dir():
        raise ValueError(f"cannot write {path}: {path.parent} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"cannot write {path}: a part of {path.parent} is a file, not a folder") from None
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        fill(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save(path: str | Path, arrays: Mapping[str, Any], config: Mapping[str, Any] | None = None, *, kind: str = "arrays") -> Path:
    """Write nested arrays and a configuration to ``path`` atomically.

    Parameters
    ----------
    arrays : mapping
        Names to arrays (stored as datasets), strings (stored as attributes) or nested mappings (groups).
    config : mapping, optional
        Plain data (numbers, strings, lists, dicts) stored as JSON in the ``config`` attribute; put seeds here.
    kind : str
        Type label used by :func:`load_result`.
    """
    import h5py

    config_json = json.dumps(_jsonable(dict(config or {})), sort_keys=True)

    def fill(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs["kind"] = kind
            f.attrs["config"] = config_json
            _provenance(f.attrs)
            _write_group(f, arrays)

    return _atomic(Path(path), fill)


def load(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a file written by :func:`save`: returns ``(arrays, meta)``; ``meta['config']`` is decoded JSON."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result file at {path}")
    try:
        with h5py.File(path, "r") as f:
            arrays = _read_group(f)
            meta = {k: f.attrs[k] for k in _META_KEYS if k in f.attrs}
    except OSError as exc:  # not HDF5, empty or truncated: h5py's message names no file
        raise ValueError(f"{path} is not a readable HDF5 result file ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None
    for key in ("config", "versions"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    return arrays, meta


def save_result(path: str | Path, result: Any) -> Path:
    """Store an object registered with :func:`register_result` (solutions, studies, convergence results)."""
    arrays, config = result.to_storage()
    return save(path, arrays, config, kind=type(result).__name__)


def load_result(path: str | Path) -> Any:
    """Rebuild the object stored by :func:`save_result` (same class, same arrays, same configuration)."""
    arrays, meta = load(path)
    kind = str(meta.get("kind", "arrays"))
    cls = _result_class(kind)
    if cls is None:
        raise ValueError(f"{path} holds a {kind!r}, which no registered result type rebuilds")
    return cls.from_storage(arrays, meta["config"])


# -- sweeps -------------------------------------------------------------------------------------------------


def write_cell(path: str | Path, key: str, arrays: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> Path:
    """Add (or replace) the group ``cells/<key>`` of a sweep file atomically (copy, add, rename).

    ``config`` is the whole sweep's configuration; it is written once and must not change between cells
    (a rerun with another configuration must use another file).
    """
    import h5py

    path = Path(path)
    config_json = json.dumps(_jsonable(dict(config or {})), sort_keys=True)
    check_sweep_config(path, config or {})

    def fill(tmp: Path) -> None:
        if path.is_file():
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as f:
            if "kind" not in f.attrs:
                f.attrs["kind"] = "sweep"
                f.attrs["config"] = config_json
                _provenance(f.attrs)
            cells = f.require_group("cells")
            if key in cells:
                del cells[key]
            _write_group(cells.create_group(key), arrays)

    return _atomic(path, fill)


def check_sweep_config(path: str | Path, config: Mapping[str, Any]) -> None:
    """Refuse to reuse a sweep file written with another configuration (ValueError); no-op if absent."""
    import h5py

    path = Path(path)
    if not path.is_file():
        return
    config_json = json.dumps(_jsonable(dict(config)), sort_keys=True)
    with _open_read(path) as f:
        stored = f.attrs.get("config")
    if stored is not None and stored != config_json:
        raise ValueError(f"{path} was written with another configuration; use a new file or delete it")


def read_cells(path: str | Path) -> dict[str, dict[str, Any]]:
    """All cells of a sweep file, by key (empty when the file does not exist yet)."""
    path = Path(path)
    if not path.is_file():
        return {}
    arrays, _ = load(path)
    return arrays.get("cells", {})


def finished_cells(path: str | Path) -> set[str]:
    """Keys of the cells already written to a sweep file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        return set()
    with _open_read(path) as f:
        return set(f["cells"].keys()) if "cells" in f else set()


class SweepFile:
    """The HDF5 cell store of a resumable sweep: pass ``store=SweepFile(path)`` to a ConvergenceStudy.

    Each finished cell is written to ``path`` atomically (:func:`write_cell`) as soon as it is measured; a
    rerun reads the cells already there and skips them. The assembled result goes to ``PATH.result.h5``.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def check(self, config: Mapping[str, Any]) -> None:
        """Refuse a file written under another configuration (ValueError)."""
        check_sweep_config(self.path, config)

    def cells(self) -> dict[str, dict[str, Any]]:
        """Stored cells by key."""
        return read_cells(self.path) if finished_cells(self.path) else {}

    def write(self, key: str, arrays: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        write_cell(self.path, key, arrays, config)

    def finish(self, result: Any) -> Path:
        """Store the assembled result beside the cells, as ``PATH.result.h5``."""
        return save_result(self.path.with_suffix(".result.h5"), result)

    def __repr__(self) -> str:
        return f"SweepFile({str(self.path)!r})"


# -- streaming ---------------------------------------------------------------------------------------------

from .trackers import ScheduledTracker, Tracker  # noqa: E402 -- the streaming tracker's base, kept with it

__all__ += ["HDF5Writer"]


class HDF5Writer(Tracker):
    """A tracker that streams a run's snapshots to an HDF5 file as they come (``trackers=[HDF5Writer(path, ...)]``).

    Exactly one of ``interval`` (every k steps or layers, the final one included), ``n_snapshots`` or ``times``
    (see :func:`continuum_attention.trackers.schedule`). Each snapshot is appended to the resizable datasets
    ``values`` (n, *state.shape), ``times`` (n,) and ``layers`` (particles) or ``steps`` (PDE), and the file is
    flushed. The root attributes are those of :func:`save` (``kind``, ``config`` = the solver's configuration,
    ``versions``, ``git_commit``, ``created``), and the run's fixed arrays (the particle positions) are stored
    too, so :func:`load_result` rebuilds the solution: with the solver's own ``n_snapshots`` schedule, the
    same one the run returns.

    The file is written under a temporary name beside ``path`` and renamed over ``path`` only in
    :meth:`finalize`: a run stopped by an exception (:meth:`abort` removes the temporary file) or killed
    never leaves a half-written file at ``path``, and an older file there stays intact until the run completes.
    """

    def __init__(self, path: str | Path, *, interval: int | None = None, n_snapshots: int | None = None, times=None):
        self.path = Path(path)
        self._schedule = ScheduledTracker(interval=interval, n_snapshots=n_snapshots, times=times)
        self._file = None
        self._tmp: Path | None = None
        self._step_name = "steps"

    def steps(self, n_total: int, dt: float) -> np.ndarray:
        return self._schedule.steps(n_total, dt)

    def initialize(self, state, t, solver, info) -> None:
        self.abort()  # a previous run of this writer that never finished: drop its temporary file
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # .NAME.PID.XXXX.tmp beside the target: the rename in finalize is atomic, a killed run's file is findable
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.{os.getpid()}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        try:
            self._open(np.asarray(state), info)
        except BaseException:  # the group aborts only trackers that started: clean up here
            self.abort()
            raise

    def _open(self, state: np.ndarray, info: dict) -> None:
        import h5py

        self._file = f = h5py.File(self._tmp, "w")
        f.attrs["kind"] = str(info.get("kind", "arrays"))
        f.attrs["config"] = json.dumps(_jsonable(dict(info.get("config", {}))), sort_keys=True)
        _provenance(f.attrs)  # as in save()
        _write_group(f, dict(info.get("arrays", {})))
        self._step_name = str(info.get("step_name", "steps"))
        compression = "gzip" if state.size > 4096 else None  # as save(): small snapshots stay uncompressed
        f.create_dataset("values", shape=(0, *state.shape), maxshape=(None, *state.shape), dtype=state.dtype,
                         chunks=(1, *state.shape) if state.size else True, compression=compression)
        f.create_dataset("times", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))
        f.create_dataset(self._step_name, shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,))

    def handle(self, state, t, step) -> None:
        f = self._file
        n = f["times"].shape[0]
        for name, value in (("values", state), ("times", t), (self._step_name, step)):
            f[name].resize(n + 1, axis=0)
            f[name][n] = value
        f.flush()  # what is written survives a crash (in the temporary file)

    def finalize(self) -> None:
        tmp = self._tmp
        self._close()
        if tmp is not None:
            os.replace(tmp, self.path)
            self._tmp = None

    def abort(self) -> None:
        tmp = self._tmp
        self._close()
        if tmp is not None:
            tmp.unlink(missing_ok=True)
            self._tmp = None

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"HDF5Writer({str(self.path)!r})"
