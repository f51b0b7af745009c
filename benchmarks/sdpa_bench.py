"""Forward + backward time of the three attention kinds against plain ``scaled_dot_product_attention``.

Problem: one head (the layer's cost is the N x N attention), N tokens of width d (default N = 4096, d = 64),
batch 1, float32 on the CPU (or ``--device``), x ~ N(0, I). Measured in the same run and interleaved (the
machine may be shared: every figure is the best of ``repeats`` rounds):

* ``sdpa``: ``F.scaled_dot_product_attention(q, k, v)`` on precomputed q, k, v of width d (the reference);
* for each kind in self, l2, metric: the layer's forward + backward with ``backend="sdpa"`` (the fused path:
  SDPA with the per-key bias -|b|^2 / (2 eps_eff)) and ``backend="explicit"`` (f and S formed in memory, the
  pre-issue-13 computation), both at the default temperature, key_dim = value_dim = d.

Prints the time per forward + backward, the ratio to plain SDPA, and ``os.getloadavg()`` before and after
(ratios measured under load mean little). Run:
``python benchmarks/sdpa_bench.py [--n 4096] [--d 64] [--repeats 5] [--threads T] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's package, not an installed one

from continuum_attention.learn import make_attention  # noqa: E402


def best_time(fn, repeats: int, device: str) -> float:
    """Best wall time of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dev, n, d = args.device, args.n, args.d
    print(f"N = {n}, d = {d}, device {dev}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average before {os.getloadavg()}")
    torch.manual_seed(0)
    x = torch.randn(1, n, d, device=dev, requires_grad=True)
    q, k, v = (torch.randn(1, 1, n, d, device=dev, requires_grad=True) for _ in range(3))

    def plain():
        F.scaled_dot_product_attention(q, k, v).sum().backward()

    layers = {}
    for kind in ("self", "l2", "metric"):
        for backend in ("sdpa", "explicit"):
            torch.manual_seed(1)
            layers[(kind, backend)] = make_attention(kind, d, key_dim=d, backend=backend).to(dev)

    def run(layer):
        def step():
            layer(x).sum().backward()
        return step

    times = {"sdpa": float("inf")}
    times.update({f"{k}/{b}": float("inf") for k, b in layers})
    for _ in range(args.repeats):  # interleaved rounds: load changes hit every entry alike
        times["sdpa"] = min(times["sdpa"], best_time(plain, 1, dev))
        for (kind, backend), layer in layers.items():
            times[f"{kind}/{backend}"] = min(times[f"{kind}/{backend}"], best_time(run(layer), 1, dev))
    print(f"{'computation':>18s} {'fwd+bwd [ms]':>13s} {'/ plain SDPA':>13s}")
    for name, t in times.items():
        print(f"{name:>18s} {1e3 * t:13.1f} {t / times['sdpa']:13.2f}")
    print(f"load average after {os.getloadavg()}")
    return times


if __name__ == "__main__":
    main()
