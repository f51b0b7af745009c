"""Explicit PDE step: fused Numba kernel vs a NumPy-slicing implementation of the same step.

Problem: features form on a 2-D Torus [0, 1)^2, 2048^2 nodes, non-uniform density
p(x) = 1 + 0.5 cos(2 pi (x + y)), Euclidean metric; one explicit Euler step H <- H + dt (1/w) D H at
0.9 x the stability limit. Prints cell updates per second for both and their ratio, and checks that both give
the same result. Run: ``python benchmarks/pde_bench.py [n] [repeats]``.
"""

from __future__ import annotations

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


def best_time(step, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(n: int = 2048, repeats: int = 10) -> dict:
    torus = Torus([1.0, 1.0])
    grid = Grid(torus, n)
    pde = AttentionLimitPDE(grid, cosine(torus, 0.5, (1, 1)))
    op = pde._op  # the operator's arrays, shared by both implementations
    dt = 0.9 * pde.max_stable_dt()
    x = grid.coordinates
    u = np.ascontiguousarray(np.sin(2 * np.pi * x[..., 0]) * np.cos(4 * np.pi * x[..., 1])).reshape(op.shape3)
    out_numba, out_numpy = np.empty_like(u), np.empty_like(u)

    op.euler_step(u, out_numba, dt)  # compile (or load from cache) outside the timing
    faces = op.face_coefficients()  # the NumPy step reads precomputed faces (its best option)
    numpy_step = NumpyStep(faces[1, 0], faces[2, 0], op.cout[0], op.inv_h[1:])
    numpy_step(u[0], out_numpy[0], dt)
    diff = np.max(np.abs(out_numba - out_numpy)) / np.max(np.abs(out_numpy))
    if not diff < 1e-12:
        raise SystemExit(f"Numba and NumPy steps disagree: max relative difference {diff:.3g}")

    t_numba = best_time(lambda: op.euler_step(u, out_numba, dt), repeats)
    t_numpy = best_time(lambda: numpy_step(u[0], out_numpy[0], dt), max(3, repeats // 3))
    cells = grid.size
    result = {
        "grid": f"{n}x{n}",
        "threads": numba.get_num_threads(),
        "numba_s": t_numba,
        "numpy_s": t_numpy,
        "numba_cells_per_s": cells / t_numba,
        "numpy_cells_per_s": cells / t_numpy,
        "speedup": t_numpy / t_numba,
        "max_rel_diff": diff,
    }
    print(f"explicit step, features form, Torus {n}x{n}, non-uniform p, Numba threads={result['threads']}")
    print(f"  Numba : {t_numba * 1e3:8.2f} ms/step  {result['numba_cells_per_s']:.3e} cell updates/s")
    print(f"  NumPy : {t_numpy * 1e3:8.2f} ms/step  {result['numpy_cells_per_s']:.3e} cell updates/s")
    print(f"  speed-up {result['speedup']:.1f}x (target >= 8x); results agree to {diff:.1e} (relative)")
    return result


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    main(*args)
