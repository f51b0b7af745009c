"""Figures of the learn experiments, built on :class:`matplotlib.figure.Figure` (no pyplot state).

As in :mod:`continuum_attention.plotting`, nothing here selects a backend or touches global state, so figures
can be drawn headless and in parallel processes; save with ``fig.savefig(path)``.

* :func:`bridge_figure` - experiment 5 (:mod:`.bridge`): the learned metrics and their heat flows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from .bridge import VARIANT_LABELS, moon_paths

__all__ = ["bridge_figure"]


def bridge_figure(result: dict[str, Any]) -> Figure:
    """Figure of a :func:`.bridge.bridge_study` (or of a single :func:`.bridge.bridge` run, drawn as a
    one-variant study).

    One row per variant: log10(tr g / 2) with the unit balls of g, the anisotropy lambda_max / lambda_min with
    the paths of :func:`.bridge.moon_paths`, and the learned-metric heat flow H(t) at the middle and last
    snapshots; a last row with the Euclidean heat flow at the same times and the test-point contrast and
    accuracy of every variant against the Euclidean metric (mean over seeds, min-max band).
    """
    if "variants" not in result:
        result = _as_study(result)
    ax0, ax1 = result["axes"]
    names = list(result["variants"])
    times = result["times"]
    mid = len(times) // 2
    fig = Figure(figsize=(17, 3.5 * (len(names) + 1)), layout="tight")
    axes = fig.subplots(len(names) + 1, 4, squeeze=False)
    x, y = result["x"], result["y"]
    paths = moon_paths()
    for row, name in enumerate(names):
        v = result["variants"][name]
        ex = v["example"]
        w, vec = ex["fields"]["eigenvalues"], ex["fields"]["eigenvectors"]
        panels = [(ex["fields"]["log_trace"], "log10(tr g / 2)",
                   f"{VARIANT_LABELS.get(name, name)}, seed {result['seeds'][0]}\nlearned g (unit balls)"),
                  (np.log10(w[:, 1] / np.maximum(w[:, 0], 1e-300)), "log10(lambda_max / lambda_min)",
                   f"anisotropy; paths within (white) / across (magenta)\nstretch across/within {v['stretch_ratio'][0]:.2f}")]
        for ax, (vals, label, title) in zip(axes[row, :2], panels):
            im = ax.pcolormesh(ax0, ax1, vals.reshape(len(ax0), len(ax1)).T, cmap="viridis", shading="auto")
            fig.colorbar(im, ax=ax, label=label)
            ax.scatter(x[:, 0], x[:, 1], c=y, cmap="coolwarm", s=3, edgecolors="none")
            ax.set_title(title, fontsize=9)
            ax.set_aspect("equal")
        _ellipses(axes[row, 0], ax0, ax1, w, vec)
        for p in paths["within"]:
            axes[row, 1].plot(p[:, 0], p[:, 1], "w-", lw=0.8)
        for p in paths["crossing"]:
            axes[row, 1].plot(p[:, 0], p[:, 1], "m-", lw=0.8)
        for j, k in enumerate((mid, len(times) - 1)):
            a = axes[row, 2 + j]
            a.pcolormesh(ax0, ax1, ex["flows"]["learned"][k].T, cmap="coolwarm", vmin=0, vmax=1, shading="auto")
            a.scatter(x[:, 0], x[:, 1], c="k", s=0.5)
            a.set(title=f"H(t), learned metric, t = {times[k]:g}", aspect="equal")
    bottom = axes[-1]
    for j, k in enumerate((mid, len(times) - 1)):
        bottom[j].pcolormesh(ax0, ax1, result["euclidean"]["flow"][k].T, cmap="coolwarm", vmin=0, vmax=1,
                             shading="auto")
        bottom[j].scatter(x[:, 0], x[:, 1], c="k", s=0.5)
        bottom[j].set(title=f"H(t), Euclidean metric, t = {times[k]:g}", aspect="equal")
    colors = ["tab:gray", "tab:orange", "tab:green", "tab:blue", "tab:purple"]
    for a, key, label in ((bottom[2], "contrast", "class contrast of H(t)"),
                          (bottom[3], "accuracy", "accuracy of H(t) > 1/2")):
        for c, name in zip(colors, names):
            vals = result["variants"][name][key]
            a.plot(times, vals.mean(0), "o-", color=c, label=name)
            a.fill_between(times, vals.min(0), vals.max(0), color=c, alpha=0.2)
        a.plot(times, result["euclidean"][key], "k--", label="Euclidean")
        a.set(xlabel="t", title=f"{label}\ntest points, {len(result['seeds'])} seeds (mean, min-max)")
        a.legend(fontsize=7)
    return fig


def _as_study(r: dict[str, Any]) -> dict[str, Any]:
    """A single :func:`.bridge.bridge` result in the layout of :func:`.bridge.bridge_study` (one seed, one variant)."""
    m = r["measures"]
    v = {"test_accuracy": np.array([r["test_accuracy"]]), "stretch_ratio": np.array([m["stretch_ratio"]]),
         "example": {k: r[k] for k in ("fields", "flows")},
         "contrast": r["contrast"]["learned"][None], "accuracy": r["accuracy"]["learned"][None]}
    out = {"variants": {r.get("variant", "ipn"): v}, "seeds": np.array([r["config"]["seed"]]),
           "euclidean": {"contrast": r["contrast"]["euclidean"], "accuracy": r["accuracy"]["euclidean"],
                         "flow": r["flows"]["euclidean"]}}
    for k in ("x", "y", "axes", "times"):
        out[k] = r[k]
    return out


def _ellipses(ax, ax0: np.ndarray, ax1: np.ndarray, w: np.ndarray, v: np.ndarray) -> None:
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
