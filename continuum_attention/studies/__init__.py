"""The reproduce registry: one small module per study, each registering itself with :func:`register`.

Modules in this package are discovered automatically; a study module only needs ``@register(...)`` on its
``run(quick, seed)`` function. :func:`reproduce` runs them, writes ``results/NAME.h5`` and
``figures/NAME.png``, and skips studies whose result file already exists for the same mode and seed.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path
from typing import Iterable

from ._base import Check, Study, StudyResult, register, registry

__all__ = ["Check", "Study", "StudyResult", "register", "registry", "all_studies", "reproduce", "format_table", "script_main"]


def all_studies() -> dict[str, Study]:
    """Import every study module of this package and return the registry in reproduce order."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return registry()


def _select(only: Iterable[str] | None) -> list[Study]:
    studies = all_studies()
    if not only:
        return list(studies.values())
    unknown = [name for name in only if name not in studies]
    if unknown:
        raise ValueError(f"unknown study {unknown[0]!r}; valid studies: {', '.join(studies)}")
    return [studies[name] for name in only]


def _finished(study: Study, quick: bool, seed: int, out: Path, force: bool) -> StudyResult | None:
    """The stored result of a study already run in this mode with this seed (None: run it)."""
    from ..storage import load_result

    h5 = out / "results" / f"{study.name}.h5"
    if h5.is_file() and not force:
        stored = load_result(h5)
        if stored.config.get("mode") == ("quick" if quick else "full") and stored.config.get("seed") == seed:
            return stored
    return None


def compute_study(name: str, quick: bool, seed: int) -> StudyResult:
    """Run one study and return its result without writing anything (what a cluster worker does)."""
    start = time.perf_counter()
    result = all_studies()[name].run(quick=quick, seed=seed)
    result.config.update(mode="quick" if quick else "full", seed=seed)
    result.config.setdefault("seconds", round(time.perf_counter() - start, 2))
    return result


def _run_one(study: Study, quick: bool, seed: int, out: Path, force: bool) -> StudyResult:
    stored = _finished(study, quick, seed, out, force)
    if stored is not None:
        return stored
    result = study.run(quick=quick, seed=seed)
    result.config.update(mode="quick" if quick else "full", seed=seed)
    return _write(result, out)


def _write(result: StudyResult, out: Path) -> StudyResult:
    from ..storage import save_result

    h5 = out / "results" / f"{result.name}.h5"
    if result.figure is not None:
        png = out / "figures" / f"{result.name}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        result.figure.savefig(png, dpi=110, bbox_inches="tight")
    save_result(h5, result)  # last: its existence marks the study finished
    return result


def _run_in_subprocess(args: tuple) -> StudyResult:
    study_name, quick, seed, out, force = args
    return _run_one(all_studies()[study_name], quick, seed, Path(out), force)


def reproduce(
    *,
    quick: bool = True,
    only: Iterable[str] | None = None,
    out: str | Path = ".",
    seed: int = 0,
    workers: int = 1,
    force: bool = False,
    progress: bool | None = None,
    executor=None,
) -> list[StudyResult]:
    """Run the selected studies (all by default) and return their results, in registry order.

    A study whose ``results/NAME.h5`` already exists for the same mode and seed is loaded, not rerun, so an
    interrupted ``reproduce`` continues where it stopped. ``workers > 1`` runs studies in parallel processes.
    ``executor`` (a Dask client or a ``concurrent.futures`` executor) computes the studies there; this process
    alone writes their files, as each arrives.
    """
    from tqdm.auto import tqdm

    studies = _select(only)
    out = Path(out)
    disable = None if progress is None else not progress
    results: list[StudyResult] = []
    if executor is not None:
        return _reproduce_on(executor, studies, quick, seed, out, force, disable)
    if workers > 1 and len(studies) > 1:
        from concurrent.futures import ProcessPoolExecutor

        jobs = [(s.name, quick, seed, str(out), force) for s in studies]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for res in tqdm(pool.map(_run_in_subprocess, jobs), total=len(jobs), desc="reproduce", disable=disable):
                results.append(res)
        return results
    bar = tqdm(studies, desc="reproduce", disable=disable, file=sys.stderr)
    for study in bar:
        bar.set_postfix_str(study.name)
        start = time.perf_counter()
        res = _run_one(study, quick, seed, out, force)
        res.config.setdefault("seconds", round(time.perf_counter() - start, 2))
        results.append(res)
    return results


def _reproduce_on(executor, studies, quick, seed, out, force, disable) -> list[StudyResult]:
    from tqdm.auto import tqdm

    from ..compare import completed

    if not callable(getattr(executor, "submit", None)):
        raise TypeError(f"executor must have submit(fn, *args), got executor={executor!r}")
    done = {s.name: _finished(s, quick, seed, out, force) for s in studies}
    futures = {executor.submit(compute_study, name, quick, seed): name for name, r in done.items() if r is None}
    for future in tqdm(completed(list(futures)), total=len(futures), desc="reproduce", disable=disable):
        done[futures[future]] = _write(future.result(), out)
    return [done[s.name] for s in studies]


def format_table(results: Iterable[StudyResult]) -> str:
    """The closing table: study, measured quantity, measured value, expected, tolerance, ok."""
    header = ["study", "quantity", "measured", "expected", "tolerance", "ok"]
    rows = [c.row() for r in results for c in r.checks]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def script_main(name: str, argv: Iterable[str] | None = None) -> int:
    """Entry point of ``simulations/NAME.py``: run one study, write its HDF5 and PNG, print its table."""
    import argparse

    parser = argparse.ArgumentParser(description=f"Reproduce the '{name}' study.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reduced sizes (default)")
    mode.add_argument("--full", action="store_true", help="publication scale")
    parser.add_argument("--out", default=".", help="folder receiving results/ and figures/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rerun even if results exist")
    args = parser.parse_args(None if argv is None else list(argv))
    results = reproduce(quick=not args.full, only=[name], out=args.out, seed=args.seed, force=args.force)
    print(format_table(results))
    return 0 if all(r.ok for r in results) else 1
