"""THEORY.md section 7 on synthetic data: a dot-product score is a Mahalanobis metric (M = A_s / 2 at
eps = 1/2), an antisymmetric part and a key potential; with A symmetric positive definite the two attention
operators are the same matrix (to ~1e-14 measured; asserted at 1e-13)."""

import numpy as np
import pytest

from continuum_attention.attention import AttentionOperator
from continuum_attention.metrics import DotProduct, DotProductSplit, Mahalanobis, metric_from_config

RNG = np.random.default_rng(12)


def _spd_head(d=4, m=6, seed=0):
    rng = np.random.default_rng(seed)
    Q = rng.normal(size=(m, d))
    return DotProduct(Q, Q, rng.normal(size=m), rng.normal(size=m)), rng.normal(size=(50, d))


def test_biased_dot_product_scores_and_config_round_trip():
    Q, K, bq, bk = RNG.normal(size=(3, 2)), RNG.normal(size=(3, 2)), RNG.normal(size=3), RNG.normal(size=3)
    dot = DotProduct(Q, K, bq, bk)
    x, y = RNG.normal(size=(5, 2)), RNG.normal(size=(4, 2))
    expected = -np.array([[(Q @ a + bq) @ (K @ b + bk) for b in y] for a in x])
    assert np.allclose(dot.pairwise(x, y), expected, rtol=0, atol=1e-13)  # ~1e-15 reached
    assert metric_from_config(dot.to_config()) == dot
    assert "query_bias" not in DotProduct(Q, K).to_config()  # unbiased configs unchanged


def test_split_rebuilds_the_logits_exactly_for_a_general_head():
    """a = -(x-y)^T (A_s/2)(x-y) + x^T A_a y + u(y) + v(x), with A not symmetric and biases."""
    Q, K = RNG.normal(size=(3, 5)), RNG.normal(size=(3, 5))
    dot = DotProduct(Q, K, RNG.normal(size=3), RNG.normal(size=3))
    split = dot.split()
    x, y = RNG.normal(size=(7, 5)), RNG.normal(size=(6, 5))
    a = -dot.pairwise(x, y)
    assert np.max(np.abs(split.scores(x, y) - a)) <= 1e-13 * np.max(np.abs(a))  # ~3e-16 relative reached
    assert np.allclose(split.symmetric + split.antisymmetric, Q.T @ K, rtol=0, atol=1e-14)
    assert 0.3 < split.antisymmetric_share < 1.0
    assert not dot.is_symmetric


@pytest.mark.parametrize("eps", [0.5, 0.2, 3.0])
def test_dot_product_attention_is_mahalanobis_attention_with_a_key_potential(eps):
    dot, x = _spd_head()
    split = dot.split()
    assert split.antisymmetric_share == 0.0
    S_dot = AttentionOperator(x, eps, metric=dot).dense()
    op = AttentionOperator(x, eps, metric=split.metric(), key_potential=split.key_potential(x, eps))
    assert np.max(np.abs(S_dot - op.dense())) < 1e-13  # measured 7e-15 (eps = 0.2)
    H = RNG.normal(size=(x.shape[0], 2))
    assert np.max(np.abs(AttentionOperator(x, eps, metric=dot).apply(H) - op.apply(H))) < 1e-13
    assert np.max(np.abs(op.apply_rows(np.array([0, 7]), H) - (S_dot @ H)[[0, 7]])) < 1e-13


def test_the_metric_is_half_of_A_s_at_eps_one_half():
    """M = A_s / 2 (THEORY section 7), not A_s: Mahalanobis(A_s) with the same potential is another matrix."""
    dot, x = _spd_head(seed=1)
    split = dot.split()
    assert np.array_equal(split.metric().M, 0.5 * split.symmetric)
    S_dot = AttentionOperator(x, 0.5, metric=dot).dense()
    wrong = AttentionOperator(x, 0.5, metric=Mahalanobis(split.symmetric), key_potential=split.key_potential(x)).dense()
    assert np.max(np.abs(S_dot - wrong)) > 0.1


def test_key_potential_reweights_the_keys():
    x = RNG.normal(size=(30, 2))
    w = RNG.normal(size=30) * 5
    f = Mahalanobis(np.eye(2)).pairwise(x, x)
    K = np.exp(-f / (2 * 0.3) + w[None, :])
    expected = K / K.sum(1, keepdims=True)
    S = AttentionOperator(x, 0.3, key_potential=w).dense()
    assert np.max(np.abs(S - expected)) < 1e-14  # ~1e-16 reached
    S_shift = AttentionOperator(x, 0.3, key_potential=w + 1e3).dense()  # a constant cancels, nothing overflows
    # w + 1e3 itself is rounded to ulp(1e3) ~ 1e-13 per key: ~1e-14 reached in S
    assert np.max(np.abs(S_shift - expected)) < 1e-13
    pi = AttentionOperator(x, 0.3, key_potential=w).invariant_weights()
    assert np.max(np.abs(pi @ S - pi)) < 1e-15


def test_key_potential_handles_a_huge_spread():
    """Potentials differing by 2000 (e^2000 overflows): rows are still stochastic and finite."""
    x = RNG.normal(size=(20, 2))
    w = np.linspace(0, 2000, 20)
    S = AttentionOperator(x, 0.5, key_potential=w).dense()
    assert np.all(np.isfinite(S)) and np.max(np.abs(S.sum(1) - 1)) < 1e-14
    assert np.all(np.argmax(S, axis=1) == 19)


def test_key_potential_validation():
    x = RNG.normal(size=(10, 2))
    with pytest.raises(ValueError, match="key_potential must have shape"):
        AttentionOperator(x, 0.5, key_potential=np.zeros(9))
    with pytest.raises(ValueError, match="key_potential"):
        AttentionOperator(x, 0.5, key_potential=np.full(10, np.nan))
    with pytest.raises(ValueError, match="normalization='row'"):
        AttentionOperator(x, 0.5, key_potential=np.zeros(10), normalization="sinkhorn")
    with pytest.raises(ValueError, match="truncate=True"):
        AttentionOperator(x, 0.5, key_potential=np.zeros(10), truncate=True)


def test_symmetric_eigh_and_sylvester_inertia():
    """A_s = (Q^T K + K^T Q)/2 from its rank-2m factor; with m < d/2 it has m positive and m negative eigenvalues."""
    Q, K = RNG.normal(size=(4, 12)), RNG.normal(size=(4, 12))
    split = DotProduct(Q, K).split()
    lam, V = split.symmetric_eigh()
    assert np.max(np.abs(V @ np.diag(lam) @ V.T - split.symmetric)) < 1e-13  # ~5e-15 reached
    full = np.linalg.eigvalsh(split.symmetric)
    assert np.allclose(np.sort(lam), full[np.abs(full) > 1e-10], rtol=0, atol=1e-12)
    assert (np.sum(lam > 0), np.sum(lam < 0)) == (4, 4)
    with pytest.raises(ValueError, match="positive definite"):
        split.metric()


def test_split_rejects_other_metrics():
    with pytest.raises(TypeError, match="dot must be a DotProduct"):
        DotProductSplit(Mahalanobis(np.eye(2)))
    with pytest.raises(ValueError, match="query_bias"):
        DotProduct(np.eye(2), np.eye(2), query_bias=[1.0, 2.0, 3.0])
