"""Experiment 5, the bridge to the theory: the learned pull-back metric of two moons and its heat flow.

Three trained models (``VARIANTS``), each giving a pseudo-metric on the plane:

* ``"ipn"``: the metric-attention IPN of the two-moons experiment (block MLPs); its first attention layer pulled
  back through the embedding, f(x, y) = |phi(A x + c) - phi(A y + c)|^2, g = J^T J with J = J_phi(A x + c) A
  (:meth:`InformationPropagationNetwork.input_metric`). The original bridge: its block MLPs can classify, so the
  attention metric need not learn the class structure.
* ``"ipn_attention_only"``: the same IPN with ``block_mlp=False`` (the only nonlinearity is the attention).
* ``"label_propagation"``: :class:`LabelPropagation`, attention alone propagates the labels: one metric-attention
  with phi: R^2 -> R^2 (residual MLP of width 10) on the raw coordinates, applied L = 4 times to the label
  features (train labels known, test labels predicted), trained by hiding half of the training labels per epoch.

For each (variant, seed), with the fixed ``PROTOCOL``:

1. The metric is normalised, g = c J^T J + delta I with delta = 0.01 and c such that the mean of tr g / 2 over
   the data points is 1 (a constant factor is a change of time scale only; delta keeps g positive definite
   where phi folds), which makes the flow comparable with the Euclidean one (g = I) at equal times.
2. Drawn over the plane: log10(tr g / 2) as a heat map with the unit balls {v : v^T g v = r^2} as ellipses,
   and the anisotropy lambda_max / lambda_min.
3. Measured (:func:`metric_measures`): the metric length per unit length of paths across the gap vs along the
   moons (:func:`moon_paths`), and the mean largest eigenvalue of g at data points near the class boundary vs
   inside the classes (:func:`boundary_sets`).
4. The features form of the attention-limit equation, dH/dt = Delta_g H + 2 <grad log p, grad H>_g, is solved
   with ``continuum_attention.pde.AttentionLimitPDE`` on a Box around the data for the class indicator H_0
   (label of the nearest training point), under the learned metric and under the Euclidean metric, with p a
   kernel density estimate of the training points (a floor keeps log p finite). The test-point contrast
   mean(H | class 1) - mean(H | class 0) and the accuracy of H > 1/2 at t = 0.1 .. 0.4 measure how much the
   indicator leaks across the gap: fast conduction inside a class and slow across the gap keep the contrast.

The KDE is the coordinate density q of the training points; the solver uses p = q / sqrt|g| (THEORY
section 3 pitfall), so both metrics see the same sampled points. :func:`bridge` runs one (variant, seed),
:func:`bridge_study` all of them, :func:`bridge_table` and :func:`study_table` print them. The figure is
:func:`.figures.bridge_figure`; the script ``simulations/learn_bridge.py`` runs the study (10 seeds, 96x96 grid;
``--quick``: 3 seeds, 40x40 grid) and saves the result and the figure.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..densities import Density, truncated_kde
from ..domains import Box
from ..grid import Grid
from ..metrics import ScaledMetric
from ..pde import AttentionLimitPDE
from .experiments import ipn_trial, moons_data, settings
from .layers import MetricAttention, check_int
from .models import InformationPropagationNetwork
from .training import seed_all

__all__ = ["bridge", "bridge_study", "bridge_table", "study_table", "train_moons_metric", "kde_density",
           "heat_flow", "kernel_heat_flow", "overshoot", "ScaledMetric", "LabelPropagation", "metric_measures", "moon_paths", "VARIANTS",
           "VARIANT_LABELS", "PROTOCOL", "BOX"]

BOX = ((-1.75, -1.25), (2.75, 1.75))


VARIANTS = ("ipn", "ipn_attention_only", "label_propagation")
VARIANT_LABELS = {"ipn": "IPN (block MLPs)", "ipn_attention_only": "IPN attention-only",
                  "label_propagation": "label propagation (shared g)"}
# The fixed protocol of the bridge study (chosen before the multi-seed runs; see the module docstring).
PROTOCOL: dict[str, Any] = dict(
    lr=1e-3, weight_decay=1e-4, mlp_width=10,   # Table settings (THEORY section 6)
    ipn_epochs=300,                              # = the quick two-moons setting the original bridge used
    lp_layers=4, lp_hide=0.5, lp_epochs=1000,    # label propagation: L steps of one shared metric
    t_final=0.4, n_snapshots=5,                  # heat-flow snapshots at 0, 0.1, ..., 0.4 (metric: mean tr g / 2 = 1)
    knn=10, boundary_band=(0.2, 0.8),            # boundary / interior data points (kNN class mixture)
    metric_floor=0.01,                           # g = c J^T J + 0.01 I, mean tr g / 2 = 1 (folds of phi make J^T J singular)
    dt=1e-3,                                     # implicit-Euler step of both heat flows (contrast changes < 1e-3 at dt/2)
    temperature=1.0,                             # the bridge's networks keep tau = 1 (S = softmax(-f / (2 eps))), as measured
    kernel_eps=0.01,                             # the monotone kernel flow: S_eps on the training points, t = K eps / 2
)
# The bridge's "ipn" variant: the two-moons IPN as it was when the bridge was measured (block MLPs, tau = 1,
# phi width 10, 400 train / 100 test points), not the issue-13 defaults of :data:`.experiments.SETTINGS`.
IPN_PROTOCOL: dict[str, Any] = dict(temperature=1.0, block_mlp=True, metric_hidden=10, n_test=100)


class LabelPropagation(nn.Module):
    """Attention-only transductive label propagation with one metric-attention on the plane.

    One :class:`MetricAttention` with phi: R^d -> R^d (residual MLP of width ``hidden``) scores the raw
    coordinates, S = softmax(-|phi(x_i) - phi(x_j)|^2 / (2 eps)), and the same S is applied ``layers`` times to
    the label features: H_L = S^L H_0 (a heat flow of L explicit Euler steps, time L eps / 2, THEORY section 1).
    H_0 is the one-hot label of the points whose label is known and the uniform vector 1/C elsewhere; the
    prediction is argmax H_L. The network has no other parameters: every bit of class information that reaches
    an unlabelled point travels through the attention weights, so the metric is what is learned.
    """

    def __init__(self, dim: int = 2, num_classes: int = 2, *, hidden: int = 10, layers: int = 4, eps: float = 0.5):
        super().__init__()
        self.attn = MetricAttention(dim, hidden=hidden, eps=eps, value=False, temperature=PROTOCOL["temperature"])
        self.layers = check_int(layers, "layers")
        self.num_classes = check_int(num_classes, "num_classes", 2)

    def forward(self, x: Tensor, labels: Tensor, known: Tensor) -> Tensor:
        """Class scores H_L (N, C) for points x (N, d), integer labels (N,) and a boolean ``known`` (N,)."""
        s = self.attn.attention_weights(x[None])[0, 0]
        onehot = nn.functional.one_hot(labels, self.num_classes).to(s.dtype)
        h = torch.where(known[:, None], onehot, torch.full_like(onehot, 1.0 / self.num_classes))
        for _ in range(self.layers):
            h = s @ h
        return h

    def input_metric(self):
        """The shared pseudo-metric on the input plane, ``metrics.Learned`` with g = J_phi^T J_phi."""
        return self.attn.to_learned()


def _train_label_propagation(x, y, test, seed: int, epochs: int, layers: int, hide: float, lr: float, wd: float,
                             hidden: int = 10):
    """Train :class:`LabelPropagation`: each epoch hides a random fraction ``hide`` of the training labels and
    scores the cross-entropy of H_L at the hidden training points (test points are always unlabelled)."""
    gen = seed_all(seed)
    model = LabelPropagation(x.shape[1], int(y.max()) + 1, hidden=hidden, layers=layers)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    te = torch.as_tensor(test, dtype=torch.bool)
    train_idx = torch.nonzero(~te).squeeze(1)
    for _ in range(epochs):
        hidden_idx = train_idx[torch.rand(len(train_idx), generator=gen) < hide]
        known = ~te.clone()
        known[hidden_idx] = False
        opt.zero_grad()
        h = model(xt, yt, known)
        loss = -torch.log(h[hidden_idx, yt[hidden_idx]].clamp_min(1e-12)).mean()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xt, yt, ~te)[te].argmax(-1) == yt[te]).float().mean())
    return model.double(), acc


def _train_ipn(x, y, test, seed: int, epochs: int, block_mlp: bool, lr: float, wd: float, mlp_width: int = 10):
    """The IPN of :func:`.experiments.ipn_trial` (full batch, cross-entropy on the training points)."""
    seed_all(seed)
    model = InformationPropagationNetwork(x.shape[1], int(y.max()) + 1, attention="metric", width=10,
                                          mlp_width=mlp_width, layers=2, block_mlp=block_mlp,
                                          metric_hidden=mlp_width, temperature=PROTOCOL["temperature"])
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    te = torch.as_tensor(test, dtype=torch.bool)
    lossf = nn.CrossEntropyLoss()
    for _ in range(epochs):
        opt.zero_grad()
        lossf(model(xt)[~te], yt[~te]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(xt)[te].argmax(-1) == yt[te]).float().mean())
    return model.double(), acc


def train_moons_metric(seed: int = 0, epochs: int | None = None, variant: str = "ipn"):
    """Train one bridge variant on two moons; returns (model, x, y, test, test accuracy).

    ``"ipn"``: the metric-attention IPN of the two-moons experiment (its quick settings,
    :func:`.experiments.ipn_trial`); ``"ipn_attention_only"``: the same IPN without block MLPs;
    ``"label_propagation"``: :class:`LabelPropagation` (``PROTOCOL`` settings). ``epochs`` overrides the variant's number of epochs.
    Every model's ``input_metric()`` is its pseudo-metric pulled back to the plane.
    """
    x, y, test = moons_data()
    P = PROTOCOL
    if variant == "ipn":
        cfg = settings("two_moons", True, dict(IPN_PROTOCOL, epochs=epochs))
        trial = ipn_trial(x, y, test, "metric", seed, cfg)
        for _ in range(cfg["epochs"]):
            trial.train_epoch()
        trial.model.eval()
        with torch.no_grad():
            acc = trial.test_accuracy()
        model = trial.model.double()
    elif variant == "ipn_attention_only":
        model, acc = _train_ipn(x, y, test, seed, epochs or P["ipn_epochs"], False, P["lr"], P["weight_decay"],
                                P["mlp_width"])
    elif variant == "label_propagation":
        model, acc = _train_label_propagation(x, y, test, seed, epochs or P["lp_epochs"], P["lp_layers"], P["lp_hide"],
                                              P["lr"], P["weight_decay"], P["mlp_width"])
    else:
        raise ValueError(f"variant must be one of {VARIANTS}, got variant={variant!r}")
    return model, x.astype(np.float64), y, test, acc


def kde_density(points: np.ndarray, bandwidth: float = 0.2, floor: float = 0.02) -> Density:
    """Gaussian KDE of ``points`` truncated to the bridge :data:`BOX`, mixed with ``floor`` times the uniform
    density: :func:`continuum_attention.densities.truncated_kde` on ``Box(*BOX)`` (exact normalisation)."""
    return truncated_kde(Box(*BOX), points, bandwidth, floor)


def metric_fields(metric, grid_points: np.ndarray) -> dict[str, np.ndarray]:
    """log10(tr g / 2), sqrt(det g) and the eigen-decomposition of g at (P, 2) points."""
    g = metric.tensor(grid_points)
    w, v = np.linalg.eigh(g)
    return {"log_trace": np.log10(0.5 * np.trace(g, axis1=1, axis2=2)), "sqrt_det": np.sqrt(np.linalg.det(g)),
            "eigenvalues": w, "eigenvectors": v}


def _nearest_label(points: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = ((points[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return y[d.argmin(1)].astype(float)


def heat_flow(metric, density, h0: np.ndarray, t_final: float, n_snapshots: int, shape: int,
              dt: float | None = None) -> np.ndarray:
    """H(t) on the grid at ``n_snapshots`` equally spaced times in [0, t_final] (features form).

    Solved by ``pde.AttentionLimitPDE(...).solve`` with implicit Euler (positivity-preserving for diagonal
    metric tensors; the indicator is discontinuous, so Crank-Nicolson would ring). ``dt=None`` uses the solver's
    default step, which follows the smallest eigenvalue of g anywhere on the grid (far from the data a learned
    metric can be small, which makes that step tiny); the bridge passes ``PROTOCOL["dt"]``. Returns (T, *grid.shape).
    """
    grid = Grid(Box(*BOX), shape)
    pde = AttentionLimitPDE(grid, density, metric=metric, form="features")
    return pde.solve(h0.reshape(grid.shape), float(t_final), method="implicit-euler", n_snapshots=n_snapshots,
                     dt=dt).values


def overshoot(h: np.ndarray) -> float:
    """How far a flow of an indicator (values in [0, 1] at t = 0) leaves [0, 1]: max(0, -min h, max h - 1).

    Zero for a scheme with the maximum principle. The implicit-Euler finite-volume scheme of
    ``pde.AttentionLimitPDE`` has it for diagonal metric tensors only: the mixed-derivative terms of an
    anisotropic g give negative off-diagonal stencil weights, and the flow overshoots (measured values in
    ``docs/experiments.md``).
    """
    h = np.asarray(h, dtype=float)
    return float(max(0.0, -h.min(), h.max() - 1.0))


def kernel_heat_flow(metric, particles: np.ndarray, h0: np.ndarray, queries: np.ndarray, t_final: float,
                     n_snapshots: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The monotone heat flow: attention on the sampled points, H(t + eps/2) = S_eps H (THEORY section 1).

    ``S_eps = AttentionOperator(particles, eps, metric=metric)`` is row-stochastic with non-negative entries,
    so every H(t) is a convex combination of H_0: the maximum principle holds exactly, for any metric. As
    eps -> 0 its generator is the attention-limit operator of the points' density under the metric (the PDE
    the bridge solves on the grid, with p = q / sqrt|g|). Values at ``queries`` are one more attention step
    from the queries to the particles, S_eps(query, particles) H(t) (also a convex combination).

    Returns
    -------
    at_particles : (T, P) array;  at_queries : (T, Q) array, at ``n_snapshots`` times in [0, t_final]
    (K = round(t / (eps / 2)) steps each).
    """
    from ..attention import AttentionOperator

    op = AttentionOperator(particles, eps, metric=metric)
    f = metric.pairwise(queries, particles)
    logits = -f / (2.0 * eps)
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    steps = np.rint(np.linspace(0.0, t_final, n_snapshots) / (eps / 2)).astype(int)
    h = np.asarray(h0, dtype=float).copy()
    done, at_p, at_q = 0, [], []
    for k in steps:
        for _ in range(k - done):
            h = op.apply(h)
        done = k
        at_p.append(h.copy())
        at_q.append(w @ h)
    return np.array(at_p), np.array(at_q)


def _interpolate(grid_values: np.ndarray, axes: list[np.ndarray], points: np.ndarray) -> np.ndarray:
    from scipy.interpolate import RegularGridInterpolator

    return RegularGridInterpolator(axes, grid_values, bounds_error=False, fill_value=None)(points)


def moon_paths(n: int = 101) -> dict[str, list[np.ndarray]]:
    """Reference paths of the two-moons geometry (the noise-free centre curves of ``sklearn.make_moons``).

    * ``within``: arcs along each moon, c0(t) = (cos t, sin t) and c1(t) = (1 - cos t, 1/2 - sin t) for
      t in [0.1 pi, 0.9 pi] (inside one class).
    * ``crossing``: straight segments across the gap: vertical segments at x = 0.1, 0.2, ..., 0.9 from the lower
      moon to the upper moon, and the two tip segments (1, 0) -> (1, -1/2) and (0, 1/2) -> (0, 1) from the tip
      of one moon to the facing curve of the other.
    """
    t = np.linspace(0.1 * np.pi, 0.9 * np.pi, n)
    within = [np.c_[np.cos(t), np.sin(t)], np.c_[1 - np.cos(t), 0.5 - np.sin(t)]]
    s = np.linspace(0.0, 1.0, n)[:, None]
    crossing = []
    for x0 in np.linspace(0.1, 0.9, 9):
        a, b = np.array([x0, 0.5 - np.sqrt(1 - (1 - x0) ** 2)]), np.array([x0, np.sqrt(1 - x0**2)])
        crossing.append(a + s * (b - a))
    for a, b in (((1.0, 0.0), (1.0, -0.5)), ((0.0, 0.5), (0.0, 1.0))):
        a, b = np.asarray(a), np.asarray(b)
        crossing.append(a + s * (b - a))
    return {"within": within, "crossing": crossing}


def path_stretch(metric, path: np.ndarray) -> float:
    """Metric length of a polyline divided by its Euclidean length (midpoint rule per segment)."""
    d = np.diff(path, axis=0)
    g = metric.tensor(0.5 * (path[1:] + path[:-1]))
    ds = np.sqrt(np.maximum(np.einsum("pi,pij,pj->p", d, g, d), 0.0))
    return float(ds.sum() / np.linalg.norm(d, axis=1).sum())


def boundary_sets(x: np.ndarray, y: np.ndarray, k: int = 10, band=(0.2, 0.8)) -> tuple[np.ndarray, np.ndarray]:
    """Data points near the class boundary / inside a class, from the labels of their k nearest neighbours.

    q_i = fraction of class 1 among the k nearest other points; boundary: band[0] <= q_i <= band[1];
    interior: q_i in {0, 1} (all k neighbours share one class).
    """
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    q = y[np.argsort(d, axis=1)[:, :k]].mean(1)
    return (q >= band[0]) & (q <= band[1]), (q == 0) | (q == 1)


def metric_measures(metric, x: np.ndarray, y: np.ndarray, k: int = 10, band=(0.2, 0.8)) -> dict[str, Any]:
    """Scale-free comparisons of the metric across the gap and inside the classes.

    * ``stretch_within`` / ``stretch_crossing``: metric length / Euclidean length of each :func:`moon_paths`
      path; ``stretch_ratio`` = mean crossing stretch / mean within stretch (1 for any constant multiple of the
      Euclidean metric; > 1 means the metric makes the gap longer than the classes).
    * ``lmax_boundary`` / ``lmax_interior``: mean largest eigenvalue of g at the data points of
      :func:`boundary_sets`; ``lmax_ratio`` their quotient.
    * ``anisotropy``: the largest lambda_max / lambda_min over the data points.
    """
    paths = moon_paths()
    within = np.array([path_stretch(metric, p) for p in paths["within"]])
    crossing = np.array([path_stretch(metric, p) for p in paths["crossing"]])
    w = np.linalg.eigvalsh(metric.tensor(x))
    near, inside = boundary_sets(x, y, k, band)
    return {"stretch_within": within, "stretch_crossing": crossing,
            "stretch_ratio": float(crossing.mean() / within.mean()),
            "lmax_boundary": float(w[near, 1].mean()), "lmax_interior": float(w[inside, 1].mean()),
            "lmax_ratio": float(w[near, 1].mean() / w[inside, 1].mean()),
            "n_boundary": int(near.sum()), "n_interior": int(inside.sum()),
            "anisotropy": float((w[:, 1] / w[:, 0]).max()), "min_eigenvalue": float(w[:, 0].min())}


def _flow_scores(h: np.ndarray, axes, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contrast mean(H | class 1) - mean(H | class 0) and accuracy of H > 1/2 at ``points``, per snapshot."""
    vals = np.stack([_interpolate(ht, axes, points) for ht in h])  # (T, n)
    contrast = vals[:, labels == 1].mean(1) - vals[:, labels == 0].mean(1)
    return contrast, ((vals > 0.5) == (labels == 1)).mean(1)


def bridge(quick: bool = True, seed: int = 0, shape: int | None = None, t_final: float = 0.2, n_snapshots: int = 5,
           epochs: int | None = None, variant: str = "ipn", euclidean: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run experiment 5 for one variant and one seed; returns metric fields, heat-flow snapshots, contrasts.

    Snapshots at ``n_snapshots`` equally spaced times in [0, t_final]. ``variant`` is one of :data:`VARIANTS`
    (default ``"ipn"``, the original bridge). ``euclidean`` may pass the Euclidean flow of an earlier call with
    the same grid and times (it depends on neither the seed nor the variant) to skip recomputing it.
    """
    shape = shape if shape is not None else (48 if quick else 96)
    times = np.linspace(0.0, t_final, n_snapshots)
    model, x, y, test, acc = train_moons_metric(seed, epochs, variant)
    raw = model.input_metric()
    floor = PROTOCOL["metric_floor"]
    scale = (1.0 - floor) / float(np.mean(0.5 * np.trace(raw.tensor(x), axis1=1, axis2=2)))
    metric = ScaledMetric(raw, scale, floor)  # mean tr g / 2 = 1 on the data points, floor included
    grid = Grid(Box(*BOX), shape)
    out: dict[str, Any] = {"variant": variant, "x": x, "y": y, "test": test, "ipn_test_accuracy": acc,
                           "test_accuracy": acc, "metric_scale": scale, "axes": grid.axes, "times": np.asarray(times),
                           "fields": metric_fields(metric, grid.points), "data_log_trace": metric_fields(metric, x)["log_trace"],
                           "measures": metric_measures(metric, x, y, PROTOCOL["knn"], PROTOCOL["boundary_band"])}
    epochs_used = {"ipn": settings("two_moons", True, {"epochs": epochs})["epochs"],
                   "ipn_attention_only": epochs or PROTOCOL["ipn_epochs"],
                   "label_propagation": epochs or PROTOCOL["lp_epochs"]}[variant]
    out["config"] = {"seed": seed, "variant": variant, "shape": shape, "t_final": t_final, "n_snapshots": n_snapshots,
                     "box": BOX, "bandwidth": 0.2, "floor": 0.02, "quick": quick, "epochs": epochs_used}
    h0 = _nearest_label(grid.points, x[~test], y[~test])
    density = kde_density(x[~test])
    dt = min(PROTOCOL["dt"], t_final / (n_snapshots - 1))
    flows = {"learned": heat_flow(metric, density, h0, t_final, n_snapshots, shape, dt)}
    flows["euclidean"] = (euclidean["flows"]["euclidean"] if euclidean is not None
                          else heat_flow(None, density, h0, t_final, n_snapshots, shape, dt))
    out["flows"] = flows
    out["contrast"], out["accuracy"] = {}, {}
    for name, h in flows.items():
        out["contrast"][name], out["accuracy"][name] = _flow_scores(h, grid.axes, x[test], y[test])
    out["flow_range"] = {name: np.array([h.min(), h.max()]) for name, h in flows.items()}
    out["overshoot"] = {name: overshoot(h) for name, h in flows.items()}
    # the monotone alternative: attention heat flow on the training points under the same metric
    xtr, ytr = x[~test], y[~test].astype(float)
    keps = PROTOCOL["kernel_eps"]
    at_p, at_q = kernel_heat_flow(metric, xtr, ytr, x[test], t_final, n_snapshots, keps)
    yt = y[test]
    out["kernel"] = {"eps": keps, "range": np.array([min(at_p.min(), at_q.min()), max(at_p.max(), at_q.max())]),
                     "contrast": at_q[:, yt == 1].mean(1) - at_q[:, yt == 0].mean(1),
                     "accuracy": ((at_q > 0.5) == (yt == 1)).mean(1)}
    return out


def bridge_study(quick: bool = True, seeds: Sequence[int] | int = 3, variants: Sequence[str] = VARIANTS,
                 shape: int | None = None, t_final: float | None = None, n_snapshots: int | None = None,
                 verbose: bool = False) -> dict[str, Any]:
    """Every variant on every seed, the fixed :data:`PROTOCOL`; per-seed measures and the first seed's fields.

    Returns ``{"variants": {name: {...}}, "euclidean": {contrast, accuracy}, "times", "seeds", "config"}``;
    each variant holds per-seed arrays ``test_accuracy`` (S,), ``stretch_ratio`` (S,), ``lmax_ratio`` (S,),
    ``anisotropy`` (S,), ``contrast`` and ``accuracy`` (S, T) of the learned-metric heat flow, and ``example``
    (the first seed's :func:`bridge` result: metric fields and flows, for the figure).
    """
    import time

    seeds = list(range(int(seeds))) if np.isscalar(seeds) else [int(s) for s in seeds]
    t_final = PROTOCOL["t_final"] if t_final is None else t_final
    n_snapshots = PROTOCOL["n_snapshots"] if n_snapshots is None else n_snapshots
    shape = shape if shape is not None else (40 if quick else 96)
    out: dict[str, Any] = {"variants": {}, "seeds": np.asarray(seeds)}
    euclid = None
    for name in variants:
        rows = []
        for s in seeds:
            t0 = time.perf_counter()
            r = bridge(quick=quick, seed=s, shape=shape, t_final=t_final, n_snapshots=n_snapshots, variant=name,
                       euclidean=euclid)
            if euclid is None:
                euclid = r
            rows.append(r)
            if verbose:
                m = r["measures"]
                print(f"{name:20s} seed {s}: acc {r['test_accuracy']:.3f} stretch ratio {m['stretch_ratio']:.3f} "
                      f"lmax ratio {m['lmax_ratio']:.3f} ({time.perf_counter() - t0:.1f} s)", flush=True)
        v: dict[str, Any] = {
            "test_accuracy": np.array([r["test_accuracy"] for r in rows]),
            "metric_scale": np.array([r["metric_scale"] for r in rows]),
            **{k: np.array([r["measures"][k] for r in rows]) for k in
               ("stretch_ratio", "lmax_ratio", "lmax_boundary", "lmax_interior", "anisotropy", "min_eigenvalue")},
            "stretch_within": np.stack([r["measures"]["stretch_within"] for r in rows]),
            "stretch_crossing": np.stack([r["measures"]["stretch_crossing"] for r in rows]),
            "example": {k: rows[0][k] for k in ("fields", "data_log_trace", "flows")},
            "flow_range": np.stack([r["flow_range"]["learned"] for r in rows]),
            "overshoot": np.array([r["overshoot"]["learned"] for r in rows]),
            "kernel_range": np.stack([r["kernel"]["range"] for r in rows]),
            "kernel_contrast": np.stack([r["kernel"]["contrast"] for r in rows]),
            "contrast": np.stack([r["contrast"]["learned"] for r in rows]),
            "accuracy": np.stack([r["accuracy"]["learned"] for r in rows]),
        }
        out["variants"][name] = v
    for k in ("x", "y", "test", "axes", "times"):
        out[k] = euclid[k]
    out["euclidean"] = {"contrast": euclid["contrast"]["euclidean"], "accuracy": euclid["accuracy"]["euclidean"],
                        "flow": euclid["flows"]["euclidean"]}
    out["config"] = dict(PROTOCOL, seeds=seeds, variants=list(variants), shape=shape, t_final=t_final,
                         n_snapshots=n_snapshots, box=BOX, bandwidth=0.2, floor=0.02, quick=quick,
                         ipn_epochs_original=settings("two_moons", True, {})["epochs"])
    out["table"] = study_table(out)
    return out


def bridge_table(result: dict[str, Any]) -> str:
    """One :func:`bridge` run: contrast and accuracy of the thresholded indicator, learned vs Euclidean metric."""
    m = result["measures"]
    lines = [f"bridge ({result.get('variant', 'ipn')}): metric-attention test accuracy {result['ipn_test_accuracy']:.3f}; "
             f"log10(tr g/2) on data: median {np.median(result['data_log_trace']):.2f}, "
             f"5-95% [{np.percentile(result['data_log_trace'], 5):.2f}, {np.percentile(result['data_log_trace'], 95):.2f}]; "
             f"stretch crossing/within {m['stretch_ratio']:.3f}; lambda_max boundary/interior {m['lmax_ratio']:.3f}"]
    lines.append(f"{'t':>6s} {'contrast learned':>17s} {'contrast eucl.':>15s} {'acc learned':>12s} {'acc eucl.':>10s}")
    for i, t in enumerate(result["times"]):
        lines.append(f"{t:6.3f} {result['contrast']['learned'][i]:17.4f} {result['contrast']['euclidean'][i]:15.4f} "
                     f"{result['accuracy']['learned'][i]:12.3f} {result['accuracy']['euclidean'][i]:10.3f}")
    return "\n".join(lines)


def _ms(a) -> str:
    a = np.asarray(a, dtype=float)
    return f"{a.mean():.3f} +- {a.std():.3f}"


def study_table(study: dict[str, Any]) -> str:
    """Per-variant summary (mean +- std over seeds) and the per-seed values of the bridge study."""
    seeds = list(study["seeds"])
    times = study["times"]
    seeds = [int(v) for v in seeds]
    lines = [f"bridge study: {len(seeds)} seeds {seeds}; metric normalised to mean tr g / 2 = 1 on the data; "
             f"Euclidean = identity metric, same KDE density",
             f"{'variant':20s} {'test acc':>15s} {'stretch cross/within':>21s} {'lmax bound/inter':>17s} {'max aniso':>15s}"]
    for name, v in study["variants"].items():
        lines.append(f"{name:20s} {_ms(v['test_accuracy']):>15s} {_ms(v['stretch_ratio']):>21s} "
                     f"{_ms(v['lmax_ratio']):>17s} {_ms(v['anisotropy']):>15s}")
    head = "  ".join(f"t={t:.2f}" for t in times[1:])
    lines.append(f"heat-flow contrast of the test points (mean +- std over seeds): {head}")
    lines.append(f"{'euclidean':20s} " + "  ".join(f"{c:14.3f}" for c in study["euclidean"]["contrast"][1:]))
    for name, v in study["variants"].items():
        lines.append(f"{name:20s} " + "  ".join(f"{_ms(v['contrast'][:, i]):>14s}" for i in range(1, len(times))))
    lines.append("heat-flow accuracy of H > 1/2 on the test points:")
    lines.append(f"{'euclidean':20s} " + "  ".join(f"{c:14.3f}" for c in study["euclidean"]["accuracy"][1:]))
    for name, v in study["variants"].items():
        lines.append(f"{name:20s} " + "  ".join(f"{_ms(v['accuracy'][:, i]):>14s}" for i in range(1, len(times))))
    lines.append("maximum principle: overshoot max(0, -min H, max H - 1) of the PDE flow (implicit Euler) vs the "
                 "range of the monotone kernel flow (S_eps on the training points):")
    for name, v in study["variants"].items():
        if "overshoot" in v:
            lines.append(f"{name:20s} PDE overshoot {_ms(v['overshoot']):>15s} (max {v['overshoot'].max():.3f});  kernel "
                         f"range [{v['kernel_range'][:, 0].min():.3f}, {v['kernel_range'][:, 1].max():.3f}], contrast "
                         f"at t_final {_ms(v['kernel_contrast'][:, -1])}")
    lines.append("per seed: test accuracy / stretch ratio / lambda_max ratio / contrast at t_final (learned - Euclidean)"
                 " / range of H (learned)")
    for name, v in study["variants"].items():
        for i, s in enumerate(seeds):
            dc = f"{v['contrast'][i, -1] - study['euclidean']['contrast'][-1]:+.3f}"
            rg = f"[{v['flow_range'][i, 0]:.3f}, {v['flow_range'][i, 1]:.3f}]"
            lines.append(f"  {name:20s} seed {s}: {v['test_accuracy'][i]:.3f} / {v['stretch_ratio'][i]:.3f} / "
                         f"{v['lmax_ratio'][i]:.3f} / {dc} / {rg}")
    return "\n".join(lines)
