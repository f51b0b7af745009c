"""Metric-attention experiment 5 (issue 5): the learned pull-back metric on two moons and its heat flow.

Usage: python simulations/learn_bridge.py [--quick] [--seeds N] [--variants ...] [--out results] [--figures figures]
Three models (the IPN with block MLPs, the attention-only IPN, attention-only label propagation with one metric
on the plane), 10 seeds (3 with --quick); see continuum_attention.learn.bridge.
"""

from continuum_attention.learn.bridge import main

if __name__ == "__main__":
    main()
