"""Explicit PDE steps against py-pde (issue 10, item 7), each figure beside its baseline from the same run.

Problem (2-D, periodic): dH/dt = Laplace H + 2 <grad log p, grad H> on the unit torus,
p = 1 + 0.5 cos(2 pi (x + y)), H0 = cos(2 pi x) sin(2 pi y), to t = 0.01, on n x n grids (n = 128 and 512).
Time scale: the slowest mode here decays like exp(-8 pi^2 t) (0.45 at t = 0.01); one cell relaxes in h^2 / 4,
which is the explicit limit (dt = 0.9 x our ``max_stable_dt()``, about 0.9 h^2 / 4, for both codes).

* ours: ``AttentionLimitPDE(Grid(Torus([1, 1]), n), cosine(...)).solve(H0, 0.01, method="explicit", dt=dt)``
  (conservative flux form (1/p^2) div(p^2 grad H), fused Numba Euler steps);
* py-pde: ``pde.PDE({"c": "laplace(c) + 2*g*(d_dx(c) + d_dy(c))"}, consts={"g": g})`` with the field
  g = d(log p)/dx = d(log p)/dy evaluated once (as a constant field: the expression would recompute its sines
  every step), its explicit Euler solver with the same fixed dt, Numba backend (central differences).

Both run the same steps (dt = t / ceil(t / dt_0) for both) on the same grid; the error of each at t = 0.01 is
measured against a reference that is exact to ~1e-13: in xi = x + y, eta = x - y the problem separates,
H = f(xi, t)/2 - sin(2 pi eta) e^(-8 pi^2 t)/2 with f_t = 2 f'' + 4 (log p)' f', f(., 0) = sin(2 pi xi), solved by
Fourier collocation (96 modes) and expm. Both discretisations are second order with the same space error as
dt -> 0 (64^2: 4.6e-4 ours, 4.4e-4 py-pde, measured at dt_0 / 16); at dt_0 explicit Euler's time error adds to
ours and partly cancels py-pde's (64^2: 9.8e-4 ours, 5.0e-4 py-pde), so at the same grid and dt our max error
is about twice py-pde's. Both errors are printed.

Measured:

(a) wall time of a fresh ``python`` process that imports the code, builds the problem, compiles (an empty
    ``NUMBA_CACHE_DIR`` of its own) and solves to t = 0.01: the parent times the whole subprocess. Target:
    ours >= 5x faster than py-pde.
(b) steady cell-steps per second (cells x steps / time), in this process after a warm-up, the best of
    ``repeats`` interleaved rounds of ``steady_steps`` steps of each code's stepper (ours: the solver's
    ``ExplicitEuler.advance``, 8 fused steps a pass; py-pde: the stepper from ``EulerSolver.make_stepper``).
    Target: >= 10x py-pde.
(c) effective memory bandwidth of our explicit step, 24 bytes per cell-step (read H and p^2, write H), against
    ``np.copyto`` of two 256 MiB arrays (16 bytes per element: read + write) in the same run. Target: the
    step >= 60% of the copy. At 128^2 and 512^2 the step's arrays (0.4 and 6 MiB) sit in the caches, where a
    step can beat the DRAM copy; the single-step kernel (one pass over memory per step) is shown too.

Run: ``python benchmarks/pypde_bench.py [n ...] [--repeats R]`` (default n = 128 512) with ``py-pde``
installed (``pip install continuum-attention[bench]``), on a quiet machine: it prints the load average beside
the figures. Took 14 minutes on the 2-core VM under load 6 to 8 (py-pde's fresh 512^2 process alone 7 minutes,
its compilation about 100 s of each fresh run); ``python benchmarks/pypde_bench.py 32`` is a 2-minute smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import scipy.linalg

T_FINAL = 0.01
AMPLITUDE = 0.5
G_EXPR = "(-pi*sin(2*pi*(x+y))/(1+0.5*cos(2*pi*(x+y))))"  # d(log p)/dx = d(log p)/dy
TARGET_STEADY, TARGET_FRESH, TARGET_BANDWIDTH = 10.0, 5.0, 0.6


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ---------------------------------------------------------------------------------------------------------
# Reference: the separated problem, Fourier collocation in xi, exp(t A) exactly
# ---------------------------------------------------------------------------------------------------------


def reference(points: np.ndarray, t: float = T_FINAL, modes: int = 96) -> np.ndarray:
    """H(x, y, t) at ``points`` (P, 2): f(xi, t)/2 - sin(2 pi eta) exp(-8 pi^2 t)/2 (see the module docstring)."""
    k = np.fft.fftfreq(modes, 1.0 / modes)  # integer wavenumbers
    xi = np.arange(modes) / modes
    ft = np.fft.fft(np.eye(modes), axis=0)
    d1 = np.real(np.fft.ifft(2j * np.pi * k[:, None] * ft, axis=0))
    d2 = np.real(np.fft.ifft(-((2 * np.pi * k[:, None]) ** 2) * ft, axis=0))
    c = 2 * np.pi * xi
    dlogp = -2 * np.pi * AMPLITUDE * np.sin(c) / (1 + AMPLITUDE * np.cos(c))
    A = 2 * d2 + 4 * dlogp[:, None] * d1
    f = scipy.linalg.expm(t * A) @ np.sin(c)
    coef = np.fft.fft(f) / modes
    s = points[:, 0] + points[:, 1]
    f_at = np.zeros(len(points))
    for j in range(modes):  # trigonometric interpolation; the Nyquist mode (~1e-16 here) taken as a cosine
        kj = k[j]
        if abs(kj) == modes // 2:
            f_at += np.real(coef[j]) * np.cos(2 * np.pi * kj * s)
        else:
            f_at += np.real(coef[j] * np.exp(2j * np.pi * kj * s))
    eta = points[:, 0] - points[:, 1]
    return 0.5 * f_at - 0.5 * np.sin(2 * np.pi * eta) * np.exp(-8 * np.pi**2 * t)


# ---------------------------------------------------------------------------------------------------------
# The two codes (each function is also run, alone, by a fresh child process)
# ---------------------------------------------------------------------------------------------------------


def ours_setup(n: int):
    from continuum_attention import Grid, Torus
    from continuum_attention.densities import cosine
    from continuum_attention.pde import AttentionLimitPDE

    torus = Torus([1.0, 1.0])
    pde = AttentionLimitPDE(Grid(torus, n), cosine(torus, AMPLITUDE, (1, 1)))
    return pde, 0.9 * pde.max_stable_dt()


def ours_h0(points: np.ndarray) -> np.ndarray:
    return np.cos(2 * np.pi * points[:, 0]) * np.sin(2 * np.pi * points[:, 1])


def ours_solve(n: int, dt: float | None = None):
    pde, dt_default = ours_setup(n)
    dt = dt_default if dt is None else dt
    sol = pde.solve(ours_h0, T_FINAL, method="explicit", dt=dt, n_snapshots=2, progress=False)
    return sol.values[-1], pde.grid.points, sol.n_steps


def pypde_setup(n: int, dt: float):
    import pde as pypde

    grid = pypde.CartesianGrid([[0.0, 1.0], [0.0, 1.0]], [n, n], periodic=True)
    state = pypde.ScalarField.from_expression(grid, "cos(2*pi*x)*sin(2*pi*y)")
    g = pypde.ScalarField.from_expression(grid, G_EXPR)
    eq = pypde.PDE({"c": "laplace(c) + 2*g*(d_dx(c) + d_dy(c))"}, consts={"g": g})
    solver = pypde.EulerSolver(eq, backend="numba")
    return grid, state, solver, solver.make_stepper(state, dt=dt)


def pypde_solve(n: int, dt: float):
    grid, state, solver, stepper = pypde_setup(n, dt)
    stepper(state, 0.0, T_FINAL)
    return state.data.copy(), grid.cell_coords.reshape(-1, 2), int(solver.info["steps"])


_CHILD = textwrap.dedent("""
    import sys, time, json
    import numpy as np
    sys.path.insert(0, {bench_dir!r})
    import pypde_bench as b
    which, n, dt, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    values, points, steps = b.ours_solve(n, dt) if which == "ours" else b.pypde_solve(n, dt)
    np.savez(out, values=values, points=points)
    print(json.dumps({{"steps": steps}}))
""")


def fresh_run(which: str, n: int, dt: float) -> dict:
    """Wall time of a fresh process (import, set-up, compilation into an empty Numba cache, the solve)."""
    import continuum_attention

    root = str(Path(continuum_attention.__file__).resolve().parent.parent)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "numba"),
                   PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
        out = os.path.join(tmp, "result.npz")
        code = _CHILD.format(bench_dir=str(Path(__file__).resolve().parent))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code, which, str(n), repr(dt), out],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{which} child failed:\n{proc.stderr}")
        data = np.load(out)
        values, points = data["values"].ravel(), data["points"]
    err = float(np.max(np.abs(values - reference(points))))
    return {"wall_s": wall, "steps": json.loads(proc.stdout.strip().splitlines()[-1])["steps"], "max_err": err}


# ---------------------------------------------------------------------------------------------------------
# Steady throughput and bandwidth, in this process
# ---------------------------------------------------------------------------------------------------------


def copy_bandwidth(nbytes: int = 1 << 28, repeats: int = 5) -> float:
    """Bytes per second of ``np.copyto`` between two ``nbytes`` arrays (read + write: 2 nbytes a copy)."""
    src = np.random.default_rng(0).random(nbytes // 8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(repeats))
    return 2 * nbytes / best


def _timed(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def steady(n: int, dt: float, steps: int, repeats: int) -> dict:
    from continuum_attention.pde.steppers import ExplicitEuler

    pde, _ = ours_setup(n)
    op = pde._op
    u0 = np.ascontiguousarray(ours_h0(pde.grid.points)).reshape(op.shape3)
    stepper = ExplicitEuler(op)
    stepper.prepare(dt)
    stepper.advance(u0, 16)  # compile or load from the cache
    single_out = np.empty_like(u0)
    op.euler_step(u0, single_out, dt)

    _, state, solver, stepper_pp = pypde_setup(n, dt)
    data0 = state.data.copy()
    stepper_pp(state, 0.0, 4 * dt)  # compile

    def run_pypde():
        state.data[...] = data0
        before = solver.info["steps"]
        stepper_pp(state, 0.0, steps * dt)
        run_pypde.steps = solver.info["steps"] - before

    def run_ours():
        with op.threads():
            stepper.advance(u0, steps)

    def run_single():
        with op.threads():
            for _ in range(steps // 8):
                op.euler_step(u0, single_out, dt)

    best = {"ours": np.inf, "pypde": np.inf, "single": np.inf}
    for _ in range(repeats):
        for name, call in (("ours", run_ours), ("pypde", run_pypde), ("single", run_single)):
            best[name] = min(best[name], _timed(call))
    cells = pde.grid.size
    return {"ours_cells_per_s": cells * steps / best["ours"],
            "pypde_cells_per_s": cells * run_pypde.steps / best["pypde"],
            "single_cells_per_s": cells * (steps // 8) / best["single"], "pypde_steps": run_pypde.steps}


def main(sizes=(128, 512), repeats: int = 5, steady_steps: int = 400) -> list[dict]:
    import numba
    import pde as pypde

    import continuum_attention

    print(f"explicit steps vs py-pde {pypde.__version__}: dH/dt = Laplace H + 2 grad log p . grad H, unit torus, "
          f"p = 1 + 0.5 cos(2 pi (x + y)), H0 = cos(2 pi x) sin(2 pi y), t = {T_FINAL}; continuum_attention "
          f"{continuum_attention.__version__}, numba {numba.__version__}, threads {numba.get_num_threads()}, "
          f"load average {_load()}")
    bandwidth = copy_bandwidth()
    print(f"  np.copyto 256 MiB: {bandwidth / 1e9:.2f} GB/s (read + write), load {_load()}")
    results = []
    for n in sizes:
        _, dt0 = ours_setup(n)
        dt = T_FINAL / math.ceil(T_FINAL / dt0)  # a whole number of steps: the same for both codes
        ours_fresh = fresh_run("ours", n, dt)
        pp_fresh = fresh_run("pypde", n, dt)
        rates = steady(n, dt, steady_steps, repeats)
        r = {"n": n, "dt": dt, "steps": ours_fresh["steps"], "ours_fresh_s": ours_fresh["wall_s"],
             "pypde_fresh_s": pp_fresh["wall_s"], "ours_err": ours_fresh["max_err"], "pypde_err": pp_fresh["max_err"],
             "pypde_fresh_steps": pp_fresh["steps"], **rates, "copy_bytes_per_s": bandwidth, "load": os.getloadavg()}
        r["fresh_ratio"] = r["pypde_fresh_s"] / r["ours_fresh_s"]
        r["steady_ratio"] = r["ours_cells_per_s"] / r["pypde_cells_per_s"]
        r["bandwidth_fraction"] = 24 * r["ours_cells_per_s"] / bandwidth
        r["single_bandwidth_fraction"] = 24 * r["single_cells_per_s"] / bandwidth
        results.append(r)

        def verdict(value, target):
            return f"target >= {target:g}: {'met' if value >= target else 'NOT met'}"

        print(f"{n}x{n}: dt = {dt:.4g}, {r['steps']} steps (py-pde {r['pypde_fresh_steps']}), load {_load()}")
        print(f"  max error at t = {T_FINAL} vs reference: ours {r['ours_err']:.3g}, py-pde {r['pypde_err']:.3g} "
              f"(max |H0| = 1)")
        print(f"  (a) fresh process incl. compilation: ours {r['ours_fresh_s']:.2f} s, py-pde "
              f"{r['pypde_fresh_s']:.2f} s -> {r['fresh_ratio']:.1f}x ({verdict(r['fresh_ratio'], TARGET_FRESH)})")
        print(f"  (b) steady, best of {repeats} x {steady_steps} steps: ours {r['ours_cells_per_s']:.3g} cell-steps/s, "
              f"py-pde {r['pypde_cells_per_s']:.3g} -> {r['steady_ratio']:.1f}x "
              f"({verdict(r['steady_ratio'], TARGET_STEADY)})")
        print(f"  (c) effective bandwidth (24 B/cell-step): solver steps {24 * r['ours_cells_per_s'] / 1e9:.2f} GB/s "
              f"= {r['bandwidth_fraction']:.0%} of np.copyto ({verdict(r['bandwidth_fraction'], TARGET_BANDWIDTH)}); "
              f"single-step kernel {24 * r['single_cells_per_s'] / 1e9:.2f} GB/s = "
              f"{r['single_bandwidth_fraction']:.0%}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[128, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steady-steps", type=int, default=400)
    args = parser.parse_args()
    main(tuple(args.sizes), args.repeats, args.steady_steps)
