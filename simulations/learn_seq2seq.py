"""Metric-attention experiment 'seq2seq' (issue 5): see continuum_attention.learn.experiments.

Usage: python simulations/learn_seq2seq.py [--quick] [--seeds N] [--out results] [--figures figures]
"""

from continuum_attention.learn.experiments import main

if __name__ == "__main__":
    main("seq2seq")
