"""The paper's experiments (THEORY section 6), one function per experiment, each returning a result dict.

* :func:`two_moons` - IPN on sklearn two moons (noise 0.2, 400 train / 500 held-out test points), Table settings.
* :func:`digits` - IPN on sklearn's 8x8 digits (1797 points, stratified 500-point test split; MNIST from a
  local ``.npz`` if given, then attention runs across minibatches of ``batch_points`` data points).
* :func:`segmentation` - part segmentation of a synthetic 2-D figure, attention masked to a kNN graph.
* :func:`seq2seq` - token-sequence reversal with an encoder-decoder of :class:`TransformerBlock`.
* :func:`bridge` (in :mod:`.bridge`) - the learned pull-back metric on two moons and the PDE heat flow.

Every function takes ``quick`` (small settings for CI), ``seeds`` and keyword overrides of its settings,
and returns ``{"kinds": ..., "seeds", "noise_levels", "epochs", "config", "table"}`` (see
:func:`.training.compare_attention`). The IPN runs transductively: train and test points form one sequence,
the loss sees only training labels, accuracy is measured on the test points.

Network and protocol (issue 13): the IPN is the paper's (``block_mlp=False``: linear -> attention blocks ->
linear), with the layers' default temperature (``temperature="auto"``, recorded in the config) and
parameter-matched per-head widths. ``kinds`` may add the ablations ``"none"`` (no attention: the block MLPs
alone, each point classified on its own) and ``"KIND+mlp"`` (attention blocks with the ReLU block MLP).
:func:`baselines` scores logistic regression and kNN on the same split; :func:`.training.paired_statistics`
gives mean, standard deviation, 95 % intervals and paired tests across seeds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .models import InformationPropagationNetwork, Seq2SeqTransformer
from .training import Trial, compare_attention, plot_comparison, save_comparison, seed_all, summary_table

__all__ = ["two_moons", "digits", "segmentation", "seq2seq", "moons_data", "digits_data", "figure_shapes",
           "knn_mask", "finish", "ipn_trial", "settings", "SETTINGS", "baselines", "parse_kind", "IPN_KINDS"]

IPN_KINDS = ("self", "l2", "metric")
ABLATIONS = ("none", "metric+mlp")

SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "two_moons": {
        "full": dict(seeds=10, epochs=400, lr=1e-3, weight_decay=1e-4, width=10, mlp_width=10, layers=2, heads=1,
                     eps=0.5, temperature="auto", block_mlp=False, metric_hidden=None, batch_points=None,
                     n_train=400, n_test=500, baselines=True, noise_levels=[0.0, 0.1, 0.2, 0.3, 0.5, 0.8]),
        "quick": dict(seeds=3, epochs=300),
    },
    "digits": {
        "full": dict(seeds=10, epochs=300, lr=1e-3, weight_decay=1e-4, width=100, mlp_width=100, layers=2, heads=1,
                     eps=0.5, temperature="auto", block_mlp=False, metric_hidden=None, batch_points=None,
                     subset=None, test_size=500, baselines=True, noise_levels=[0.0, 0.1, 0.2, 0.4, 0.6]),
        "quick": dict(seeds=3, epochs=70, lr=3e-3, width=32, mlp_width=32),
    },
    "segmentation": {
        "full": dict(seeds=10, epochs=60, lr=1e-3, weight_decay=1e-4, width=64, mlp_width=64, layers=3, heads=1,
                     eps=0.5, temperature="auto", block_mlp=True, points=96, k=8, train_shapes=256, test_shapes=64, batch=32,
                     noise_levels=[0.0, 0.02, 0.05, 0.1, 0.2]),
        "quick": dict(seeds=3, epochs=30, width=32, mlp_width=32, points=64, train_shapes=128, test_shapes=32, lr=3e-3),
    },
    "seq2seq": {
        "full": dict(seeds=10, epochs=40, lr=1e-3, weight_decay=1e-4, dim=32, mlp_width=64, layers=1, heads=2,
                     eps=0.5, temperature="auto", length=8, vocab=10, train_size=4000, test_size=256, batch=64,
                     noise_levels=[0.0, 0.25, 0.5, 1.0, 1.5]),
        "quick": dict(seeds=3, epochs=8, train_size=1500, length=6),
    },
}


def settings(name: str, quick: bool, overrides: dict[str, Any]) -> dict[str, Any]:
    """Full settings of experiment ``name``, updated by the quick ones and then by ``overrides``."""
    cfg = dict(SETTINGS[name]["full"])
    if quick:
        cfg.update(SETTINGS[name]["quick"])
    unknown = set(overrides) - set(cfg) - {"seeds"}
    if unknown:
        raise ValueError(f"unknown settings for {name}: {sorted(unknown)}; known: {sorted(cfg)}")
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    cfg["quick"] = bool(quick)
    return cfg


def _seed_list(seeds: int | Sequence[int]) -> list[int]:
    return list(range(int(seeds))) if np.isscalar(seeds) else [int(s) for s in seeds]


# -- transductive classification (IPN) ---------------------------------------------------------------------


def parse_kind(kind: str) -> tuple[str, bool]:
    """``"metric"`` -> ("metric", False); ``"metric+mlp"`` -> ("metric", True); ``"none"`` -> ("none", True)."""
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a string, got kind={kind!r}")
    if kind == "none":
        return "none", True
    base, _, extra = kind.partition("+")
    if base not in IPN_KINDS or extra not in ("", "mlp"):
        raise ValueError(f"kind must be one of {IPN_KINDS}, 'none' or 'KIND+mlp', got kind={kind!r}")
    return base, extra == "mlp"


def _chunks(n: int, size: int | None, gen: torch.Generator | None) -> list[Tensor]:
    """All n indices as one chunk (size None) or a random partition into chunks of at most ``size``."""
    if size is None or size >= n:
        return [torch.arange(n)]
    return list(torch.randperm(n, generator=gen).split(int(size)))


def ipn_trial(x: np.ndarray, y: np.ndarray, test: np.ndarray, kind: str, seed: int, cfg: dict[str, Any]) -> Trial:
    """IPN over all points at once; loss on ~test, accuracy on test; noise added to test inputs only.

    ``kind``: see :func:`parse_kind` (``cfg["block_mlp"]`` applies to the plain kinds). With
    ``cfg["batch_points"] = B`` every epoch is a random partition of all points into minibatches of B points,
    attention runs across the points of one minibatch (memory O(B^2)) and each minibatch takes one optimiser
    step on its training points; accuracy uses a fixed random partition. ``None`` (default): one sequence.
    """
    base, mlp = parse_kind(kind)
    seed_all(seed)
    model = InformationPropagationNetwork(
        x.shape[1], int(y.max()) + 1, attention=base, width=cfg["width"], mlp_width=cfg["mlp_width"],
        layers=cfg["layers"], heads=cfg["heads"], eps=cfg["eps"], temperature=cfg.get("temperature", "auto"),
        metric_hidden=cfg.get("metric_hidden"), block_mlp=mlp or bool(cfg.get("block_mlp", False)))
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    te = torch.as_tensor(test, dtype=torch.bool)
    lossf = nn.CrossEntropyLoss()
    batch = cfg.get("batch_points")
    gen = torch.Generator().manual_seed(seed)
    eval_chunks = _chunks(len(yt), batch, torch.Generator().manual_seed(20_000 + seed))

    def epoch() -> float:
        total, count = 0.0, 0
        for idx in _chunks(len(yt), batch, gen):
            train = ~te[idx]
            if not bool(train.any()):
                continue
            opt.zero_grad()
            loss = lossf(model(xt[idx])[train], yt[idx][train])
            loss.backward()
            opt.step()
            total, count = total + loss.item() * int(train.sum()), count + int(train.sum())
        return total / count

    def predictions(inputs: Tensor) -> Tensor:
        pred = torch.empty(len(yt), dtype=torch.long)
        for idx in eval_chunks:
            pred[idx] = model(inputs[idx]).argmax(-1)
        return pred

    def accuracy(inputs: Tensor = xt) -> float:
        return float((predictions(inputs)[te] == yt[te]).float().mean())

    def noisy(sigma: float) -> float:
        gen_noise = torch.Generator().manual_seed(10_000 + seed)
        xn = xt.clone()
        xn[te] += sigma * torch.randn(int(te.sum()), xt.shape[1], generator=gen_noise)
        return accuracy(xn)

    return Trial(model, epoch, accuracy, noisy)


def baselines(x: np.ndarray, y: np.ndarray, test: np.ndarray, k: int = 5) -> dict[str, float]:
    """Test accuracy of logistic regression and of a k-nearest-neighbour classifier on the same split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    tr = ~np.asarray(test, bool)
    out = {}
    for name, clf in (("logistic", LogisticRegression(max_iter=2000)), (f"knn{k}", KNeighborsClassifier(k))):
        clf.fit(x[tr], y[tr])
        out[name] = float((clf.predict(x[~tr]) == y[~tr]).mean())
    return out


def moons_data(n_train: int = 400, n_test: int = 100, noise: float = 0.2, seed: int = 0):
    """Two moons: points (n, 2), labels (n,), boolean test indicator (last ``n_test`` points)."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_train + n_test, noise=noise, random_state=seed)
    test = np.zeros(n_train + n_test, bool)
    test[n_train:] = True
    return x.astype(np.float32), y, test


def digits_data(subset: int | None = None, mnist: str | Path | None = None, seed: int = 0,
                test_size: int | float = 0.2):
    """sklearn digits scaled to [0, 1] (or MNIST from ``mnist`` .npz, its own train/test split), with a
    stratified test split of ``test_size`` points (int) or that fraction (float), after ``subset``."""
    from sklearn.model_selection import train_test_split

    if mnist is not None:
        with np.load(mnist) as f:
            missing = sorted({"x_train", "y_train", "x_test", "y_test"} - set(f.files))
            if missing:
                raise ValueError(f"mnist={str(mnist)!r} lacks the array(s) {missing}; it needs x_train, y_train, x_test, y_test")
            x = np.concatenate([f["x_train"], f["x_test"]]).reshape(-1, np.prod(f["x_train"].shape[1:]))
            y = np.concatenate([f["y_train"], f["y_test"]])
            test = np.r_[np.zeros(len(f["x_train"]), bool), np.ones(len(f["x_test"]), bool)]
        x = x.astype(np.float32) / max(float(x.max()), 1.0)
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = (d.data / 16.0).astype(np.float32), d.target
        if subset is not None and subset < len(y):
            keep = np.random.default_rng(seed).choice(len(y), subset, replace=False)
            x, y = x[keep], y[keep]
        idx = np.arange(len(y))
        if isinstance(test_size, (int, np.integer)) and not 10 <= test_size <= len(y) - 10:
            raise ValueError(f"test_size must be in 10..{len(y) - 10} points, got test_size={test_size!r}")
        _, te = train_test_split(idx, test_size=test_size, stratify=y, random_state=seed)
        test = np.isin(idx, te)
        return x, y, test
    if subset is not None and subset < len(y):
        keep = np.random.default_rng(seed).choice(len(y), subset, replace=False)
        x, y, test = x[keep], y[keep], test[keep]
    return x, y, test


def _ipn_experiment(cfg: dict[str, Any], x, y, test, kinds, verbose: bool, title: str) -> dict:
    kinds = list(kinds) if kinds is not None else list(IPN_KINDS)
    for k in kinds:
        parse_kind(k)
    cfg["kinds"] = kinds
    result = compare_attention(lambda k, s: ipn_trial(x, y, test, k, s, cfg), seeds=_seed_list(cfg["seeds"]),
                               epochs=cfg["epochs"], noise_levels=cfg["noise_levels"], kinds=kinds, verbose=verbose)
    if cfg.get("baselines", True):
        result["baselines"] = baselines(x, y, test)
    result["temperatures"] = _temperatures(x.shape[1], int(y.max()) + 1, kinds, cfg)
    return _finish(result, cfg, title)


def _temperatures(in_dim: int, classes: int, kinds, cfg) -> dict[str, float]:
    """The temperature tau of each kind's attention layers as built (eps_eff = eps * tau)."""
    out = {}
    for k in kinds:
        base, _ = parse_kind(k)
        if base == "none":
            continue
        layer = InformationPropagationNetwork(in_dim, classes, attention=base, width=cfg["width"], layers=1,
                                              heads=cfg["heads"], temperature=cfg.get("temperature", "auto"),
                                              metric_hidden=cfg.get("metric_hidden")).attn[0]
        out[k] = float(layer.temperature)
    return out


def two_moons(quick: bool = True, seeds: int | Sequence[int] | None = None, verbose: bool = False,
              kinds: Sequence[str] | None = None, **overrides) -> dict:
    """IPN on two moons (Table: lr 1e-3, wd 1e-4, width 10; 400 train / 500 test points, noise 0.2).

    ``kinds``: attention kinds and ablations (:func:`parse_kind`), default self, l2, metric.
    """
    cfg = settings("two_moons", quick, dict(overrides, seeds=seeds))
    x, y, test = moons_data(cfg["n_train"], cfg["n_test"])
    return _ipn_experiment(cfg, x, y, test, kinds, verbose,
                           f"two moons (IPN, {cfg['n_train']} train / {cfg['n_test']} test)")


def digits(quick: bool = True, seeds: int | Sequence[int] | None = None, mnist: str | Path | None = None,
           verbose: bool = False, kinds: Sequence[str] | None = None, **overrides) -> dict:
    """IPN on sklearn digits (stratified 500-point test split) or local MNIST; full mode lr 1e-3.

    With ``mnist`` and no ``batch_points`` the attention runs across minibatches of 1024 data points
    (a 70 000-point sequence would need ~140 GiB for one N x N matrix).
    """
    cfg = settings("digits", quick, dict(overrides, seeds=seeds))
    cfg["data"] = str(mnist) if mnist is not None else "sklearn digits"
    if mnist is not None and cfg.get("batch_points") is None:
        cfg["batch_points"] = 1024
    x, y, test = digits_data(cfg["subset"], mnist, test_size=cfg["test_size"])
    return _ipn_experiment(cfg, x, y, test, kinds, verbose,
                           f"digits (IPN, {len(y) - test.sum()} train / {test.sum()} test)")


# -- graph task: part segmentation with a kNN mask ---------------------------------------------------------

_PARTS = {  # (label, centre x, centre y, half-width, half-height) of the rectangles; head is a disc
    "torso": (1, 0.0, 0.6, 0.35, 0.6), "arm_l": (2, -0.8, 1.0, 0.45, 0.1), "arm_r": (2, 0.8, 1.0, 0.45, 0.1),
    "leg_l": (3, -0.2, -0.6, 0.12, 0.6), "leg_r": (3, 0.2, -0.6, 0.12, 0.6),
}


def figure_shapes(n_shapes: int, points: int, rng: np.random.Generator, max_angle: float = np.pi / 3):
    """Random stick figures: head (0), torso (1), arms (2), legs (3), randomly stretched and rotated.

    Returns
    -------
    x : (n_shapes, points, 2) float32, centred coordinates;  y : (n_shapes, points) int64 part labels.
    """
    xs, ys = np.empty((n_shapes, points, 2), np.float32), np.empty((n_shapes, points), np.int64)
    areas = np.array([np.pi * 0.3**2] + [4 * p[3] * p[4] for p in _PARTS.values()])
    for s in range(n_shapes):
        part = rng.choice(len(areas), points, p=areas / areas.sum())
        stretch = rng.uniform(0.8, 1.25, size=len(areas))
        pts, lab = np.empty((points, 2)), np.empty(points, np.int64)
        for k in range(len(areas)):
            sel = part == k
            if k == 0:
                r, a = 0.3 * np.sqrt(rng.uniform(size=sel.sum())), rng.uniform(0, 2 * np.pi, sel.sum())
                pts[sel] = np.c_[r * np.cos(a), 1.5 + r * np.sin(a)]
                lab[sel] = 0
            else:
                label, cx, cy, hw, hh = list(_PARTS.values())[k - 1]
                u = rng.uniform(-1, 1, (sel.sum(), 2)) * [hw, hh] * stretch[k]
                pts[sel] = u + [cx * (stretch[k] if label == 2 else 1), cy]
                lab[sel] = label
        t = rng.uniform(-max_angle, max_angle)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        pts = pts @ rot.T
        xs[s], ys[s] = pts - pts.mean(0), lab
    return xs, ys


def knn_mask(x: Tensor, k: int) -> Tensor:
    """Symmetric k-nearest-neighbour adjacency (self included) of points (batch, N, d) -> bool (batch, N, N)."""
    if not 1 <= k <= x.shape[-2]:
        raise ValueError(f"k must be in 1..{x.shape[-2]}, got k={k!r}")
    idx = torch.cdist(x, x).topk(k, dim=-1, largest=False).indices
    mask = torch.zeros(x.shape[:-1] + (x.shape[-2],), dtype=torch.bool).scatter_(-1, idx, True)
    return mask | mask.transpose(-1, -2)


def _minibatch_epoch(opt, n: int, batch: int, gen, batch_loss) -> float:
    """One epoch of shuffled minibatches (order from ``gen``); returns the mean training loss."""
    perm, total = torch.randperm(n, generator=gen), 0.0
    for b in perm.split(batch):
        opt.zero_grad()
        loss = batch_loss(b)
        loss.backward()
        opt.step()
        total += loss.item() * len(b)
    return total / n


def _segmentation_trial(data, kind: str, seed: int, cfg: dict[str, Any]) -> Trial:
    (xtr, ytr, mtr), (xte, yte, mte) = data
    gen = seed_all(seed)
    model = InformationPropagationNetwork(2, 4, attention=kind, width=cfg["width"], mlp_width=cfg["mlp_width"],
                                          layers=cfg["layers"], heads=cfg["heads"], eps=cfg["eps"],
                                          temperature=cfg["temperature"], block_mlp=cfg["block_mlp"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    lossf = nn.CrossEntropyLoss()

    def epoch() -> float:
        return _minibatch_epoch(opt, len(xtr), cfg["batch"], gen,
                                lambda b: lossf(model(xtr[b], mask=mtr[b]).flatten(0, 1), ytr[b].flatten()))

    def accuracy(x: Tensor = xte, mask: Tensor = mte) -> float:
        return float((model(x, mask=mask).argmax(-1) == yte).float().mean())

    def noisy(sigma: float) -> float:
        xn = xte + sigma * torch.randn(xte.shape, generator=torch.Generator().manual_seed(10_000 + seed))
        return accuracy(xn, knn_mask(xn, cfg["k"]))

    return Trial(model, epoch, accuracy, noisy)


def segmentation(quick: bool = True, seeds: int | Sequence[int] | None = None, verbose: bool = False, **overrides) -> dict:
    """Part segmentation (4 parts) of random stick figures; attention restricted to a symmetric kNN graph."""
    cfg = settings("segmentation", quick, dict(overrides, seeds=seeds))
    rng = np.random.default_rng(0)
    data = []
    for n in (cfg["train_shapes"], cfg["test_shapes"]):
        x, y = figure_shapes(n, cfg["points"], rng)
        xt = torch.as_tensor(x)
        data.append((xt, torch.as_tensor(y), knn_mask(xt, cfg["k"])))
    result = compare_attention(lambda k, s: _segmentation_trial(data, k, s, cfg), seeds=_seed_list(cfg["seeds"]),
                               epochs=cfg["epochs"], noise_levels=cfg["noise_levels"], verbose=verbose)
    return _finish(result, cfg, f"part segmentation ({cfg['points']} points, {cfg['k']}-NN mask)")


# -- sequence to sequence ----------------------------------------------------------------------------------


def _seq2seq_trial(data, kind: str, seed: int, cfg: dict[str, Any]) -> Trial:
    (src, tgt), (src_te, tgt_te) = data
    gen = seed_all(seed)
    model = Seq2SeqTransformer(cfg["vocab"] + 1, cfg["length"], dim=cfg["dim"], heads=cfg["heads"],
                               layers=cfg["layers"], mlp_width=cfg["mlp_width"], attention=kind, eps=cfg["eps"],
                               temperature=cfg["temperature"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    lossf = nn.CrossEntropyLoss()

    def epoch() -> float:
        return _minibatch_epoch(opt, len(src), cfg["batch"], gen,
                                lambda b: lossf(model(src[b], tgt[b]).flatten(0, 1), tgt[b].flatten()))

    def noisy(sigma: float) -> float:
        torch.manual_seed(10_000 + seed)
        return float((model.generate(src_te, cfg["length"], noise=sigma) == tgt_te).float().mean())

    return Trial(model, epoch, lambda: noisy(0.0), noisy)


def seq2seq(quick: bool = True, seeds: int | Sequence[int] | None = None, verbose: bool = False, **overrides) -> dict:
    """Reverse random token sequences; accuracy = per-token accuracy of greedy decoding on held-out sequences.

    Input noise: Gaussian noise of size sigma added to the encoder's input embeddings.
    """
    cfg = settings("seq2seq", quick, dict(overrides, seeds=seeds))
    gen = torch.Generator().manual_seed(0)
    data = []
    for n in (cfg["train_size"], cfg["test_size"]):
        s = torch.randint(0, cfg["vocab"], (n, cfg["length"]), generator=gen)
        data.append((s, s.flip(1)))
    result = compare_attention(lambda k, s: _seq2seq_trial(data, k, s, cfg), seeds=_seed_list(cfg["seeds"]),
                               epochs=cfg["epochs"], noise_levels=cfg["noise_levels"], verbose=verbose)
    return _finish(result, cfg, f"sequence reversal (length {cfg['length']}, vocabulary {cfg['vocab']})")


# -- output ------------------------------------------------------------------------------------------------


def _finish(result: dict, cfg: dict[str, Any], title: str) -> dict:
    result["config"] = cfg
    result["title"] = title
    result["table"] = summary_table(result, title)
    return result


def finish(result: dict, name: str, out: str | Path | None = "results", figures: str | Path | None = "figures",
           noise_label: str = "input noise (sigma)") -> dict[str, Path]:
    """Print the table, write ``results/learn_NAME.h5`` and ``figures/learn_NAME.png``; returns the paths."""
    print(result["table"], flush=True)
    paths: dict[str, Path] = {}
    if out is not None:
        arrays = {k: v for k, v in result.items() if k not in ("config", "title", "table")}
        paths["h5"] = save_comparison(arrays, Path(out) / f"learn_{name}.h5", dict(result["config"], experiment=name))
    if figures is not None:
        paths["png"] = plot_comparison(result, Path(figures) / f"learn_{name}.png", result["title"], noise_label)
    return paths


NOISE_LABELS = {
    "two_moons": "input noise sigma (test points)",
    "digits": "pixel noise sigma (test points, pixels in [0, 1])",
    "segmentation": "coordinate noise sigma (kNN graph rebuilt)",
    "seq2seq": "embedding noise sigma (encoder input)",
}


def main(name: str, argv: Sequence[str] | None = None) -> dict:
    """Command line of the ``simulations/learn_NAME.py`` scripts: ``--quick``, ``--seeds``, ``--out``, ...

    ``--seeds N`` runs seeds 0..N-1 (default 10, or 3 with ``--quick``); results go to
    ``OUT/learn_NAME.h5`` and the figure to ``FIGURES/learn_NAME.png``.
    """
    import argparse

    parser = argparse.ArgumentParser(description=f"metric-attention experiment: {name}")
    parser.add_argument("--quick", action="store_true", help="small settings (CI)")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 10; 3 with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="override the number of epochs")
    parser.add_argument("--out", default="results", help="folder for learn_NAME.h5")
    parser.add_argument("--figures", default="figures", help="folder for learn_NAME.png")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--temperature", default=None,
                        help="attention temperature tau (a number, or 'auto', the default; eps_eff = eps * tau)")
    ipn = name in ("two_moons", "digits")
    if ipn:
        parser.add_argument("--kinds", default=None,
                            help="comma-separated kinds: self, l2, metric, none (no attention), KIND+mlp (with block MLP)")
        parser.add_argument("--ablations", action="store_true",
                            help="add the ablations 'none' (block MLPs, no attention) and 'metric+mlp'")
        parser.add_argument("--block-mlp", action="store_true", help="ReLU MLP in every block (not the paper's IPN)")
        parser.add_argument("--batch-points", type=int, default=None,
                            help="attention across minibatches of this many data points (bounded memory)")
    if name == "digits":
        parser.add_argument("--mnist", default=None, help="local .npz with x_train, y_train, x_test, y_test")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = {"two_moons": two_moons, "digits": digits, "segmentation": segmentation, "seq2seq": seq2seq}[name]
    extra: dict[str, Any] = {"mnist": args.mnist} if name == "digits" else {}
    if args.temperature is not None:
        extra["temperature"] = args.temperature if args.temperature == "auto" else float(args.temperature)
    if ipn:
        kinds = args.kinds.split(",") if args.kinds else list(IPN_KINDS)
        if args.ablations:
            kinds += [k for k in ABLATIONS if k not in kinds]
        extra.update(kinds=kinds, batch_points=args.batch_points, block_mlp=True if args.block_mlp else None)
    import os

    load_before = [round(v, 2) for v in os.getloadavg()]
    result = run(quick=args.quick, seeds=args.seeds, epochs=args.epochs, verbose=True, **extra)
    result["config"]["load_average"] = {"before": load_before, "after": [round(v, 2) for v in os.getloadavg()]}
    print(f"load average before {load_before}, after {result['config']['load_average']['after']}")
    paths = finish(result, name, args.out, args.figures, NOISE_LABELS[name])
    for p in paths.values():
        print(f"wrote {p}")
    return result
