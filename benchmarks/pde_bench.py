"""Explicit PDE steps: fused Numba kernels vs a NumPy-slicing implementation of the same steps.

Problem: features form on a 2-D Torus [0, 1)^2, 2048^2 nodes, non-uniform density
p(x) = 1 + 0.5 cos(2 pi (x + y)), Euclidean metric; explicit Euler steps H <- H + dt (1/w) D H at
0.9 x the stability limit. Measured, in the same run and interleaved (the machine may be shared: every figure is
the best of ``repeats`` rounds):

* NumPy: one step with slicing and in-place ufuncs (its time for k steps is k times that);
* Numba, single step: :meth:`FluxOperator.euler_step` (``apply_numba``), one pass over memory per step;
* Numba, k fused steps: :meth:`FluxOperator.euler_steps` (``advance_numba``, temporal blocking), one pass
  over memory per k steps, for k = 2, 4, 8 (the solver uses ``op.fused_steps()`` = 8 here).

Prints cell updates per second (cells x steps / time) and the ratio to NumPy for each, after checking that
k Numba steps equal k NumPy steps to 1e-12 (relative). Run: ``python benchmarks/pde_bench.py [n] [repeats]``.
"""

from __future__ import annotations

import os
import sys
import time

import numba
import numpy as np

from continuum_attention import Grid, Torus
from continuum_attention.densities import cosine
from continuum_attention.pde import AttentionLimitPDE


class NumpyStep:
    """The same step with NumPy slicing, fused as far as NumPy allows (preallocated buffers, in-place ufuncs)."""

    def __init__(self, fx: np.ndarray, fy: np.ndarray, cout: np.ndarray, inv_h: np.ndarray):
        self.fx, self.fy, self.cout = fx, fy, cout
        self.cx, self.cy = inv_h[0] ** 2, inv_h[1] ** 2
        self.flux = np.empty_like(fx)
        self.div = np.empty_like(fx)
        self.tmp = np.empty_like(fx)

    def __call__(self, u: np.ndarray, out: np.ndarray, dt: float) -> np.ndarray:
        flux, div, tmp = self.flux, self.div, self.tmp
        # axis 0: flux through the face above each node, then its backward difference
        np.subtract(u[1:], u[:-1], out=flux[:-1])
        np.subtract(u[:1], u[-1:], out=flux[-1:])
        flux *= self.fx
        np.subtract(flux[1:], flux[:-1], out=div[1:])
        np.subtract(flux[:1], flux[-1:], out=div[:1])
        div *= self.cx
        # axis 1
        np.subtract(u[:, 1:], u[:, :-1], out=flux[:, :-1])
        np.subtract(u[:, :1], u[:, -1:], out=flux[:, -1:])
        flux *= self.fy
        np.subtract(flux[:, 1:], flux[:, :-1], out=tmp[:, 1:])
        np.subtract(flux[:, :1], flux[:, -1:], out=tmp[:, :1])
        tmp *= self.cy
        div += tmp
        # update
        div *= self.cout
        div *= dt
        np.add(u, div, out=out)
        return out


def best_times(candidates: dict, repeats: int) -> dict:
    """Best wall time of each callable over ``repeats`` interleaved rounds (fair under fluctuating load)."""
    best = {name: float("inf") for name in candidates}
    for _ in range(repeats):
        for name, call in candidates.items():
            t0 = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def main(n: int = 2048, repeats: int = 20) -> dict:
    torus = Torus([1.0, 1.0])
    grid = Grid(torus, n)
    pde = AttentionLimitPDE(grid, cosine(torus, 0.5, (1, 1)))
    op = pde._op  # the operator's arrays, shared by all implementations
    dt = 0.9 * pde.max_stable_dt()
    fused = sorted({2, 4, 8, op.fused_steps()})  # steps per pass compared; the solver uses op.fused_steps()
    x = grid.coordinates
    u = np.ascontiguousarray(np.sin(2 * np.pi * x[..., 0]) * np.cos(4 * np.pi * x[..., 1])).reshape(op.shape3)
    out_numba, out_numpy, spare = np.empty_like(u), np.empty_like(u), np.empty_like(u)

    faces = op.face_coefficients()  # the NumPy step reads precomputed faces (its best option)
    numpy_step = NumpyStep(faces[1, 0], faces[2, 0], op.cout[0], op.inv_h[1:])
    # correctness first (this also compiles or loads the kernels outside the timing): k Numba steps = k NumPy steps
    max_diff = 0.0
    for k in (1, *fused):
        cur = u[0].copy()
        for _ in range(k):
            cur = numpy_step(cur, np.empty_like(cur), dt)
        op.euler_steps(u, out_numba, dt, k)
        diff = float(np.max(np.abs(out_numba[0] - cur)) / np.max(np.abs(cur)))
        if not diff < 1e-12:
            raise SystemExit(f"{k} Numba steps and {k} NumPy steps disagree: max relative difference {diff:.3g}")
        max_diff = max(max_diff, diff)

    candidates = {
        "numpy": lambda: numpy_step(u[0], out_numpy[0], dt),
        "numba 1": lambda: op.euler_step(u, out_numba, dt),
    }
    for k in fused:
        candidates[f"numba {k}"] = lambda k=k: op.euler_steps(u, out_numba, dt, k)
    best = best_times(candidates, repeats)
    cells = grid.size
    t_numpy = best["numpy"]
    result = {
        "grid": f"{n}x{n}",
        "threads": numba.get_num_threads(),
        "load": os.getloadavg()[0],
        "repeats": repeats,
        "numpy_s_per_step": t_numpy,
        "numpy_cells_per_s": cells / t_numpy,
        "max_rel_diff": max_diff,
    }
    print(
        f"explicit Euler, features form, Torus {n}x{n}, non-uniform p, Numba threads={result['threads']}, "
        f"best of {repeats}, load average {result['load']:.2f}"
    )
    print(f"  {'NumPy, 1 step':24s}: {t_numpy * 1e3:8.2f} ms/step  {cells / t_numpy:.3e} cell updates/s")
    for k in (1, *fused):
        per_step = best[f"numba {k}"] / k
        label = "Numba, single step" if k == 1 else f"Numba, {k} fused steps"
        result[f"numba{k}_s_per_step"] = per_step
        result[f"numba{k}_cells_per_s"] = cells / per_step
        result[f"speedup{k}"] = t_numpy / per_step
        print(
            f"  {label:24s}: {per_step * 1e3:8.2f} ms/step  {cells / per_step:.3e} cell updates/s  "
            f"{t_numpy / per_step:5.1f}x NumPy"
        )
    k = op.fused_steps()
    met = "met" if result[f"speedup{k}"] >= 8 else "NOT met"
    print(
        f"  solver default ({k} fused steps): {result[f'speedup{k}']:.1f}x NumPy, target >= 8x {met}; "
        f"k steps agree with NumPy to {max_diff:.1e} (relative)"
    )
    return result


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
