"""Command line: ``continuum-attention {info, reproduce, run, study, plot}``.

Errors (bad arguments, bad configuration values, missing files) print one line to stderr and exit with
status 2.
"""

from __future__ import annotations

import argparse
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


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .studies import format_table, reproduce

    if args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    results = reproduce(quick=not args.full, only=args.only, out=args.out, seed=args.seed, workers=args.workers, force=args.force)
    print(format_table(results))
    out = Path(args.out)
    print(f"\nresults in {out / 'results'}, figures in {out / 'figures'}")
    return 0 if all(r.ok for r in results) else 1


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
    p.set_defaults(func=_cmd_reproduce)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``continuum-attention`` console script."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args))
    except (CLIError, ValueError, FileNotFoundError, KeyError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"continuum-attention: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
