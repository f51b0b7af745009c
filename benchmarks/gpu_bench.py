"""GPU benchmark (issue 11): pairs per second of one exact attention layer with backend="torch" on CUDA.

Run on a machine with a CUDA device: ``python benchmarks/gpu_bench.py [N ...]`` (default N = 10^5 and 10^6),
d = 2 on the unit torus, eps = 1e-3, float32 and float64. Measured in the same run:

* the package's fused path: ``AttentionOperator(x, eps, domain=Torus([1, 1]), backend="torch", device="cuda",
  dtype=..., truncate=False, dense_budget=0).apply(H)`` after one warm-up application (points resident), which
  on CUDA runs the Triton kernel of ``attention/_triton.py`` (``op``'s kernels report ``fused="triton"``);
* the package's blocked torch path: the same with ``CONTINUUM_ATTENTION_FUSED=0`` (row blocks of torch ops);
* a naive baseline: row blocks of differences (minimum image by hand) + ``softmax`` + ``matmul``.

Each figure is the best of 3, synchronised (``torch.cuda.synchronize``). Target: the N = 10^6 float32 layer in
under 0.5 s on an H200. Without CUDA the script says so and exits with status 1: the figures are then "not
measured".
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np


def _naive(torch, x, H, eps, block):
    out = torch.empty_like(H)
    for i in range(0, x.shape[0], block):
        d = x[i:i + block, None, :] - x[None, :, :]
        d = d - torch.round(d)
        out[i:i + block] = torch.softmax(-(d * d).sum(-1) / (2 * eps), dim=1) @ H
    return out


def _best(torch, fn, repeats=3):
    fn()
    torch.cuda.synchronize()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    import torch

    from continuum_attention import Torus
    from continuum_attention.attention import AttentionOperator

    if not torch.cuda.is_available():
        print("no CUDA device here: the GPU figures are not measured")
        return 1
    sizes = [int(a) for a in sys.argv[1:]] or [10**5, 10**6]
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    eps = 1e-3
    for n in sizes:
        x = np.random.default_rng(0).random((n, 2))
        H = np.cos(2 * np.pi * x[:, 0])
        for dtype in ("float32", "float64"):
            times = {}
            for path, flag in (("fused", "1"), ("blocked", "0")):
                os.environ["CONTINUUM_ATTENTION_FUSED"] = flag
                op = AttentionOperator(x, eps, domain=Torus([1, 1]), backend="torch", device="cuda", dtype=dtype,
                                       truncate=False, dense_budget=0)
                times[path] = _best(torch, lambda: op.apply(H))
            xt = torch.tensor(x, device="cuda", dtype=getattr(torch, dtype))
            Ht = torch.tensor(H[:, None], device="cuda", dtype=getattr(torch, dtype))
            times["naive"] = _best(torch, lambda: _naive(torch, xt, Ht, eps, max(1, 2**28 // (3 * n))))
            print(f"N={n:>8d} {dtype}: " + ", ".join(f"{k} {n * n / t:.3e} pairs/s ({t:.3f} s)" for k, t in times.items())
                  + f"; fused / naive {times['naive'] / times['fused']:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
