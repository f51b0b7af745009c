"""Exact (matrix-free) kernel throughput, issue 10 item 3: pairs per second of one attention application.

Run: ``python benchmarks/kernel_bench.py [N]`` on a quiet machine (default N = 20000; d = 2, unit torus,
eps = 1e-2, float64, row normalisation). Measured in the same run, best of 5, each against the others:

* ``AttentionOperator(x, eps, domain=Torus([1, 1]), truncate=False, dense_budget=0).apply(H)``: the package's
  matrix-free product (the fused lane kernel: score, exp and sum in registers, 8 columns a vector);
* the same sum through the tiled kernel (``_kernels._tiled_sum``: the implementation before the lanes);
* a plain single-pass Numba loop, ``np.exp`` in the inner loop, parallel over rows (the issue's baseline).

SVML: whether Numba can vectorise ``np.exp`` through Intel's SVML here is printed too (it needs an llvmlite
built with the SVML patch, plus ``intel-cmplr-lib-rt``). Target: >= 1.0e9 pairs/s on 2 cores.
"""

from __future__ import annotations

import os
import sys
import time

import llvmlite.binding
import numba
import numpy as np
from numba import njit, prange

from continuum_attention import Torus
from continuum_attention.attention import AttentionOperator, _kernels


@njit(parallel=True)
def plain_loop(x, c, v):
    """sum_j exp(-c |x_i - x_j|^2) v_j on the unit torus: one pass, np.exp per pair."""
    n = x.shape[0]
    out = np.empty(n)
    for i in prange(n):
        acc = 0.0
        for j in range(n):
            d0 = x[i, 0] - x[j, 0]
            d0 -= np.rint(d0)
            d1 = x[i, 1] - x[j, 1]
            d1 -= np.rint(d1)
            acc += np.exp(-c * (d0 * d0 + d1 * d1)) * v[j]
        out[i] = acc
    return out


def _best(fn, repeats: int = 5) -> float:
    fn()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    eps = 1e-2
    c = 1.0 / (2.0 * eps)
    x = np.random.default_rng(0).random((n, 2))
    H = np.cos(2 * np.pi * x[:, 0])
    op = AttentionOperator(x, eps, domain=Torus([1, 1]), truncate=False, dense_budget=0)
    op.apply(H)  # the row normalisers, once
    zeros, BT, M, period = np.zeros(n), np.ascontiguousarray(x.T), np.eye(2), np.ones(2)
    cases = {
        "package (lane kernel)": lambda: op.apply(H),
        "tiled kernel": lambda: _kernels._tiled_sum(0, x, BT, M, False, period, c, zeros, zeros, H[:, None]),
        "plain Numba loop, np.exp": lambda: plain_loop(x, c, H),
    }
    check = plain_loop(x[:2000], c, H[:2000])
    lane = _kernels.kernel_sum(0, x[:2000], np.ascontiguousarray(x[:2000].T), M, False, period, c, zeros[:2000],
                               zeros[:2000], H[:2000, None])[:, 0]
    print(f"N = {n}, d = 2, eps = {eps}, threads = {numba.get_num_threads()}, SVML usable: "
          f"{numba.config.USING_SVML} (llvmlite SVML patch: {llvmlite.binding.has_svml})")
    print(f"lane kernel against the plain loop (N = 2000): max relative difference "
          f"{np.max(np.abs(lane - check) / np.abs(check)):.1e}")
    times = {name: _best(fn) for name, fn in cases.items()}
    base = times["plain Numba loop, np.exp"]
    for name, t in times.items():
        print(f"{name:28s} {n * n / t / 1e9:6.3f} billion pairs/s  ({t:.3f} s, {base / t:5.1f}x the plain loop)  "
              f"load {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("target: >= 1.0 billion pairs/s for the package's kernel")


if __name__ == "__main__":
    main()
