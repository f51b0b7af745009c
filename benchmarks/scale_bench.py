"""Scale benchmark (issue 10): the plan chosen by default against plain NumPy and scipy, in the same run.

Run: ``python benchmarks/scale_bench.py [--big]`` on a quiet machine; it prints the load average beside
every figure.

1. A features run with the defaults, ``ParticleSolver(x, eps, domain=Torus([1, 1])).run(H0, n_layers=50)``
   at N = 8000, eps = 2e-4 (the plan: truncated CSR), and at eps = 2e-2 (the plan: S cached dense), against
   plain NumPy that builds the dense S once and multiplies 50 times. Target: >= 10x at eps = 2e-4.
2. The auto rule's crossover: 50 layers with CSR against the cached dense S by the kept fraction of points.
3. ``--big``: N = 10^6 uniform points on the unit 2-torus, about 100 neighbours a row: build + first layer and
   one more layer, against scipy's ``cKDTree.sparse_distance_matrix`` + ``csr_matrix`` + products written by
   hand, with the peak memory of each (VmHWM of a child process). Target: build + layer < 3 s, < 3 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from continuum_attention import ParticleSolver, Torus


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def numpy_features(x: np.ndarray, H: np.ndarray, eps: float, layers: int) -> np.ndarray:
    """Plain NumPy: dense S built once (row blocks, minimum image), then ``layers`` products."""
    n = len(x)
    S = np.empty((n, n))
    for i in range(0, n, 1000):
        d = x[i:i + 1000, None, :] - x[None, :, :]
        d -= np.round(d)
        block = np.exp(-np.sum(d * d, axis=-1) / (2 * eps))
        S[i:i + 1000] = block / block.sum(axis=1, keepdims=True)
    for _ in range(layers):
        H = S @ H
    return H


def defaults_against_numpy(eps: float, n: int = 8000, layers: int = 50) -> dict:
    x = np.random.default_rng(0).random((n, 2))
    H0 = np.cos(2 * np.pi * x[:, 0]) * np.sin(2 * np.pi * x[:, 1])
    # compile (and load the kernels' cache) for the same plan outside the timed region
    ParticleSolver(x[:2500], eps * 3.2, domain=Torus([1, 1])).run(H0[:2500], n_layers=1, progress=False)
    start = time.perf_counter()
    sol = ParticleSolver(x, eps, domain=Torus([1, 1])).run(H0, n_layers=layers, n_snapshots=1, progress=False)
    ours = time.perf_counter() - start
    start = time.perf_counter()
    ref = numpy_features(x, H0, eps, layers)
    base = time.perf_counter() - start
    return {"eps": eps, "plan": sol.metadata["plan"], "ours_s": ours, "numpy_s": base, "ratio": base / ours,
            "max_diff": float(np.max(np.abs(sol.values[-1] - ref))), "load": _load()}


_BIG = r"""
import json, sys, time, numpy as np
n, which = 10**6, sys.argv[1]
x = np.random.default_rng(0).random((n, 2))
eps = 100 / (n * np.pi * 2 * np.log(n / 1e-12))  # pi r^2 n = 100 neighbours, r^2 = 2 eps ln(N / tol)
H = np.cos(2 * np.pi * x[:, 0])
t0 = time.perf_counter()
if which == "ours":
    from continuum_attention import AttentionOperator, Torus
    op = AttentionOperator(x, eps, domain=Torus([1, 1]))
    H1 = op.apply(H); t1 = time.perf_counter(); op.apply(H1); t2 = time.perf_counter()
    extra = {"plan": op.plan, "nnz": op.nnz}
else:
    from scipy.spatial import cKDTree
    from scipy import sparse
    r = np.sqrt(2 * eps * np.log(n / 1e-12))
    tree = cKDTree(x, boxsize=[1.0, 1.0])
    D = tree.sparse_distance_matrix(tree, r, output_type="coo_matrix").tocsr()
    D.data = np.exp(-D.data**2 / (2 * eps)); D.setdiag(1.0)
    D = sparse.diags(1 / np.asarray(D.sum(axis=1)).ravel()) @ D
    H1 = D @ H; t1 = time.perf_counter(); D @ H1; t2 = time.perf_counter()
    extra = {"nnz": int(D.nnz)}
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"which": which, "build_and_layer_s": t1 - t0, "next_layer_s": t2 - t1,
                  "peak_GiB": int(peak) / 2**20, **extra}))
"""


def crossover(n: int = 8000, layers: int = 50) -> list[dict]:
    """The auto rule's threshold: 50 layers (build included) with CSR against the cached dense S, by the
    fraction of the N points a row keeps within the cutoff (AUTO_SPARSE_FRACTION = 0.25 is the rule)."""
    x = np.random.default_rng(0).random((n, 2))
    H0 = np.cos(2 * np.pi * x[:, 0])
    out = []
    for eps in (2e-4, 5e-4, 1e-3, 2e-3, 4e-3):
        times = {}
        for plan, kwargs in (("sparse", dict(truncate=True)), ("dense", dict(truncate=False))):
            start = time.perf_counter()
            sol = ParticleSolver(x, eps, domain=Torus([1, 1]), **kwargs).run(H0, n_layers=layers, n_snapshots=1,
                                                                            progress=False)
            times[plan] = time.perf_counter() - start
            assert sol.metadata["plan"] == plan
        op = ParticleSolver(x, eps, domain=Torus([1, 1]), truncate=True).operator
        out.append({"eps": eps, "fraction": op.nnz / n**2, "sparse_s": times["sparse"], "dense_s": times["dense"],
                    "dense_over_sparse": times["dense"] / times["sparse"], "load": _load()})
    return out


def big() -> list[dict]:
    out = []
    for which in ("ours", "scipy"):
        proc = subprocess.run([sys.executable, "-c", _BIG, which], capture_output=True, text=True, check=True)
        out.append({**json.loads(proc.stdout), "load": _load()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also the N = 10^6 truncated build")
    args = parser.parse_args()
    for eps in (2e-4, 2e-2):
        r = defaults_against_numpy(eps)
        print(f"defaults, N=8000, eps={r['eps']:g}, 50 layers: plan {r['plan']}, {r['ours_s']:.2f} s against "
              f"NumPy {r['numpy_s']:.2f} s: {r['ratio']:.1f}x (target >= 10x at eps=2e-4), max |diff| "
              f"{r['max_diff']:.1e}, load {r['load']}")
    for r in crossover():
        print(f"crossover: kept fraction {r['fraction']:.3f} (eps={r['eps']:g}): CSR {r['sparse_s']:.2f} s, cached "
              f"dense {r['dense_s']:.2f} s, dense/CSR {r['dense_over_sparse']:.2f} (rule: CSR at <= 0.25), "
              f"load {r['load']}")
    if args.big:
        for r in big():
            print(json.dumps(r))


if __name__ == "__main__":
    main()
