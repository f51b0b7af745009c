"""Seeded comparison runs: one task, several attention types, several seeds; curves, tables, storage.

A *task* is a callable ``task(kind, seed) -> Trial``; a :class:`Trial` bundles the model and three closures
(one training epoch, test accuracy, test accuracy under input noise of size sigma). :func:`compare_attention`
runs every (kind, seed) pair, times each epoch and returns a plain result dict that :func:`summary_table`,
:func:`plot_comparison` and :func:`save_comparison` consume.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["Trial", "compare_attention", "summary_rows", "summary_table", "plot_comparison", "save_comparison",
           "count_parameters", "seed_all", "paired_statistics", "mean_interval", "label"]

KINDS = ("self", "l2", "metric")
LABELS = {"self": "self-attention", "l2": "L2 self-attention", "metric": "metric-attention",
          "none": "no attention (MLP)", "self+mlp": "self-attn + MLP", "l2+mlp": "L2 + MLP",
          "metric+mlp": "metric-attn + MLP"}
COLORS = {"self": "tab:red", "l2": "tab:blue", "metric": "tab:green", "none": "tab:gray", "self+mlp": "tab:orange",
          "l2+mlp": "tab:cyan", "metric+mlp": "tab:olive"}


def label(kind: str) -> str:
    """Printed name of a kind (the kind itself when it has none)."""
    return LABELS.get(kind, kind)


def mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lower, upper): Student-t interval mean +- t_{(1+level)/2, n-1} s / sqrt(n) over seeds.

    One value gives (v, v, v) (no spread to estimate).
    """
    from scipy import stats

    v = np.asarray(values, float).ravel()
    if v.size < 2:
        return float(v.mean()), float(v.mean()), float(v.mean())
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def paired_statistics(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Paired comparison of the final test accuracies of every pair of kinds across the same seeds.

    For kinds A, B with per-seed differences D = acc_A - acc_B: mean D, its 95 % t interval, the paired
    t-test p-value (``scipy.stats.ttest_rel``; NaN when D is constant) and the Wilcoxon signed-rank p-value
    (NaN when every D is 0 or there are fewer than 2 seeds), and wins/ties/losses of A over B.
    """
    from scipy import stats

    kinds = list(result["kinds"])
    rows = []
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            fa, fb = result["kinds"][a]["final_accuracy"], result["kinds"][b]["final_accuracy"]
            d = fa - fb
            mean, lo, hi = mean_interval(d)
            p_t = p_w = float("nan")
            if d.size > 1 and np.ptp(d) > 0:
                p_t = float(stats.ttest_rel(fa, fb).pvalue)
            if d.size > 1 and np.any(d != 0):
                p_w = float(stats.wilcoxon(fa, fb).pvalue)
            rows.append({"a": a, "b": b, "mean_diff": mean, "ci_low": lo, "ci_high": hi, "p_ttest": p_t,
                         "p_wilcoxon": p_w, "wins": int((d > 0).sum()), "ties": int((d == 0).sum()),
                         "losses": int((d < 0).sum())})
    return rows


@dataclass
class Trial:
    """One model on one task.

    Attributes
    ----------
    model : nn.Module
    train_epoch : callable
        ``() -> float``: one epoch of training, returns the mean training loss.
    test_accuracy : callable
        ``() -> float`` in [0, 1].
    noisy_accuracy : callable
        ``(sigma) -> float``: test accuracy with input noise of size sigma (task-specific units).
    """

    model: nn.Module
    train_epoch: Callable[[], float]
    test_accuracy: Callable[[], float]
    noisy_accuracy: Callable[[float], float]


def seed_all(seed: int) -> torch.Generator:
    """Seed torch and return a torch generator with that seed."""
    torch.manual_seed(int(seed))
    return torch.Generator().manual_seed(int(seed))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def _run_trial(trial: Trial, epochs: int, noise_levels: Sequence[float]) -> dict[str, Any]:
    loss, acc, times = np.empty(epochs), np.empty(epochs), np.empty(epochs)
    for e in range(epochs):
        t0 = time.perf_counter()
        loss[e] = trial.train_epoch()
        times[e] = time.perf_counter() - t0
        trial.model.eval()
        with torch.no_grad():
            acc[e] = trial.test_accuracy()
        trial.model.train()
    trial.model.eval()
    with torch.no_grad():
        noisy = np.array([trial.noisy_accuracy(float(s)) for s in noise_levels])
    return {"loss": loss, "accuracy": acc, "time_per_epoch": float(np.median(times)), "noise_accuracy": noisy}


def compare_attention(
    task: Callable[[str, int], Trial],
    *,
    seeds: Sequence[int],
    epochs: int,
    noise_levels: Sequence[float],
    kinds: Sequence[str] = KINDS,
    verbose: bool = False,
) -> dict[str, Any]:
    """Train ``task(kind, seed)`` for every kind and seed.

    Returns
    -------
    dict
        ``{"kinds": {kind: {"loss": (S, E), "accuracy": (S, E), "final_accuracy": (S,),
        "time_per_epoch": (S,), "noise_accuracy": (S, L), "parameters": int}}, "seeds", "noise_levels",
        "epochs"}``; ``final_accuracy`` is the test accuracy after the last epoch.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got epochs={epochs!r}")
    out: dict[str, Any] = {"kinds": {}, "seeds": np.asarray(seeds), "noise_levels": np.asarray(noise_levels, float),
                           "epochs": int(epochs)}
    bar = tqdm(total=len(kinds) * len(seeds), desc="training runs", disable=None)  # quiet off a terminal
    for kind in kinds:
        runs = []
        for seed in seeds:
            trial = task(kind, int(seed))
            runs.append(_run_trial(trial, epochs, noise_levels))
            bar.set_postfix_str(f"{kind} seed {seed}")
            bar.update(1)
            if verbose:
                print(f"  {kind:>6s} seed {seed}: final test accuracy {runs[-1]['accuracy'][-1]:.3f}", flush=True)
        out["kinds"][kind] = {
            "loss": np.stack([r["loss"] for r in runs]),
            "accuracy": np.stack([r["accuracy"] for r in runs]),
            "final_accuracy": np.array([r["accuracy"][-1] for r in runs]),
            "time_per_epoch": np.array([r["time_per_epoch"] for r in runs]),
            "noise_accuracy": np.stack([r["noise_accuracy"] for r in runs]),
            "parameters": count_parameters(trial.model),
        }
    bar.close()
    return out


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per attention type: mean, std, min of final accuracy, time per epoch, parameters, noise."""
    rows = []
    for kind, r in result["kinds"].items():
        fa = r["final_accuracy"]
        _, lo, hi = mean_interval(fa)
        rows.append({
            "attention": kind, "mean": float(fa.mean()), "std": float(fa.std(ddof=1)) if fa.size > 1 else 0.0,
            "ci_low": lo, "ci_high": hi,
            "min": float(fa.min()), "ms_per_epoch": 1e3 * float(np.mean(r["time_per_epoch"])),
            "parameters": int(r["parameters"]), "noisiest": float(r["noise_accuracy"][:, -1].mean()),
        })
    return rows


def summary_table(result: dict[str, Any], title: str = "") -> str:
    """Plain-text table of :func:`summary_rows` (final test accuracy over seeds)."""
    sigma = result["noise_levels"][-1]
    head = (f"{'attention':>18s} {'mean acc':>9s} {'std':>7s} {'95% interval':>17s} {'min':>7s} {'ms/epoch':>9s} "
            f"{'params':>7s} {f'acc@noise {sigma:g}':>15s}")
    lines = [title, head] if title else [head]
    for row in summary_rows(result):
        ci = f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]"
        lines.append(f"{label(row['attention']):>18s} {row['mean']:9.4f} {row['std']:7.4f} {ci:>17s} {row['min']:7.4f} "
                     f"{row['ms_per_epoch']:9.2f} {row['parameters']:7d} {row['noisiest']:15.4f}")
    for name, acc in result.get("baselines", {}).items():
        lines.append(f"{name + ' (baseline)':>18s} {acc:9.4f}")
    lines.append(f"({len(result['seeds'])} seeds, {result['epochs']} epochs)")
    pairs = paired_statistics(result) if len(result["seeds"]) > 1 else []
    if pairs:
        lines.append("paired differences of final accuracy (A - B) across seeds:")
        for r in pairs:
            lines.append(f"  {r['a']:>10s} - {r['b']:<10s} {r['mean_diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
                         f"  t-test p={r['p_ttest']:.3g}  Wilcoxon p={r['p_wilcoxon']:.3g}"
                         f"  W/T/L {r['wins']}/{r['ties']}/{r['losses']}")
    return "\n".join(lines)


def _band(ax, values: np.ndarray, kind: str, x: np.ndarray | None = None) -> None:
    x = np.arange(1, values.shape[1] + 1) if x is None else x
    mean, std = values.mean(0), values.std(0)
    ax.plot(x, mean, color=COLORS.get(kind), label=label(kind))
    ax.fill_between(x, mean - std, mean + std, color=COLORS[kind], alpha=0.2)


def plot_comparison(result: dict[str, Any], path: str | Path, title: str = "", noise_label: str = "input noise"):
    """Four panels: training loss, test accuracy (mean +- std over seeds), violins of final accuracy, noise."""
    from matplotlib.figure import Figure  # no pyplot state: works headless and in worker processes

    kinds = list(result["kinds"])
    fig = Figure(figsize=(17, 3.8))
    axes = fig.subplots(1, 4)
    for kind in kinds:
        r = result["kinds"][kind]
        _band(axes[0], r["loss"], kind)
        _band(axes[1], r["accuracy"], kind)
        _band(axes[3], r["noise_accuracy"], kind, x=result["noise_levels"])
    axes[0].set(xlabel="epoch", ylabel="training loss", yscale="log", title="training loss")
    axes[1].set(xlabel="epoch", ylabel="test accuracy", title="test accuracy")
    parts = axes[2].violinplot([result["kinds"][k]["final_accuracy"] for k in kinds], showmeans=True)
    for body, kind in zip(parts["bodies"], kinds):
        body.set_facecolor(COLORS.get(kind, "tab:purple"))
    axes[2].set_xticks(range(1, len(kinds) + 1), [label(k).replace(" ", "\n", 1) for k in kinds])
    axes[2].set(ylabel="final test accuracy", title=f"final accuracy ({len(result['seeds'])} seeds)")
    axes[3].set(xlabel=noise_label, ylabel="test accuracy", title="robustness to input noise")
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return Path(path)


def save_comparison(result: dict[str, Any], path: str | Path, config: dict[str, Any]) -> Path:
    """Store a result dict with :func:`continuum_attention.storage.save` (atomic; config, seeds, versions).

    Package versions (torch included, since it is imported here) go to the ``versions`` attribute.
    """
    from ..storage import save

    arrays = {k: v for k, v in result.items() if k not in ("config",)}
    arrays["table"] = summary_table(result)
    cfg = dict(config)
    cfg["seeds"] = [int(s) for s in result["seeds"]]
    cfg["torch_version"] = torch.__version__
    return save(path, arrays, cfg, kind="learn_comparison")
