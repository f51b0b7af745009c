"""Implicit PDE steps (issue 10, item 7): time-to-accuracy and peak memory against explicit steps, same run.

Problem: features form on the unit d-torus, p = 1 + 0.5 cos(2 pi (x_1 + ... + x_d)), H0 = sin(2 pi (x_1 + ... +
x_d)), to t = 0.01, on 1024^2 and 128^3 nodes. H stays a function of s = x_1 + ... + x_d, with
f_t = d f'' + 2 d (log p)' f': the reference is that 1-D problem by Fourier collocation and expm (exact to
~1e-13). Time scale: the mode decays like exp(-4 pi^2 d t) slowed by the drift; one cell relaxes in h^2 / (2 d),
the explicit limit.

Every run is a child process (its peak memory is VmHWM, this process's peak resident set since exec), timed
from the solver's construction to the end of the solve (import, grid set-up and loading the Numba kernels from
the cache, warmed by a first child, excluded):

* explicit: ``solve(method="explicit")`` at 0.9 x the stability limit: the accuracy to reach (its error is
  the space discretisation's, the time error being far smaller);
* Crank-Nicolson with ``linear_solver="auto"`` (the rule of ``pde.steppers.choose_linear_solver``: sparse LU,
  factorised once, at 1024^2; AMG-CG at 128^3) and with the other solver ("amg" at 1024^2; "direct" at 128^3,
  which is refused), at the step counts ``--steps-2d`` (16, 64)
  or ``--steps-3d`` (8, 16). The time-to-accuracy is that of the first run whose error is within 1.25 x the
  explicit one; where none is, it is extrapolated from the last two runs (error ~ n^-2, time = set-up + n x
  per-step cost) and printed as EXTRAPOLATED;
* ``"direct"`` where its estimate exceeds the budget (128^3): refused before allocating (the estimate is printed;
  no child needed).

Printed: wall time, steps, max error against the reference, peak memory (GiB, and GiB per 10^6 nodes), the
linear solver chosen and its CG iterations per step, the ratio of each implicit time-to-accuracy to the explicit
time, and the load average. Targets (issue 10): the factorisation reused (it is: one per solve, tested), peak
memory bounded and stated (the direct solve's is estimated and refused above the budget).

Run: ``python benchmarks/implicit_bench.py [--sizes 1024x1024 128x128x128] [--t 0.01]`` on a quiet machine.
About 15 minutes on the 2-core VM at the default sizes under load 5-7 (the explicit 1024^2 run, 46605 steps,
about 2 minutes; each AMG Crank-Nicolson step at 1024^2 about 3 s); ``--sizes 128x128 16x16x16`` is a
half-minute smoke run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import scipy.linalg

AMPLITUDE = 0.5
MATCH = 1.25  # an implicit run "reaches the explicit accuracy" when its error is within this factor


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def reference(s: np.ndarray, t: float, d: int, modes: int = 96) -> np.ndarray:
    """f(s, t) for f_t = d f'' + 2 d (log p)' f', f(., 0) = sin(2 pi s), p = 1 + 0.5 cos(2 pi s) (period 1)."""
    k = np.fft.fftfreq(modes, 1.0 / modes)
    x = np.arange(modes) / modes
    ft = np.fft.fft(np.eye(modes), axis=0)
    d1 = np.real(np.fft.ifft(2j * np.pi * k[:, None] * ft, axis=0))
    d2 = np.real(np.fft.ifft(-((2 * np.pi * k[:, None]) ** 2) * ft, axis=0))
    c = 2 * np.pi * x
    dlogp = -2 * np.pi * AMPLITUDE * np.sin(c) / (1 + AMPLITUDE * np.cos(c))
    f = scipy.linalg.expm(t * (d * d2 + 2 * d * dlogp[:, None] * d1)) @ np.sin(c)
    coef = np.fft.fft(f) / modes
    out = np.zeros(s.shape)
    for j in range(modes):
        if abs(k[j]) == modes // 2:
            out += np.real(coef[j]) * np.cos(2 * np.pi * k[j] * s)
        else:
            out += np.real(coef[j] * np.exp(2j * np.pi * k[j] * s))
    return out


_CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from continuum_attention import Grid, Torus
    from continuum_attention.densities import cosine
    from continuum_attention.pde import AttentionLimitPDE

    shape, method, solver, n_steps, t = json.loads(sys.argv[1])
    d = len(shape)
    torus = Torus([1.0] * d)
    grid = Grid(torus, tuple(shape))
    H0 = np.sin(2 * np.pi * grid.coordinates.sum(axis=-1))
    dens = cosine(torus, 0.5, (1,) * d)
    small = Grid(torus, (8,) * d)  # load the Numba kernels from the cache outside the timing
    AttentionLimitPDE(small, dens).solve(np.ones(small.shape), 1e-4, method="explicit", n_snapshots=2, progress=False)
    t0 = time.perf_counter()
    pde = AttentionLimitPDE(grid, dens)
    dt = None if n_steps is None else t / n_steps
    iterations = []
    if method != "explicit":
        from continuum_attention.pde import steppers
        real = steppers.LinearSolve.__call__
        def counted(self, b, x0=None):
            out = real(self, b, x0)
            iterations[:] = self.iterations
            return out
        steppers.LinearSolve.__call__ = counted
    sol = pde.solve(H0, t, method=method, dt=dt, n_snapshots=2, progress=False, linear_solver=solver)
    wall = time.perf_counter() - t0
    with open("/proc/self/status") as fh:
        hwm = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) * 1024
    s = grid.coordinates.sum(axis=-1)
    np.save(sys.argv[2], sol.values[-1])
    print(json.dumps({"wall_s": wall, "steps": sol.n_steps, "peak_bytes": hwm,
                      "linear_solver": sol.info.get("linear_solver", "-"),
                      "cg_per_step": float(np.mean(iterations)) if iterations else None}))
""")


def run_child(shape, method, solver="auto", n_steps=None, t=0.01) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "H.npy")
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps([list(shape), method, solver, n_steps, t]), out],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            return {"failed": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"}
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        values = np.load(out)
    d = len(shape)
    s = np.zeros(shape)
    for a, n in enumerate(shape):
        idx = [1] * d
        idx[a] = n
        s = s + (np.arange(n) / n).reshape(idx)
    result["max_err"] = float(np.max(np.abs(values - reference(s, t, d))))
    return result


def _row(label, r, nodes, load) -> str:
    if "failed" in r:
        return f"  {label:34s}: FAILED ({r['failed']}), load {load}"
    cg = "" if r.get("cg_per_step") is None else f", {r['cg_per_step']:.1f} CG iterations/step"
    return (f"  {label:34s}: {r['wall_s']:8.2f} s, {r['steps']:6d} steps, max error {r['max_err']:.3g}, peak "
            f"{r['peak_bytes'] / 2**30:.3g} GiB ({r['peak_bytes'] / 2**30 / (nodes / 1e6):.3g} GiB per 10^6 nodes), "
            f"solver {r['linear_solver']}{cg}, load {load}")


def bench(shape, t: float, steps: list[int]) -> dict:
    from continuum_attention._validation import memory_budget
    from continuum_attention.pde.steppers import AUTO_DIRECT_MAX_NODES, lu_memory_estimate

    nodes = math.prod(shape)
    name = "x".join(map(str, shape))
    print(f"{name} ({nodes} nodes), t = {t}, load {_load()}")
    explicit = run_child(shape, "explicit", t=t)
    print(_row("explicit (0.9 x limit)", explicit, nodes, _load()))
    out = {"shape": name, "explicit": explicit, "implicit": {}}
    estimate = lu_memory_estimate(nodes, len(shape))
    print(f"  direct LU estimate {estimate / 2**30:.3g} GiB (budget {memory_budget() / 2**30:.3g} GiB); auto's "
          f"direct limit {AUTO_DIRECT_MAX_NODES[len(shape)]} nodes")
    auto = "direct" if nodes <= AUTO_DIRECT_MAX_NODES[len(shape)] and estimate <= 0.5 * memory_budget() else "amg"
    print(f"  auto picks {auto!r}")
    for solver in ("auto", "amg" if auto == "direct" else "direct"):
        if solver == "direct" and estimate > memory_budget():
            print(f"  {'crank-nicolson direct':34s}: refused before allocating (estimate {estimate / 2**30:.3g} GiB > "
                  f"budget {memory_budget() / 2**30:.3g} GiB)")
            out["implicit"][solver] = {"refused": estimate}
            continue
        runs = []
        for n in steps:
            r = run_child(shape, "crank-nicolson", solver, n, t)
            runs.append(r)
            print(_row(f"crank-nicolson {solver}, {n} steps", r, nodes, _load()))
            if "failed" in r:
                break
        out["implicit"][solver] = {"runs": runs, **_to_accuracy(runs, explicit, solver)}
    return out


def _to_accuracy(runs: list[dict], explicit: dict, solver: str) -> dict:
    """Time-to-accuracy: the first run within MATCH x the explicit error, else extrapolated from the last two
    (error ~ n^-2 for Crank-Nicolson; time = set-up + n x per-step cost, both fitted to the two runs)."""
    ok = [r for r in runs if "failed" not in r]
    target = MATCH * explicit.get("max_err", math.nan)
    for r in ok:
        if r["max_err"] <= target:
            print(f"  -> crank-nicolson {solver} reaches the explicit accuracy in {r['steps']} steps, {r['wall_s']:.2f} s: "
                  f"{explicit['wall_s'] / r['wall_s']:.2f}x the explicit speed (measured)")
            return {"to_accuracy_s": r["wall_s"], "to_accuracy_steps": r["steps"], "extrapolated": False}
    if len(ok) < 2:
        print(f"  -> crank-nicolson {solver}: explicit accuracy not reached, too few runs to extrapolate")
        return {}
    a, b = ok[-2], ok[-1]
    per_step = (b["wall_s"] - a["wall_s"]) / (b["steps"] - a["steps"])
    setup = max(0.0, b["wall_s"] - per_step * b["steps"])
    n_needed = math.ceil(b["steps"] * math.sqrt(b["max_err"] / target))
    time_needed = setup + per_step * n_needed
    print(f"  -> crank-nicolson {solver}: explicit accuracy needs about {n_needed} steps (error ~ n^-2 from the last "
          f"two runs), about {time_needed:.0f} s (set-up {setup:.1f} s + {per_step:.2f} s a step, fitted): "
          f"{explicit['wall_s'] / time_needed:.2f}x the explicit speed (EXTRAPOLATED)")
    return {"to_accuracy_s": time_needed, "to_accuracy_steps": n_needed, "extrapolated": True}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", default=["1024x1024", "128x128x128"])
    parser.add_argument("--t", type=float, default=0.01)
    parser.add_argument("--steps-2d", type=int, nargs="*", default=[16, 64], help="Crank-Nicolson step counts, 2-D")
    parser.add_argument("--steps-3d", type=int, nargs="*", default=[8, 16], help="Crank-Nicolson step counts, 3-D")
    args = parser.parse_args(argv)
    import numba

    import continuum_attention

    print(f"implicit vs explicit steps, features form, p = 1 + 0.5 cos(2 pi sum x), H0 = sin(2 pi sum x); "
          f"continuum_attention {continuum_attention.__version__}, numba threads {numba.get_num_threads()}, "
          f"load average {_load()}")
    run_child((16, 16), "explicit", t=1e-3)  # warm the Numba cache outside the timings
    shapes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    return [bench(shape, args.t, args.steps_3d if len(shape) == 3 else args.steps_2d) for shape in shapes]


if __name__ == "__main__":
    main()
