"""Metric-attention experiment 'two_moons' (issue 5): see continuum_attention.learn.experiments.

Usage: python simulations/learn_two_moons.py [--quick] [--seeds N] [--out results] [--figures figures]
"""

from continuum_attention.learn.experiments import main

if __name__ == "__main__":
    main("two_moons")
