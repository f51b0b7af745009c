"""backend="torch" (on the CPU in CI) against the Numba kernels: every metric, normalisation and plan."""

import numpy as np
import pytest

from continuum_attention import ParticleSolver, Torus
from continuum_attention.attention import AttentionOperator
from continuum_attention.metrics import DotProduct, Euclidean, Learned, Mahalanobis, ResidualFeatureMap

RNG = np.random.default_rng(5)
X = RNG.random((240, 2))
PHI = ResidualFeatureMap(0.5 * RNG.normal(size=(4, 2)), RNG.normal(size=4), 0.5 * RNG.normal(size=(2, 4)),
                         RNG.normal(size=2))
CASES = {
    "euclid-torus": (Euclidean(), Torus([1.0, 1.0])),
    "mahalanobis-torus": (Mahalanobis(np.array([[2.0, 0.4], [0.4, 0.7]])), Torus([1.0, 1.0])),
    "mahalanobis": (Mahalanobis(np.array([[2.0, 0.4], [0.4, 0.7]])), None),
    "learned": (Learned(PHI), None),
    "dot": (DotProduct(RNG.normal(size=(2, 2)), RNG.normal(size=(2, 2))), None),
}


def _pair(case, **options):
    metric, domain = CASES[case]
    return [AttentionOperator(X, 0.02, metric=metric, domain=domain, backend=b, **options) for b in ("numba", "torch")]


@pytest.mark.parametrize("normalization", ["row", ("alpha", 0.5)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_torch_float64_equals_numba_matrix_free(case, normalization):
    ours, ref = _pair(case, normalization=normalization, truncate=False, dense_budget=0)
    H = RNG.normal(size=(240, 2))
    for method in ("apply", "apply_transpose"):
        a, b = getattr(ours, method)(H), getattr(ref, method)(H)
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-13 * np.abs(a).max())  # reaches 4e-15 * max
    np.testing.assert_allclose(ref.log_degrees(), ours.log_degrees(), rtol=1e-13)  # reaches 1e-15
    np.testing.assert_allclose(ref.displacement(), ours.displacement(), rtol=0, atol=1e-14)  # reaches 3e-16


@pytest.mark.parametrize("options", [dict(truncate=True), dict(truncate=False), dict(normalization="sinkhorn",
                                                                                       truncate=False)])
def test_torch_follows_every_plan(options):
    """Truncated CSR, cached dense S and Sinkhorn's iteration run through the torch kernels too."""
    ours, ref = _pair("euclid-torus", **options)
    assert ours.plan == ref.plan
    H = np.cos(2 * np.pi * X[:, 0])
    np.testing.assert_allclose(ref.apply(H), ours.apply(H), rtol=0, atol=1e-13)  # reaches ~1e-15


def test_torch_float32_error_is_stated_size():
    """float32 scores and sums: about 1e-6 relative (the docs' figure), far from float64's 1e-15."""
    ref = AttentionOperator(X, 0.02, domain=Torus([1.0, 1.0]), truncate=False, dense_budget=0)
    f32 = AttentionOperator(X, 0.02, domain=Torus([1.0, 1.0]), truncate=False, dense_budget=0, backend="torch",
                            dtype="float32")
    H = np.cos(2 * np.pi * X[:, 0])
    err = np.abs(f32.apply(H) - ref.apply(H)).max()
    assert 1e-9 < err < 5e-6  # reaches 3e-7: float32 rounding, not float64's


def test_particle_solver_passes_the_backend_and_records_it():
    sol = ParticleSolver(X, 0.02, domain=Torus([1.0, 1.0]), backend="torch", truncate=False).run(
        np.cos(2 * np.pi * X[:, 0]), n_layers=5, progress=False)
    ref = ParticleSolver(X, 0.02, domain=Torus([1.0, 1.0]), truncate=False).run(
        np.cos(2 * np.pi * X[:, 0]), n_layers=5, progress=False)
    np.testing.assert_allclose(sol.values, ref.values, rtol=0, atol=1e-13)  # reaches ~1e-15
    assert sol.metadata["backend"] == "torch" and sol.metadata["device"] == "cpu"
    assert sol.metadata["dtype"] == "float64"


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(dtype="float32"), ValueError, "needs backend='torch'"),
    (dict(device="cpu"), ValueError, "device is for backend='torch'"),
    (dict(backend="torch", device="nowhere"), ValueError, "device='nowhere'"),
    (dict(backend="torch", device=3), TypeError, "device must be a string"),
    (dict(backend="torch", dtype="float16"), ValueError, "dtype"),
])
def test_backend_options_are_validated(kwargs, error, match):
    with pytest.raises(error, match=match):
        AttentionOperator(X, 0.02, **kwargs)


def _count_sdpa(monkeypatch):
    import torch

    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    return calls


@pytest.mark.parametrize("metric", [Euclidean(), Mahalanobis(np.array([[2.0, 0.4], [0.4, 0.7]]))])
def test_metrics_in_rd_take_the_sdpa_rewrite(monkeypatch, metric):
    """-c|a - b|^2 = 2c a.b - c|a|^2 - c|b|^2: one SDPA call with a per-key bias, equal to Numba to 1e-13."""
    calls = _count_sdpa(monkeypatch)
    ours = AttentionOperator(X, 0.02, metric=metric, backend="torch", truncate=False, dense_budget=0)
    ref = AttentionOperator(X, 0.02, metric=metric, truncate=False, dense_budget=0)
    H = RNG.normal(size=(240, 3))
    np.testing.assert_allclose(ours.apply(H), ref.apply(H), rtol=0, atol=1e-13)  # reaches 4e-15
    assert len(calls) >= 1


def test_the_rewrite_is_refused_where_its_rounding_would_show(monkeypatch):
    """At eps = 1e-9 on points of size 100 the cancellation c max|a|^2 u is ~1e-3: the difference form runs."""
    calls = _count_sdpa(monkeypatch)
    x = 100 * X
    ours = AttentionOperator(x, 1e-9 * 1e4, backend="torch", truncate=False, dense_budget=0)
    ref = AttentionOperator(x, 1e-9 * 1e4, truncate=False, dense_budget=0)
    H = RNG.normal(size=240)
    np.testing.assert_allclose(ours.apply(H), ref.apply(H), rtol=0, atol=1e-13)
    assert calls == []
