"""Figures for runs, convergence studies and verification tables.

Everything here builds :class:`matplotlib.figure.Figure` objects directly (no pyplot state), so plotting
works headless and in parallel processes. Save with ``fig.savefig(path)``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_convergence", "plot_run", "add_slope", "plot_result_file"]


def add_slope(ax, x: Sequence[float], slope: float, anchor: float, label: str | None = None, **kw) -> None:
    """Dashed reference line y = anchor (x / x[0])^slope on log-log axes."""
    x = np.asarray(x, dtype=float)
    kw.setdefault("color", "0.4")
    kw.setdefault("ls", "--")
    ax.plot(x, anchor * (x / x[0]) ** slope, label=label or f"slope {slope:.3g}", **kw)


def plot_convergence(result, *, slope_N: float | None = None, slope_eps: float | None = None, title: str = "", ylabel: str = "error") -> Figure:
    """Two panels: error against N (one line per eps) and against eps (one line per N), 95% CI bars.

    ``slope_N`` and ``slope_eps`` draw the theory's slopes beside the measured lines.
    """
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_n, ax_e = fig.subplots(1, 2)
    mean, ci = result.mean, np.nan_to_num(result.ci)
    for j, eps in enumerate(result.eps_values):
        ax_n.errorbar(result.N_values, mean[:, j], yerr=ci[:, j], marker="o", capsize=3, label=f"eps={eps:.2g}")
    for i, n in enumerate(result.N_values):
        ax_e.errorbar(result.eps_values, mean[i, :], yerr=ci[i, :], marker="s", capsize=3, label=f"N={n}")
    if slope_N is not None:
        add_slope(ax_n, result.N_values, slope_N, mean[0].max() * 1.3, f"theory N^{slope_N:.3g}")
    if slope_eps is not None:
        add_slope(ax_e, result.eps_values, slope_eps, mean[-1, 0] * 1.3, f"theory eps^{slope_eps:.3g}")
    for ax, xl in ((ax_n, "N"), (ax_e, "eps")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def plot_run(run) -> Figure:
    """Particles against the PDE at t_final: curves in 1-D, image plus coloured points in 2-D."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    dim = run.points.shape[1]
    label = "H" if run.mode == "features" else "rho"
    err = run.errors.get("rms", np.nan)
    if dim == 1:
        ax, ax_err = fig.subplots(1, 2)
        order = np.argsort(run.points[:, 0])
        ax.plot(run.grid_axes[0], np.asarray(run.pde_values).ravel(), "k-", lw=2, label="PDE")
        ax.plot(run.points[order, 0], run.particle_values[order], ".", ms=2, alpha=0.5, label=f"particles (N={len(run.points)})")
        ax.set_xlabel("x")
        ax.set_ylabel(f"{label}(x, t={run.t_final:g})")
        ax.legend()
        ax_err.plot(run.points[order, 0], (run.particle_values - run.reference_at_points)[order], ".", ms=2)
        ax_err.set_xlabel("x")
        ax_err.set_ylabel("particles - PDE")
        ax_err.set_title(f"RMS error {err:.3g}")
    else:
        ax, ax_p = fig.subplots(1, 2)
        values = np.asarray(run.pde_values)
        while values.ndim > 2:  # 3-D: middle slice
            values = values[..., values.shape[-1] // 2]
        ext = [run.grid_axes[0][0], run.grid_axes[0][-1], run.grid_axes[1][0], run.grid_axes[1][-1]]
        im = ax.imshow(values.T, origin="lower", extent=ext, aspect="auto")
        fig.colorbar(im, ax=ax)
        ax.set_title(f"PDE {label}, t={run.t_final:g}")
        sc = ax_p.scatter(run.points[:, 0], run.points[:, 1], c=run.particle_values, s=3, vmin=values.min(), vmax=values.max())
        fig.colorbar(sc, ax=ax_p)
        ax_p.set_title(f"particles (N={len(run.points)}), RMS error {err:.3g}")
    return fig


def _sweep_result(arrays: dict, config: dict):
    """A ConvergenceResult from the cells of a (possibly unfinished) sweep file; missing cells are NaN."""
    from .compare import ConvergenceResult, cell_key

    N, eps, seeds = (np.asarray(config[k]) for k in ("N_values", "eps_values", "seeds"))
    errors = np.full((N.size, eps.size, seeds.size), np.nan)
    cells = arrays.get("cells", {})
    for i, n in enumerate(N):
        for j, e in enumerate(eps):
            cell = cells.get(cell_key(int(n), float(e)))
            if cell is not None:
                errors[i, j] = np.asarray(cell["errors"])
    return ConvergenceResult(N, eps, seeds, errors, dict(config)), len(cells)


def _contents_figure(path, kind: str, arrays: dict, config: dict) -> Figure:
    """A table of what a file holds (datasets and their shapes, configuration keys), for kinds without a plot."""
    rows = []

    def walk(group: dict, prefix: str) -> None:
        for key, value in group.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}/")
            else:
                a = np.asarray(value)
                rows.append([prefix + key, str(a.dtype), str(a.shape)])

    walk(arrays, "")
    rows = rows[:40] or [["(no datasets)", "", ""]]
    fig = Figure(figsize=(8, 0.6 + 0.3 * len(rows)), layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    ax.table(cellText=rows, colLabels=["dataset", "dtype", "shape"], loc="center")
    ax.set_title(f"{path}: kind {kind!r}, configuration keys {sorted(config)[:8]}", fontsize=8)
    return fig


def plot_result_file(path) -> Figure:
    """A figure for any file the package writes: a run, a convergence sweep (finished or not: its cells),
    a study, a solution; any other kind gets a table of its contents."""
    from .storage import RESULT_TYPES, load, load_result

    arrays, meta = load(path)
    kind, config = str(meta.get("kind", "arrays")), meta.get("config", {})
    if kind == "sweep":
        result, done = _sweep_result(arrays, config)
        total = result.errors.shape[0] * result.errors.shape[1]
        return plot_convergence(result, title=f"{path} ({done} of {total} cells)")
    if kind not in RESULT_TYPES:
        return _contents_figure(path, kind, arrays, config)
    result = load_result(path)
    name = type(result).__name__
    if name == "RunResult":
        return plot_run(result)
    if name == "ConvergenceResult":
        return plot_convergence(result, title=str(path))
    if name == "StudyResult":
        fig = Figure(figsize=(8, 0.5 + 0.35 * max(1, len(result.checks))), layout="constrained")
        ax = fig.subplots()
        ax.axis("off")
        rows = [c.row()[1:] for c in result.checks] or [["(no checks)", "", "", "", ""]]
        ax.table(cellText=rows, colLabels=["quantity", "measured", "expected", "tolerance", "ok"], loc="center")
        ax.set_title(result.name)
        return fig
    return _contents_figure(path, kind, arrays, config)
