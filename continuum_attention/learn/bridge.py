"""Experiment 5, the bridge to the theory: the learned pull-back metric of two moons and its heat flow.

1. Train the IPN with metric-attention on two moons (the Table settings of :func:`.experiments.two_moons`).
2. Export the first attention layer's pseudo-metric pulled back to the plane,
   f(x, y) = |phi(A x + c) - phi(A y + c)|^2, metric tensor g(x) = J^T J with J = J_phi(A x + c) A
   (:meth:`InformationPropagationNetwork.input_metric`). It is rescaled by a constant so that the mean of
   tr g / 2 over the data points is 1 (a constant factor is a change of time scale only), which makes the flow
   comparable with the Euclidean one at equal times.
3. Draw it over the plane: log10(tr g / 2) as a heat map and the unit balls {v : v^T g v = r^2} as ellipses.
4. Solve the features form of the attention-limit equation, dH/dt = Delta_g H + 2 <grad log p, grad H>_g, with
   ``continuum_attention.pde.AttentionLimitPDE`` on a Box around the data, for the class indicator H_0 (label of
   the nearest training point), under the learned metric and under the Euclidean metric, with p a kernel
   density estimate of the training points (a floor keeps log p finite). The test-point contrast
   mean(H | class 1) - mean(H | class 0) and the accuracy of H > 1/2 measure how much the indicator leaks
   across the gap.

The KDE is the coordinate density q of the training points; the solver uses p = q / sqrt|g| (THEORY
section 3 pitfall), so both metrics see the same sampled points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .experiments import _ipn_trial, moons_data, settings

__all__ = ["bridge", "train_moons_metric", "kde_density", "ScaledMetric"]

BOX = ((-1.75, -1.25), (2.75, 1.75))


class ScaledMetric:
    """A learned metric times a positive constant c: f -> c f, g -> c g (wraps ``metrics.Learned``)."""

    is_metric = True
    constant_tensor = None

    def __init__(self, metric, scale: float):
        if not scale > 0:
            raise ValueError(f"scale must be positive, got scale={scale!r}")
        self.metric, self.scale = metric, float(scale)
        self.dim = getattr(metric, "dim", None)

    def tensor(self, points) -> np.ndarray:
        return self.scale * self.metric.tensor(points)

    def pairwise(self, x, y, domain=None) -> np.ndarray:
        return self.scale * self.metric.pairwise(x, y)

    def __getattr__(self, name: str):
        return getattr(self.metric, name)


def train_moons_metric(seed: int = 0, epochs: int | None = None):
    """Train the metric-attention IPN on two moons; returns (model, x, y, test, test accuracy)."""
    cfg = settings("two_moons", True, {"epochs": epochs})
    x, y, test = moons_data()
    trial = _ipn_trial(x, y, test, "metric", seed, cfg)
    for _ in range(cfg["epochs"]):
        trial.train_epoch()
    trial.model.eval()
    with torch.no_grad():
        acc = trial.test_accuracy()
    return trial.model.double(), x.astype(np.float64), y, test, acc


def kde_density(points: np.ndarray, bandwidth: float = 0.2, floor: float = 0.02):
    """Gaussian KDE of ``points`` truncated to the bridge Box, mixed with ``floor`` times the uniform density.

    Normalised exactly (each truncated kernel's mass is a product of error functions), so no quadrature.
    """
    from scipy.special import erf

    from ..densities import Density
    from ..domains import Box

    box = Box(*BOX)
    pts = np.asarray(points, dtype=np.float64)
    vol = float(box.volume)
    z = np.sqrt(2.0) * bandwidth
    mass = np.prod(0.5 * (erf((box.upper - pts) / z) - erf((box.lower - pts) / z)), axis=1)  # (K,)

    def parts(x: np.ndarray):
        diff = x[:, None, :] - pts[None, :, :]
        k = np.exp(-0.5 * (diff**2).sum(-1) / bandwidth**2) / (2 * np.pi * bandwidth**2 * len(pts) * mass.mean())
        return diff, k

    def pdf(x: np.ndarray) -> np.ndarray:
        return (1 - floor) * parts(x)[1].sum(1) + floor / vol

    def grad_log(x: np.ndarray) -> np.ndarray:
        diff, k = parts(x)
        return -(1 - floor) * np.einsum("pk,pkd->pd", k, diff) / bandwidth**2 / pdf(x)[:, None]

    return Density(box, pdf, grad_log, normalize=False, name="kde")


def metric_fields(metric, grid_points: np.ndarray) -> dict[str, np.ndarray]:
    """log10(tr g / 2), sqrt(det g) and the eigen-decomposition of g at (P, 2) points."""
    g = metric.tensor(grid_points)
    w, v = np.linalg.eigh(g)
    return {"log_trace": np.log10(0.5 * np.trace(g, axis1=1, axis2=2)), "sqrt_det": np.sqrt(np.linalg.det(g)),
            "eigenvalues": w, "eigenvectors": v}


def _nearest_label(points: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = ((points[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return y[d.argmin(1)].astype(float)


def heat_flow(metric, density, h0: np.ndarray, t_final: float, n_snapshots: int, shape: int) -> np.ndarray:
    """H(t) on the grid at ``n_snapshots`` equally spaced times in [0, t_final] (features form).

    Solved by ``pde.AttentionLimitPDE(...).solve`` with implicit Euler (positivity-preserving for diagonal
    metric tensors; the indicator is discontinuous, so Crank-Nicolson would ring). Returns (T, *grid.shape).
    """
    from ..domains import Box
    from ..grid import Grid
    from ..pde import AttentionLimitPDE

    grid = Grid(Box(*BOX), shape)
    pde = AttentionLimitPDE(grid, density, metric=metric, form="features")
    return pde.solve(h0.reshape(grid.shape), float(t_final), method="implicit-euler", n_snapshots=n_snapshots).values


def _interpolate(grid_values: np.ndarray, axes: list[np.ndarray], points: np.ndarray) -> np.ndarray:
    from scipy.interpolate import RegularGridInterpolator

    return RegularGridInterpolator(axes, grid_values, bounds_error=False, fill_value=None)(points)


def bridge(quick: bool = True, seed: int = 0, shape: int | None = None, t_final: float = 0.2, n_snapshots: int = 5,
           epochs: int | None = None) -> dict[str, Any]:
    """Run experiment 5; returns arrays (metric fields, heat-flow snapshots, contrasts) and its configuration.

    Snapshots at ``n_snapshots`` equally spaced times in [0, t_final].

    ``result["pde_error"]`` holds the reason when the PDE solver is unavailable (the metric part still runs).
    """
    from ..grid import Grid
    from ..domains import Box

    shape = shape if shape is not None else (48 if quick else 96)
    times = np.linspace(0.0, t_final, n_snapshots)
    model, x, y, test, acc = train_moons_metric(seed, epochs)
    raw = model.input_metric()
    scale = 1.0 / float(np.mean(0.5 * np.trace(raw.tensor(x), axis1=1, axis2=2)))
    metric = ScaledMetric(raw, scale)
    grid = Grid(Box(*BOX), shape)
    out: dict[str, Any] = {"x": x, "y": y, "test": test, "ipn_test_accuracy": acc, "metric_scale": scale,
                           "axes": grid.axes, "times": np.asarray(times),
                           "fields": metric_fields(metric, grid.points), "data_log_trace": metric_fields(metric, x)["log_trace"]}
    out["config"] = {"seed": seed, "shape": shape, "t_final": t_final, "n_snapshots": n_snapshots, "box": BOX, "bandwidth": 0.2, "floor": 0.02,
                     "quick": quick, "epochs": settings("two_moons", True, {"epochs": epochs})["epochs"]}
    h0 = _nearest_label(grid.points, x[~test], y[~test])
    try:
        density = kde_density(x[~test])
        flows = {"learned": heat_flow(metric, density, h0, t_final, n_snapshots, shape),
                 "euclidean": heat_flow(None, density, h0, t_final, n_snapshots, shape)}
    except (ImportError, AttributeError, TypeError, NotImplementedError) as err:
        out["pde_error"] = f"{type(err).__name__}: {err}"
        return out
    out["flows"] = flows
    out["contrast"], out["accuracy"] = {}, {}
    for name, h in flows.items():
        vals = np.stack([_interpolate(ht, grid.axes, x[test]) for ht in h])  # (T, n_test)
        yt = y[test]
        out["contrast"][name] = vals[:, yt == 1].mean(1) - vals[:, yt == 0].mean(1)
        out["accuracy"][name] = ((vals > 0.5) == (yt == 1)).mean(1)
    return out


def bridge_table(result: dict[str, Any]) -> str:
    """Contrast and accuracy of the thresholded indicator at each time, learned vs Euclidean metric."""
    lines = [f"bridge: IPN metric-attention test accuracy {result['ipn_test_accuracy']:.3f}; "
             f"log10(tr g/2) on data: median {np.median(result['data_log_trace']):.2f}, "
             f"5-95% [{np.percentile(result['data_log_trace'], 5):.2f}, {np.percentile(result['data_log_trace'], 95):.2f}]"]
    if "flows" not in result:
        lines.append(f"heat flow not computed: {result.get('pde_error')}")
        return "\n".join(lines)
    lines.append(f"{'t':>6s} {'contrast learned':>17s} {'contrast eucl.':>15s} {'acc learned':>12s} {'acc eucl.':>10s}")
    for i, t in enumerate(result["times"]):
        lines.append(f"{t:6.3f} {result['contrast']['learned'][i]:17.4f} {result['contrast']['euclidean'][i]:15.4f} "
                     f"{result['accuracy']['learned'][i]:12.3f} {result['accuracy']['euclidean'][i]:10.3f}")
    return "\n".join(lines)


def plot_bridge(result: dict[str, Any], path: str | Path) -> Path:
    """Metric heat map with unit-ball ellipses, and heat-flow snapshots (learned vs Euclidean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Ellipse

    ax0, ax1 = result["axes"]
    n_flow = len(result["times"]) - 1 if "flows" in result else 0
    rows, cols = (2 if n_flow else 1), 2 + n_flow
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.6 * rows), squeeze=False)
    x, y = result["x"], result["y"]
    w, v = result["fields"]["eigenvalues"], result["fields"]["eigenvectors"]
    fields = [(result["fields"]["log_trace"], "log10(tr g / 2)", "learned pull-back metric (unit balls)"),
              (np.log10(w[:, 1] / np.maximum(w[:, 0], 1e-300)), "log10(lambda_max / lambda_min)", "anisotropy of g")]
    for ax, (vals, label, title) in zip(axes[0, :2], fields):
        im = ax.pcolormesh(ax0, ax1, vals.reshape(len(ax0), len(ax1)).T, cmap="viridis", shading="auto")
        fig.colorbar(im, ax=ax, label=label)
        ax.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=4, edgecolors="none")
        ax.set(title=title, aspect="equal")
    _ellipses(axes[0, 0], ax0, ax1, w, v, Ellipse)
    if n_flow:
        for row, name in enumerate(("learned", "euclidean")):
            for j in range(n_flow):
                a = axes[row, j + 2]
                a.pcolormesh(ax0, ax1, result["flows"][name][j + 1].T, cmap="coolwarm", vmin=0, vmax=1, shading="auto")
                a.scatter(x[:, 0], x[:, 1], c="k", s=1)
                a.set(title=f"H(t), {name} metric, t = {result['times'][j + 1]:g}", aspect="equal")
        for a, key, label in ((axes[1, 0], "contrast", "class contrast of H(t)"),
                              (axes[1, 1], "accuracy", "accuracy of H(t) > 1/2")):
            a.plot(result["times"], result[key]["learned"], "o-", color="tab:green", label="learned g")
            a.plot(result["times"], result[key]["euclidean"], "s-", color="tab:gray", label="Euclidean")
            a.set(xlabel="t", title=f"{label} (test points)")
            a.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def _ellipses(ax, ax0: np.ndarray, ax1: np.ndarray, w: np.ndarray, v: np.ndarray, Ellipse) -> None:
    """Unit balls of g on a coarse sub-grid, scaled so the median ball fits its cell."""
    pts = np.stack(np.meshgrid(ax0, ax1, indexing="ij"), -1).reshape(-1, 2)
    stride = max(1, len(ax0) // 12)
    sel = (np.arange(len(ax0))[:, None] % stride == 0) & (np.arange(len(ax1))[None, :] % stride == 0)
    cell = stride * (ax0[1] - ax0[0])
    r = 0.4 * cell * np.sqrt(np.median(w[:, 1]))
    for k in np.flatnonzero(sel.ravel()):
        lengths = np.minimum(2 * r / np.sqrt(np.maximum(w[k], 1e-12)), 3 * cell)
        ang = np.degrees(np.arctan2(v[k, 1, 0], v[k, 0, 0]))
        ax.add_patch(Ellipse(pts[k], lengths[0], lengths[1], angle=ang, fill=False, color="w", lw=0.7))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line of ``simulations/learn_bridge.py``."""
    import argparse

    from ..storage import save

    p = argparse.ArgumentParser(description="metric-attention bridge: learned metric and heat flow on two moons")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, default=1, help="the bridge uses one trained model: seed 0..N-1, first used")
    p.add_argument("--out", default="results")
    p.add_argument("--figures", default="figures")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = bridge(quick=args.quick, seed=0)
    table = bridge_table(result)
    print(table)
    arrays = {k: v for k, v in result.items() if k not in ("config",)}
    arrays["table"] = table
    print("wrote", save(Path(args.out) / "learn_bridge.h5", arrays, dict(result["config"], seeds=[0],
                                                                          torch_version=torch.__version__),
                         kind="learn_bridge"))
    print("wrote", plot_bridge(result, Path(args.figures) / "learn_bridge.png"))
    return result
