"""Command line: ``continuum-attention {info, reproduce, run, study, plot}``.

Errors (bad arguments, bad configuration values, missing files) print one line to stderr and exit with
status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main"]


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise CLIError(message)


def _cmd_info(args: argparse.Namespace) -> int:
    import numba

    from .storage import environment_metadata

    for name, version in environment_metadata().items():
        print(f"{name:20s} {version}")
    print(f"{'numba threads':20s} {numba.config.NUMBA_NUM_THREADS} (default {numba.config.NUMBA_DEFAULT_NUM_THREADS})")
    print(f"{'numba threading':20s} {numba.config.THREADING_LAYER}")
    print(f"{'numba cache dir':20s} {numba.config.CACHE_DIR or '(next to the sources: __pycache__)'}")
    print(f"{'numba disable jit':20s} {bool(numba.config.DISABLE_JIT)}")
    return 0


@contextlib.contextmanager
def _executor(args: argparse.Namespace):
    """The Dask client of --scheduler ADDRESS or --dask-local N (None without either)."""
    if args.scheduler is None and args.dask_local is None:
        yield None
        return
    if args.dask_local is not None and args.dask_local < 1:
        raise CLIError(f"--dask-local must be >= 1, got --dask-local {args.dask_local}")
    try:
        import distributed
    except ImportError:
        raise CLIError("--scheduler and --dask-local need Dask: pip install 'continuum-attention[cluster]'") from None
    if args.scheduler is not None:
        try:
            client = distributed.Client(args.scheduler, timeout=10)
        except (OSError, TimeoutError) as exc:
            raise CLIError(f"cannot reach the Dask scheduler at {args.scheduler}: {exc}") from None
        with client:
            yield client
        return
    with distributed.LocalCluster(n_workers=args.dask_local, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        yield client


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .studies import format_table, reproduce

    if args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got --workers {args.workers}")
    from .storage import output_lock

    with output_lock(args.out), _executor(args) as executor:
        results = reproduce(quick=not args.full, only=args.only, out=args.out, seed=args.seed, workers=args.workers,
                            force=args.force, executor=executor)
    print(format_table(results))
    out = Path(args.out)
    print(f"\nresults in {out / 'results'}, figures in {out / 'figures'}")
    return 0 if all(r.ok for r in results) else 1


def _problem_and_output(config: dict):
    from .problem import Problem

    problem = Problem.from_config(config["problem"])
    if problem.initial is None:
        raise CLIError("[problem] needs an 'initial' expression, e.g. initial = \"cos(2*pi*x)\"")
    out = config["output"]
    return problem, Path(out["dir"]), out["name"]


def _save_figure(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _cmd_run(args: argparse.Namespace) -> int:
    from .compare import run_problem
    from .config import load_config
    from .plotting import plot_run
    from .storage import output_lock, save_result

    if (args.config is None) == (args.source is None):
        raise CLIError("run takes a TOML configuration or --from RESULT.h5 (exactly one)")
    if args.source is not None:
        return _rerun(Path(args.source), Path(args.output) if args.output else None)
    config = load_config(args.config, "run")
    problem, out, name = _problem_and_output(config)
    part, pde = config["particles"], config["pde"]
    with output_lock(out):
        result = run_problem(
            problem, part["N"], part["eps"], part["seed"], mode=part["mode"], grid_shape=pde["shape"],
            method=pde["method"], truncate=part["truncate"],
        )
        h5 = save_result(out / "results" / f"{name}.h5", result)
        png = _save_figure(plot_run(result), out / "figures" / f"{name}.png")
    print(f"{'mode':12s} {result.mode}\n{'N':12s} {part['N']}\n{'eps':12s} {part['eps']}\n{'t_final':12s} {problem.t_final}")
    for key, value in result.errors.items():
        print(f"{key:12s} {value:.6g}")
    print(f"wrote {h5} and {png}")
    return 0


def _rerun(source: Path, target: Path | None) -> int:
    """``run --from``: rebuild the problem and settings stored in a result of ``run`` and run them again."""
    import numpy as np

    from .compare import RunResult, run_problem
    from .problem import Problem
    from .storage import load_result, output_lock, save_result

    stored = load_result(source)
    if not isinstance(stored, RunResult):
        raise CLIError(f"--from takes a file written by 'continuum-attention run'; {source} holds a "
                       f"{type(stored).__name__}")
    cfg = stored.config
    problem = Problem.from_config(cfg["problem"])
    target = target or source.with_suffix(".rerun.h5")
    with output_lock(target.parent):
        result = run_problem(problem, cfg["N"], cfg["eps"], cfg["seed"], mode=stored.mode,
                             grid_shape=cfg["grid_shape"], method=cfg["method"], truncate=cfg["truncate"])
        save_result(target, result)
    diff = max(float(np.max(np.abs(result.particle_values - stored.particle_values))),
               float(np.max(np.abs(np.asarray(result.pde_values) - np.asarray(stored.pde_values)))))
    same = diff == 0.0
    print(f"reran {source} -> {target}: {'identical, bit for bit' if same else f'differs (max |diff| {diff:.3g})'}")
    return 0 if same else 1


def _cmd_study(args: argparse.Namespace) -> int:
    from . import compare
    from .config import load_config
    from .plotting import plot_convergence
    from .storage import SweepFile, output_lock

    config = load_config(args.config, "study")
    problem, out, name = _problem_and_output(config)
    study, pde = config["study"], config["pde"]
    measures = {
        "consistency": lambda N, eps, seed: compare.consistency_error(problem, N, eps, seed),
        "propagation": lambda N, eps, seed: compare.propagation_error(problem, N, eps, seed, solution=solution),
        "walkers": lambda N, eps, seed: compare.walker_error(problem, N, eps, seed, solution=solution),
    }
    if study["quantity"] not in measures:
        raise CLIError(f"[study] quantity must be one of {sorted(measures)}, got {study['quantity']!r}")
    solution = None
    if study["quantity"] != "consistency":
        form = "features" if study["quantity"] == "propagation" else "walkers"
        solution = compare.reference_solution(problem, form, pde["shape"], pde["method"])
    seeds = study["seeds"] if isinstance(study["seeds"], list) else list(range(int(study["seeds"])))
    sweep = compare.ConvergenceStudy(
        measures[study["quantity"]], study["N"], study["eps"], seeds, key=study["key"],
        store=SweepFile(out / "results" / f"{name}.h5"), config={"problem": problem.to_config(), "study": study, "pde": pde},
    )
    with output_lock(out), _executor(args) as executor:
        result = sweep.run(executor=executor)
        png = _save_figure(plot_convergence(result, title=name, ylabel=f"{study['quantity']} error ({study['key']})"), out / "figures" / f"{name}.png")
    print("N \\ eps " + " ".join(f"{e:>11.3g}" for e in result.eps_values))
    for n, row in zip(result.N_values, result.mean):
        print(f"{n:<8d} " + " ".join(f"{v:11.4g}" for v in row))
    if len(result.N_values) > 1:
        for j, eps in enumerate(result.eps_values):
            slope, err = result.slope_in_N(j)
            print(f"slope in N at eps={eps:.3g}: {slope:.3f} +- {err:.3f}")
    print(f"wrote {out / 'results' / (name + '.h5')} and {png}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plotting import plot_result_file

    path = Path(args.result)
    target = Path(args.output) if args.output else path.with_suffix(".png")
    _save_figure(plot_result_file(path), target)
    print(f"wrote {target}")
    return 0


def _cluster_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--scheduler", metavar="ADDRESS", help="compute on an existing Dask scheduler (tcp://host:8786)")
    group.add_argument("--dask-local", type=int, metavar="N", help="compute on a local Dask cluster of N workers")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="continuum-attention", description="Attention as a drift-diffusion PDE: particles, PDE, convergence.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("info", help="versions, thread count, Numba configuration")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("reproduce", help="run the verification studies and print the table")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="reduced sizes (default; under 10 minutes on 2 cores)")
    mode.add_argument("--full", action="store_true", help="publication scale")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these studies")
    p.add_argument("--out", default=".", help="folder that receives results/ and figures/ (default: .)")
    p.add_argument("--workers", type=int, default=1, help="studies run in parallel processes")
    p.add_argument("--seed", type=int, default=0, help="base random seed")
    p.add_argument("--force", action="store_true", help="rerun studies that already have results")
    _cluster_options(p)
    p.set_defaults(func=_cmd_reproduce)

    p = sub.add_parser("run", help="one problem: particles, PDE, comparison, HDF5 and PNG")
    p.add_argument("config", nargs="?", help="TOML file with [problem], [particles], [pde], [output]")
    p.add_argument("--from", dest="source", metavar="RESULT.h5",
                   help="rerun the problem stored in a result of 'run' and compare (exit 1 if it differs)")
    p.add_argument("-o", "--output", help="with --from: where the rerun goes (default RESULT.rerun.h5)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("study", help="a convergence sweep over N, eps and seeds (resumable)")
    p.add_argument("config", help="TOML file with [problem], [study], [pde], [output]")
    _cluster_options(p)
    p.set_defaults(func=_cmd_study)

    p = sub.add_parser("plot", help="draw a stored result")
    p.add_argument("result", help="an HDF5 file written by run, study or reproduce")
    p.add_argument("-o", "--output", help="PNG path (default: next to the result)")
    p.set_defaults(func=_cmd_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``continuum-attention`` console script."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args))
    except (CLIError, ValueError, TypeError, OSError) as exc:  # user errors: the validation layer, files
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"continuum-attention: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("continuum-attention: interrupted; finished results are kept, run the same command again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
