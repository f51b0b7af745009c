"""Sweep speed-up on a local Dask cluster: 1 against 2 workers (and serial), the same sweep, the same bits.

Run: ``python benchmarks/cluster_bench.py`` on a quiet machine (about a minute on 2 cores); it prints the
load average beside the figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # one core a worker (inherited); the serial run gets one too

import time  # noqa: E402

import numpy as np  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from continuum_attention import Torus  # noqa: E402
from continuum_attention import compare  # noqa: E402
from continuum_attention import densities as D  # noqa: E402
from continuum_attention.problem import Problem  # noqa: E402

CIRCLE = Torus(1.0)
PROBLEM = Problem(CIRCLE, D.cosine(CIRCLE, 0.5, 1), None, lambda x: np.cos(2 * np.pi * x[:, 0]), 0.01)
GRID = dict(N_values=[4000, 8000], eps_values=[1e-3, 2e-3, 4e-3, 8e-3], seeds=[0, 1])


def measure(N, eps, seed):
    return compare.consistency_error(PROBLEM, N, eps, seed, operator_kwargs={"truncate": False, "dense_budget": 0})


def timed(executor=None):
    start = time.perf_counter()
    result = compare.ConvergenceStudy(measure, **GRID).run(progress=False, executor=executor)
    return time.perf_counter() - start, result.errors


def main() -> None:
    serial_s, ref = timed()
    out = {"serial (1 core)": serial_s}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None, silence_logs=40) as c, \
                Client(c) as client:
            client.submit(measure, 200, 0.01, 0).result()  # workers started and compiled
            seconds, errors = timed(client)
            assert errors.tobytes() == ref.tobytes(), "cluster and serial runs differ"
            out[f"{workers} worker(s)"] = seconds
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    for name, seconds in out.items():
        print(f"{name:18s} {seconds:7.2f} s")
    print(f"speed-up 2 workers / 1 worker: {out['1 worker(s)'] / out['2 worker(s)']:.2f}x "
          f"(16 cells, identical bits); load average {load}")


if __name__ == "__main__":
    main()
