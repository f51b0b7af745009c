"""Particle-side benchmark (issue 3): throughput, a 100-layer run against plain NumPy, peak memory.

Run: ``python benchmarks/particle_bench.py`` (about 5 minutes on 2 cores; needs ~4 GiB for the NumPy baseline).

1. matrix-free apply throughput, pairs per second (N = 20000, d = 2, unit torus, eps = 1e-2, float64);
2. 100 feature layers at N = 20000, eps = 1e-4 on the unit 2-torus: truncated mode (what a user would pick at
   this eps, tolerance 1e-12) and dense matrix-free mode (timed over 3 layers, scaled to 100) against NumPy
   that builds the dense S once (3.2 GB) and multiplies 100 times;
3. peak resident memory (VmHWM of a child process, measured first) of a 100-layer truncated features run at N = 100000,
   eps = 5e-6 (about 120 neighbours per row).
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time

import numpy as np

from continuum_attention import Torus
from continuum_attention.attention import AttentionOperator
from continuum_attention.particles import ParticleSolver

N, EPS, LAYERS = 20000, 1e-4, 100


def _points(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((n, 2))


def throughput() -> float:
    x, H = _points(N), np.ones(N)
    op = AttentionOperator(x, 1e-2, domain=Torus([1, 1]))
    op.apply(H)  # compile (cached) and compute the row normalisers
    start = time.perf_counter()
    op.apply(H)
    return N * N / (time.perf_counter() - start)


def numpy_baseline(x: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, float]:
    """Plain NumPy: dense S built once (row blocks, min-image), then 100 matrix-vector products."""
    start = time.perf_counter()
    S = np.empty((N, N))
    for i in range(0, N, 1000):
        d = x[i:i + 1000, None, :] - x[None, :, :]
        d -= np.round(d)
        S[i:i + 1000] = np.exp(-np.sum(d * d, axis=-1) / (2 * EPS))
        S[i:i + 1000] /= S[i:i + 1000].sum(axis=1, keepdims=True)
    for _ in range(LAYERS):
        H = S @ H
    return H, time.perf_counter() - start


def run_comparison() -> dict:
    x = _points(N)
    H0 = np.cos(2 * np.pi * x[:, 0]) * np.sin(2 * np.pi * x[:, 1])
    start = time.perf_counter()
    sol = ParticleSolver(x, EPS, domain=Torus([1, 1]), truncate=True).run(H0, n_layers=LAYERS, n_snapshots=1,
                                                                          progress=False)
    t_trunc = time.perf_counter() - start
    start = time.perf_counter()
    dense = ParticleSolver(x, EPS, domain=Torus([1, 1])).run(H0, n_layers=3, n_snapshots=1, progress=False)
    t_dense3 = time.perf_counter() - start
    ref, t_numpy = numpy_baseline(x, H0)
    return {"truncated_s": t_trunc, "dense_matrix_free_s_per_100": t_dense3 / 3 * LAYERS, "numpy_s": t_numpy,
            "max_abs_diff_vs_numpy": float(np.abs(sol.values[-1] - ref).max())}


def _child_memory_run() -> None:
    n, eps = 100000, 5e-6
    x = _points(n)
    start = time.perf_counter()
    solver = ParticleSolver(x, eps, domain=Torus([1, 1]), truncate=True)
    solver.run(np.cos(2 * np.pi * x[:, 0]), n_layers=LAYERS, n_snapshots=2, progress=False)
    elapsed = time.perf_counter() - start
    # VmHWM: this process's peak resident set since exec (ru_maxrss would also count the forked parent image)
    with open("/proc/self/status") as fh:
        hwm_kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    print(f"{elapsed:.1f} {solver.operator.nnz} {hwm_kib}")


def peak_memory() -> tuple[float, float, int]:
    out = subprocess.run([sys.executable, __file__, "--child"], check=True, capture_output=True, text=True)
    seconds, nnz, peak_kib = out.stdout.split()
    return int(peak_kib) / 2**20, float(seconds), int(nnz)


def main() -> None:
    print(f"particle benchmark {datetime.date.today()}, {os.cpu_count()} cores")
    gib, seconds, nnz = peak_memory()
    print(f"(3) 100 layers, N=100000, eps=5e-6, truncated (nnz {nnz}, {seconds:.1f} s incl. build): peak RSS "
          f"{gib:.3f} GiB (target < 1 GiB)")
    print(f"(1) matrix-free apply, N={N}, d=2: {throughput():.3e} pairs/s")
    res = run_comparison()
    print(f"(2) 100 layers, N={N}, eps={EPS}: truncated {res['truncated_s']:.1f} s, NumPy dense {res['numpy_s']:.1f} s "
          f"-> speed-up {res['numpy_s'] / res['truncated_s']:.1f}x (target >= 10x); "
          f"dense matrix-free {res['dense_matrix_free_s_per_100']:.1f} s (extrapolated from 3 layers) "
          f"-> {res['numpy_s'] / res['dense_matrix_free_s_per_100']:.2f}x; "
          f"max |truncated - NumPy| = {res['max_abs_diff_vs_numpy']:.1e}")


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child_memory_run()
    else:
        main()
