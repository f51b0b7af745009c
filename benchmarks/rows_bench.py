"""The layer at a few rows of a large sample (issue 10, item 5): the grid of cells against the exact rows.

Run: ``python benchmarks/rows_bench.py [--n 10000000] [--rows 400]`` on a quiet machine; it prints the load
average beside every figure.

For uniform points on the unit d-torus (d = 1, 2, 3) and three kernel scales, the time of
``AttentionOperator(x, eps, domain=Torus, truncate=True).apply_rows(rows, f)`` (O(N) binning + O(rows x
neighbours) where the cutoff ball fits a grid of cells, else the exact rows) against the exact rows
``AttentionOperator(x, eps, domain=Torus, truncate=False, dense_budget=0).apply_rows(rows, f)`` (O(rows N)),
in the same run, each a fresh operator as in the consistency studies (construction included), with the largest
difference between the two (the truncation drops at most 1e-12 of each row's mass). "1 row" is the truncated
operator's construction and a single row, which takes the exact path (one row never pays for the binning,
``ROWS_BIN_COST``): the part of every call that does not depend on the rows.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np

from continuum_attention import AttentionOperator, Torus


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--rows", type=int, default=400)
    args = parser.parse_args()
    print(f"N = {args.n}, {args.rows} rows, uniform points on the unit torus, float64, 2 threads")
    print(f"{'d':>2} {'eps':>7} {'cutoff':>7} {'ball':>6} {'cells (s)':>10} {'1 row (s)':>10} {'exact (s)':>10} "
          f"{'ratio':>6} {'max diff':>9}  load")
    for d in (1, 2, 3):
        torus = Torus([1.0] * d)
        x = np.random.default_rng(d).random((args.n, d))
        f = np.sin(2 * np.pi * x[:, 0])
        rows = np.arange(args.rows)
        # compile and load the kernels outside the timed region
        AttentionOperator(x[:5000], 1e-3, domain=torus, truncate=True).apply_rows(rows[:5], f[:5000])
        AttentionOperator(x[:5000], 1e-3, domain=torus, truncate=False, dense_budget=0).apply_rows(rows[:5], f[:5000])
        for eps in (3e-4, 1e-3, 3e-3):
            cells, ours = _timed(lambda: AttentionOperator(x, eps, domain=torus, truncate=True).apply_rows(rows, f))
            fixed, _ = _timed(lambda: AttentionOperator(x, eps, domain=torus, truncate=True).apply_rows(rows[:1], f))
            exact, ref = _timed(lambda: AttentionOperator(x, eps, domain=torus, truncate=False,
                                                          dense_budget=0).apply_rows(rows, f))
            cutoff = math.sqrt(2 * eps * math.log(args.n / 1e-12))
            ball = min(1.0, [2 * cutoff, math.pi * cutoff**2, 4 / 3 * math.pi * cutoff**3][d - 1])
            print(f"{d:>2} {eps:>7.0e} {cutoff:>7.3f} {ball:>6.3f} {cells:>10.2f} {fixed:>10.2f} {exact:>10.2f} "
                  f"{exact / cells:>6.2f} {np.max(np.abs(ours - ref)):>9.1e}  {_load()}", flush=True)


if __name__ == "__main__":
    main()
