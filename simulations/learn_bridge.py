"""Metric-attention experiment 5 (issue 5): the learned pull-back metric on two moons and its heat flow.

Usage: python simulations/learn_bridge.py [--quick] [--seeds N] [--variants ...] [--out results] [--figures figures]
Three models (the IPN with block MLPs, the attention-only IPN, attention-only label propagation with one metric
on the plane), 10 seeds (3 with --quick); see continuum_attention.learn.bridge. Writes
``OUT/learn_bridge.h5`` (continuum_attention.storage.save, kind "learn_bridge") and
``FIGURES/learn_bridge.png`` (continuum_attention.learn.figures.bridge_figure).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import torch

from continuum_attention.learn.bridge import VARIANTS, bridge_study
from continuum_attention.learn.figures import bridge_figure
from continuum_attention.storage import save


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description="metric-attention bridge: learned metric and heat flow on two moons")
    p.add_argument("--quick", action="store_true", help="3 seeds, 40x40 grid (default: 10 seeds, 96x96 grid)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (default 3 quick, 10 full)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", default="results")
    p.add_argument("--figures", default="figures")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = args.seeds if args.seeds is not None else (3 if args.quick else 10)
    result = bridge_study(quick=args.quick, seeds=seeds, variants=args.variants, verbose=True)
    print(result["table"])
    arrays = {k: v for k, v in result.items() if k not in ("config",)}
    print("wrote", save(Path(args.out) / "learn_bridge.h5", arrays, dict(result["config"], torch_version=torch.__version__),
                         kind="learn_bridge"))
    figure = Path(args.figures) / "learn_bridge.png"
    figure.parent.mkdir(parents=True, exist_ok=True)
    bridge_figure(result).savefig(figure, dpi=100)
    print("wrote", figure)
    return result


if __name__ == "__main__":
    main()
