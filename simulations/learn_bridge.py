"""Metric-attention experiment 5 (issue 5): the learned pull-back metric on two moons and its heat flow.

Usage: python simulations/learn_bridge.py [--quick] [--out results] [--figures figures]
See continuum_attention.learn.bridge.
"""

from continuum_attention.learn.bridge import main

if __name__ == "__main__":
    main()
