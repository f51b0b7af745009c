"""Scale on one machine: particles in any dimension, and the kernel built once for fixed points (the plan)."""

import numpy as np
import pytest

from continuum_attention import AttentionOperator, Box, ParticleSolver, Torus
from continuum_attention import densities as D
from continuum_attention.attention import _kernels
from continuum_attention.attention.operator import AUTO_SPARSE_FRACTION
from continuum_attention.domains import Euclidean
from continuum_attention.metrics import DotProduct, Learned, Mahalanobis, ResidualFeatureMap
from continuum_attention.metrics import Euclidean as EuclideanMetric


def _reference(metric, x, eps, domain=None):
    T = -metric.pairwise(x, x, domain) / (2 * eps)
    W = np.exp(T - T.max(axis=1, keepdims=True))
    return W / W.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("d", [4, 16, 64])
def test_every_metric_in_any_dimension(d):
    rng = np.random.default_rng(d)
    torus = Torus([1.0] * d)
    x = D.von_mises(torus, 0.5, 2.0).sample(300, 1)
    A = rng.normal(size=(d, d))
    cases = [(EuclideanMetric(), torus), (Mahalanobis(A @ A.T / d + np.eye(d)), torus),
             (Mahalanobis(A @ A.T / d + np.eye(d)), None),
             (DotProduct(rng.normal(size=(d, d)) / d, rng.normal(size=(d, d))), None),
             (Learned(ResidualFeatureMap(0.1 * rng.normal(size=(5, d)), rng.normal(size=5),
                                         0.1 * rng.normal(size=(d, 5)), rng.normal(size=d))), None)]
    H = np.cos(2 * np.pi * x[:, :2])
    for metric, domain in cases:
        for budget in (0.0, 1e9):  # matrix-free and cached dense
            op = AttentionOperator(x, 0.05 * d, metric=metric, domain=domain, dense_budget=budget)
            S = _reference(metric, x, 0.05 * d, domain)
            np.testing.assert_allclose(op.apply(H), S @ H, rtol=0, atol=2e-14)  # reaches ~3e-15
            np.testing.assert_allclose(op.apply_transpose(H), S.T @ H, rtol=0, atol=2e-14)


def test_truncated_mode_in_five_dimensions():
    box = Box([0.0] * 5, [1.0] * 5)
    x = D.uniform(box).sample(3000, 2)
    dense = AttentionOperator(x, 1e-3, domain=box, truncate=False)
    cut = AttentionOperator(x, 1e-3, domain=box, truncate="auto", tolerance=1e-10)
    assert cut.plan == "sparse" and cut.nnz < 0.05 * 3000**2
    H = np.sin(3 * x[:, 0]) + x[:, 4]
    assert np.max(np.abs(cut.apply(H) - dense.apply(H))) <= 2e-10 * np.abs(H).max()


def test_auto_does_not_truncate_where_the_search_does_not_pay():
    """d = 16 at an eps where the cutoff ball holds most points: the probe sees it and stays exact."""
    torus = Torus([1.0] * 16)
    x = D.uniform(torus).sample(2500, 3)
    op = AttentionOperator(x, 0.05, domain=torus)
    assert op.plan == "dense"  # 2500^2 doubles = 50 MB fits the default budget


def test_the_sparse_rule_on_both_sides_of_its_threshold():
    """truncate="auto" keeps the CSR form exactly when a probed row keeps <= 25% of the points."""
    from scipy.spatial import cKDTree

    torus = Torus([1.0, 1.0])
    x = D.uniform(torus).sample(4000, 5)
    fractions = {}
    for eps in (4e-4, 1e-3, 1.2e-3, 2e-3):  # kept fractions ~0.09, 0.225 (just inside), 0.27 (just outside), 0.45
        op = AttentionOperator(x, eps, domain=torus)
        tree = cKDTree(x, boxsize=[1.0, 1.0])
        probe = tree.query_ball_point(x[:: 4000 // 64], op.cutoff, return_length=True)
        fractions[eps] = np.mean(probe) / 4000
        assert (op.plan == "sparse") == (fractions[eps] <= AUTO_SPARSE_FRACTION), (eps, fractions[eps], op.plan)
    assert min(fractions.values()) < AUTO_SPARSE_FRACTION < max(fractions.values())  # both sides exercised


def test_the_dense_cache_on_both_sides_of_its_budget():
    x = np.random.default_rng(0).random((300, 2))
    need = 8.0 * 300 * 300
    assert AttentionOperator(x, 0.1, dense_budget=need).plan == "dense"
    assert AttentionOperator(x, 0.1, dense_budget=need - 1).plan == "matrix-free"
    cached = AttentionOperator(x, 0.1, dense_budget=need)
    free = AttentionOperator(x, 0.1, dense_budget=0)
    H = np.random.default_rng(1).normal(size=(300, 3))
    for _ in range(3):  # the cache is reused: same answer every layer
        np.testing.assert_allclose(cached.apply(H), free.apply(H), rtol=0, atol=5e-15)  # reaches ~1e-15
    np.testing.assert_allclose(cached.apply_transpose(H), free.apply_transpose(H), rtol=0, atol=5e-15)
    np.testing.assert_array_equal(cached.dense(), cached.dense())


def test_dense_kernels_match_their_numpy_references():
    rng = np.random.default_rng(4)
    S, V = rng.random((700, 513)), rng.normal(size=(513, 3))
    np.testing.assert_allclose(_kernels.dense_matmul(S, V), S @ V, rtol=1e-13, atol=1e-13)
    W = rng.normal(size=(700, 2))
    np.testing.assert_allclose(_kernels.dense_tmatmul(S, W), S.T @ W, rtol=1e-13, atol=1e-13)


def test_the_plan_is_reported_in_results():
    torus = Torus([1.0, 1.0])
    x = D.cosine(torus, 0.5, (1, 0)).sample(8000, 0)
    sol = ParticleSolver(x, 2e-4, domain=torus).run(lambda p: np.cos(2 * np.pi * p[:, 0]), n_layers=2)
    assert sol.metadata["plan"] == "sparse" and sol.metadata["truncated"] is True
    small = ParticleSolver(x[:500], 2e-4, domain=torus).run(lambda p: np.cos(2 * np.pi * p[:, 0]), n_layers=2)
    assert small.metadata["plan"] == "dense"


def test_particles_in_high_dimension_run_all_modes():
    x = np.random.default_rng(0).normal(size=(200, 32))
    for mode, initial in (("features", x[:, 0]), ("walkers", np.full(200, 1 / 200)), ("tokens", None)):
        sol = ParticleSolver(x, 8.0, domain=Euclidean(32), mode=mode).run(initial, n_layers=3)
        assert np.all(np.isfinite(sol.values))
    mu = ParticleSolver(x, 8.0, mode="walkers").run(np.full(200, 1 / 200), n_layers=3).values[-1]
    assert abs(mu.sum() - 1) < 1e-14


@pytest.mark.parametrize("m, periodic", [(1, True), (2, True), (3, True), (1, False), (2, False), (3, False)])
def test_the_cell_grid_finds_the_same_pairs_as_the_tree(m, periodic):
    rng = np.random.default_rng(m)
    box = np.array([1.0, 2.0, 1.5][:m]) if periodic else None
    Z = rng.random((2000, m)) * (1.0 if box is None else box)
    Z[:10] = Z[0]  # duplicates: zero distances must be kept
    for r in (0.05, 0.2):
        perm, indptr, indices, dist2 = _kernels.cell_neighbours(Z, box, r)
        # back to the points' own order: row p of the cell order is point perm[p]
        inverse = np.argsort(perm)
        lengths = np.diff(indptr)[inverse]
        ours = [np.concatenate([[0], np.cumsum(lengths)]),
                np.concatenate([perm[indices[indptr[p]:indptr[p + 1]]] for p in inverse]),
                np.concatenate([dist2[indptr[p]:indptr[p + 1]] for p in inverse])]
        ref = _kernels.cell_neighbours_ref(Z, box, r)
        np.testing.assert_array_equal(ours[0], ref[0])
        for i in range(len(Z)):  # columns come in cell order: sort each row to compare with the tree's
            seg = slice(ours[0][i], ours[0][i + 1])
            order = np.argsort(ours[1][seg], kind="stable")
            ours[1][seg], ours[2][seg] = ours[1][seg][order], ours[2][seg][order]
        np.testing.assert_array_equal(ours[1], ref[1])
        np.testing.assert_allclose(ours[2], ref[2], rtol=1e-14, atol=1e-17)  # the same sums: ~1e-18


def test_the_cell_grid_declines_where_it_does_not_apply():
    Z = np.random.default_rng(0).random((100, 4))
    assert _kernels.cell_neighbours(Z, None, 0.1) is None  # m > 3: the tree path
    assert _kernels.cell_neighbours(Z[:, :2], np.array([1.0, 1.0]), 0.4) is None  # < 3 cells on a torus axis


@pytest.mark.parametrize("m, periodic", [(1, True), (2, True), (3, True), (1, False), (2, False), (3, False)])
def test_cell_rows_match_their_brute_force_reference(m, periodic):
    """Rows of the truncated kernel from the grid of cells against every pair's distance (one row block)."""
    rng = np.random.default_rng(10 + m)
    box = np.array([1.0, 2.0, 1.5][:m]) if periodic else None
    Z = rng.random((3000, m)) * (1.0 if box is None else box)
    Z[:10] = Z[0]  # duplicates: zero distances are kept
    rows = np.concatenate([[0, 2999], rng.integers(0, 3000, 40)])
    s = 0.1 * rng.random(3000)
    V = rng.standard_normal((3000, 2))
    for r in (0.05, 0.3):
        ours = _kernels.cell_rows_sum(Z, box, r, rows, 40.0 / (2 * r * r), s, V)
        ref = _kernels.cell_rows_sum_ref(Z, box, r, rows, 40.0 / (2 * r * r), s, V)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=4e-15 * np.abs(ref).max())  # reaches 4.8e-16 relative


def test_cell_rows_decline_a_torus_axis_too_short_for_the_cutoff():
    # cells of side >= r / 3 reach ceil(r / side) cells each side; a periodic axis needs 2 reach + 1 of them,
    # which holds up to r = 3/7 L: 0.42 is inside (7 cells, reach 3), 0.43 outside (6 cells, reach 3)
    Z = np.random.default_rng(0).random((500, 2))
    args = (np.arange(5), 10.0, np.zeros(500), np.ones((500, 1)))
    assert _kernels.cell_rows_sum(Z, np.array([1.0, 1.0]), 0.42, *args) is not None
    assert _kernels.cell_rows_sum(Z, np.array([1.0, 1.0]), 0.43, *args) is None
    assert _kernels.cell_rows_sum(Z, None, 0.43, *args) is not None  # no period: no wrap to collide
    assert _kernels.cell_rows_sum(np.zeros((500, 4)), None, 0.1, *args) is None  # four axes: no grid


def test_truncated_apply_rows_never_builds_the_csr_and_gives_its_rows():
    rng = np.random.default_rng(4)
    x = rng.random((4000, 2))
    H = rng.normal(size=(4000, 2))
    rows = np.concatenate([[3, 0, 3999, 1234], np.arange(100, 400)])  # enough rows for the grid to pay
    op = AttentionOperator(x, 2e-4, domain=Torus([1.0, 1.0]), truncate=True)
    before = op.apply_rows(rows, H)
    assert not op._engine.built  # O(N + rows x neighbours): no CSR of all rows
    np.testing.assert_allclose(before, op.apply(H)[rows], rtol=0, atol=3e-15)  # the same kernel: reaches 3.3e-16
    assert op._engine.built
    np.testing.assert_array_equal(op.apply_rows(rows, H), before)  # whatever was computed before
    exact = AttentionOperator(x, 2e-4, domain=Torus([1.0, 1.0]), truncate=False).apply_rows(rows, H)
    # the dropped mass is bounded by tolerance = 1e-12 relative; at this cutoff it reaches 1.9e-16
    np.testing.assert_allclose(before, exact, rtol=0, atol=2e-15)


def test_truncated_apply_rows_bins_only_where_the_rows_pay_for_it():
    from continuum_attention.attention.operator import ROWS_BIN_COST

    rng = np.random.default_rng(6)
    x = rng.random((4000, 2))
    H = rng.normal(size=4000)
    torus = Torus([1.0, 1.0])
    op = AttentionOperator(x, 2e-4, domain=torus, truncate=True)
    exact = AttentionOperator(x, 2e-4, domain=torus, truncate=False, dense_budget=0)
    visited = _kernels.cell_rows_candidates(x, np.array([1.0, 1.0]), op.cutoff)
    enough = int(np.ceil(ROWS_BIN_COST / (1.0 - visited)))  # the fewest rows for which the grid pays
    fewer, many = np.arange(enough - 1), np.arange(enough)
    np.testing.assert_array_equal(op.apply_rows(fewer, H), exact.apply_rows(fewer, H))  # the exact rows
    binned = op.apply_rows(many, H)
    assert not np.array_equal(binned, exact.apply_rows(many, H))  # the truncated rows from the grid ...
    np.testing.assert_allclose(binned, exact.apply_rows(many, H), rtol=0, atol=2e-15)  # ... within the tolerance


def test_truncated_apply_rows_falls_back_to_the_exact_rows_for_a_wide_cutoff():
    rng = np.random.default_rng(5)
    x = rng.random((500, 2))
    H = rng.normal(size=500)
    op = AttentionOperator(x, 5e-3, domain=Torus([1.0, 1.0]), truncate=True)  # cutoff 0.48 > 3/7 of the side
    assert op.cutoff > 3 / 7
    exact = AttentionOperator(x, 5e-3, domain=Torus([1.0, 1.0]), truncate=False, dense_budget=0)
    np.testing.assert_array_equal(op.apply_rows(np.arange(7), H), exact.apply_rows(np.arange(7), H))
    assert not op._engine.built


def test_csr_scale_matches_its_reference():
    ours = _kernels.cell_neighbours(np.random.default_rng(1).random((500, 2)), np.array([1.0, 1.0]), 0.1)[1:]
    r, s = np.random.default_rng(2).normal(size=(2, 500))
    kdata = np.exp(-ours[2])
    np.testing.assert_allclose(_kernels.csr_scale(ours[0], ours[1], kdata, r, s),
                               _kernels.csr_scale_ref(ours[0], ours[1], kdata, r, s), rtol=1e-15)


def test_truncated_products_fall_back_to_the_stored_S_for_extreme_shifts():
    """Factors e^-r, e^-s in [1e-100, 1e100] are applied to the vectors; beyond, S is formed pair by pair.
    Shifting s by 300 (e^-s ~ 5e-131, outside) must scale the product by exactly e^-300, both ways round."""
    x = D.uniform(Torus([1.0, 1.0])).sample(3000, 8)
    op = AttentionOperator(x, 2e-4, domain=Torus([1.0, 1.0]), truncate=True)
    r, s = op._ensure_shifts()
    engine = op._engine
    assert engine._factors(r, s) is not None and engine._factors(r, s + 300.0) is None
    V = np.random.default_rng(9).normal(size=(3000, 2))
    for transpose in (False, True):
        factorised = engine.weighted_sum(r, s, V, transpose=transpose)
        stored = engine.weighted_sum(r, s + 300.0, V, transpose=transpose) * np.exp(300.0)
        np.testing.assert_allclose(stored, factorised, rtol=0, atol=5e-15 * np.abs(factorised).max())  # 9.3e-16
