"""Issue 13: metric-attention as an adoptable layer (temperature, parameter budget, SDPA path, MHA call form,
torch.compile, the paper's IPN with ablations and minibatches, statistics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from continuum_attention.learn import (  # noqa: E402
    InformationPropagationNetwork,
    L2SelfAttention,
    MetricAttention,
    MultiheadMetricAttention,
    SelfAttention,
    make_attention,
)
from continuum_attention.learn import experiments as E  # noqa: E402
from continuum_attention.learn import training as T  # noqa: E402

torch.set_num_threads(1)
KINDS = ("self", "l2", "metric")


def _perplexity(layer, x) -> float:
    """Mean over rows of exp(entropy of the attention row), averaged over heads."""
    with torch.no_grad():
        s = layer.attention_weights(x)
        ent = -(s * torch.log(s.clamp_min(1e-300))).sum(-1)
    return float(torch.exp(ent).mean())


# -- 1. temperature ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [16, 64, 512])
@pytest.mark.parametrize("heads", [1, 8])
def test_initial_row_perplexity_matches_self_attention_within_factor_2(dim, heads):
    """Unit-variance tokens, N = 128: self-attention's perplexity is about N exp(-1/2) = 78 (measured 80 .. 86);
    with the default temperature the distance kinds give 1.10 .. 1.58 times that (measured), while tau = 1
    collapses them to the identity (perplexity 1.00 measured) for key_dim >= 32. Bounds: the issue's factor 2."""
    torch.manual_seed(0)
    x = torch.randn(1, 128, dim, dtype=torch.float64)
    ref = _perplexity(SelfAttention(dim, heads=heads).double(), x)
    assert 0.4 * 128 < ref < 0.8 * 128  # N exp(-1/2) = 0.61 N
    for kind in ("l2", "metric"):
        torch.manual_seed(1)
        layer = make_attention(kind, dim, heads=heads).double()
        assert layer.temperature == 2.0 * layer.key_dim
        ratio = _perplexity(layer, x) / ref
        assert 0.5 < ratio < 2.0, (kind, dim, heads, ratio)
        if layer.key_dim >= 32:  # the symptom, for contrast: no temperature -> identity
            torch.manual_seed(1)
            plain = make_attention(kind, dim, heads=heads, temperature=1.0).double()
            assert _perplexity(plain, x) < 2.0


def test_temperature_is_a_choice_of_eps_and_validated():
    layer = L2SelfAttention(4, eps=0.3, temperature=2.5)
    assert layer.temperature == 2.5 and math.isclose(layer.effective_eps, 0.75)
    assert SelfAttention(4).temperature == 1.0
    assert "temperature=8" in repr(MetricAttention(4))  # 2 * key_dim, key_dim = 4
    for bad in (0.0, -1.0, "hot"):
        with pytest.raises(ValueError, match="temperature"):
            MetricAttention(4, temperature=bad)


# -- 2. parameter budget ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim,heads", [(16, 1), (64, 1), (512, 1), (64, 8), (512, 8)])
def test_parameter_counts_match_self_attention_within_5_percent(dim, heads, capsys):
    """Whole layer (pseudo-metric, values, output map) and pseudo-metric alone, against self-attention (the
    issue's 5 %); measured: layer within 0.34 %, pseudo-metric within 0.68 % (metric-attention, d = 64, 8 heads,
    where phi's width is rounded); L2 exactly equal."""
    counts, metric_counts = {}, {}
    for kind in KINDS:
        layer = make_attention(kind, dim, heads=heads)
        counts[kind] = T.count_parameters(layer)
        own = {"w_value"} | ({"out.weight", "out.bias"})
        metric_counts[kind] = sum(p.numel() for n, p in layer.named_parameters() if n not in own)
    with capsys.disabled():
        print(f"\n  d={dim} heads={heads}: layer {counts}, pseudo-metric {metric_counts}")
    for kind in ("l2", "metric"):
        assert abs(counts[kind] / counts["self"] - 1) < 0.05, (kind, counts)
        assert abs(metric_counts[kind] / metric_counts["self"] - 1) < 0.05, (kind, metric_counts)
    assert metric_counts["self"] == 2 * dim * dim  # W_Q, W_K: 2 d (d / heads) per head


# -- 3. SDPA path ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("heads", [1, 3])
def test_sdpa_path_equals_explicit_in_float64(kind, heads):
    """forward (scaled_dot_product_attention + per-key bias) vs the explicit S; reaches ~1e-15."""
    torch.manual_seed(2)
    layer = make_attention(kind, 6, heads=heads).double()
    x = 3.0 + torch.randn(2, 9, 6, dtype=torch.float64)
    y = torch.randn(2, 5, 6, dtype=torch.float64)
    mask = torch.rand(2, 9, 5, generator=torch.Generator().manual_seed(3)) > 0.3
    mask[:, :, 0] = True
    for args in ((x,), (x, y), (x, y, mask)):
        layer.backend = "sdpa"
        fast = layer(*args)
        layer.backend = "explicit"
        slow = layer(*args)
        np.testing.assert_allclose(fast.detach().numpy(), slow.detach().numpy(), rtol=1e-12, atol=1e-12)
    layer.backend = "sdpa"
    xs = x.clone().requires_grad_(True)
    g_fast = torch.autograd.grad(layer(xs, y, mask).square().sum(), xs)[0]
    layer.backend = "explicit"
    g_slow = torch.autograd.grad(layer(xs, y, mask).square().sum(), xs)[0]
    np.testing.assert_allclose(g_fast.numpy(), g_slow.numpy(), rtol=1e-11, atol=1e-12)


def test_sdpa_path_matches_attention_operator_to_1e13():
    """The SDPA forward of the exported metric equals AttentionOperator at eps_eff (reaches ~1e-15)."""
    attention = pytest.importorskip("continuum_attention.attention")
    torch.manual_seed(4)
    for layer in (L2SelfAttention(2, eps=0.3, value=False).double(), MetricAttention(2, value=False).double(),
                  MetricAttention(3, heads=3, value=False, out_proj=False, out_dim=9).double()):
        x = torch.rand(1, 25, layer.dim, dtype=torch.float64)
        out = layer(x)[0, :, : layer.dim].detach().numpy()  # head 0
        metric = layer.to_metric(0) if isinstance(layer, L2SelfAttention) else layer.to_learned(0)
        op = attention.AttentionOperator(x[0].numpy(), layer.effective_eps, metric=metric)
        np.testing.assert_allclose(op.apply(x[0].numpy()), out, rtol=1e-13, atol=1e-13)


def test_projected_metric_attention_export_and_jacobian():
    torch.manual_seed(5)
    layer = MetricAttention(4, heads=2).double()
    assert layer.key_dim == 2 and layer.proj is not None and not layer.residual
    x = torch.randn(1, 6, 4, dtype=torch.float64)
    learned = layer.to_learned(1)
    np.testing.assert_allclose(learned.pairwise(x[0].numpy(), x[0].numpy()),
                               layer.pseudo_metric(x, x)[0, 1].detach().numpy(), rtol=1e-10, atol=1e-12)
    jac = torch.autograd.functional.jacobian(lambda p: layer.phi(p[None])[1, 0], x[0, 0])
    np.testing.assert_allclose(learned.tensor(x[0, :1].numpy())[0], (jac.T @ jac).numpy(), rtol=1e-10, atol=1e-12)


# -- 4. nn.MultiheadAttention call form ---------------------------------------------------------------------


def _copy_of_mha(mha: torch.nn.MultiheadAttention, batch_first: bool) -> MultiheadMetricAttention:
    """Self-attention drop-in with MHA's weights (MHA built with bias=False); tau = sqrt(d_head)."""
    e, h = mha.embed_dim, mha.num_heads
    dh = e // h
    ours = MultiheadMetricAttention(e, h, kind="self", batch_first=batch_first, temperature=math.sqrt(dh)).double()
    wq, wk, wv = mha.in_proj_weight.detach().chunk(3)
    with torch.no_grad():
        ours.attn.w_query.copy_(wq.view(h, dh, e))
        ours.attn.w_key.copy_(wk.view(h, dh, e))
        ours.attn.w_value.copy_(wv.view(h, dh, e))
        ours.attn.out.weight.copy_(mha.out_proj.weight)
        ours.attn.out.bias.zero_()
    return ours


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_call_form_equals_nn_multiheadattention(batch_first):
    """Shapes, mask polarity (True = masked out), float masks, key padding, weights averaged or per head;
    equal to MHA to ~1e-15 in float64."""
    torch.manual_seed(6)
    e, h, n, lq, s = 8, 2, 3, 5, 4
    mha = torch.nn.MultiheadAttention(e, h, bias=False, batch_first=batch_first).double()
    ours = _copy_of_mha(mha, batch_first)
    shape_q, shape_k = ((n, lq, e), (n, s, e)) if batch_first else ((lq, n, e), (s, n, e))
    q, k, v = (torch.randn(sh, dtype=torch.float64) for sh in (shape_q, shape_k, shape_k))
    am = torch.rand(lq, s, generator=torch.Generator().manual_seed(7)) > 0.6
    am[:, 1] = False
    kpm = torch.zeros(n, s, dtype=torch.bool)
    kpm[0, 3] = True
    amf = torch.randn(n * h, lq, s, dtype=torch.float64)
    cases = [dict(), dict(attn_mask=am), dict(key_padding_mask=kpm), dict(attn_mask=am, key_padding_mask=kpm),
             dict(attn_mask=amf), dict(attn_mask=am, average_attn_weights=False), dict(need_weights=False, attn_mask=am)]
    for kw in cases:
        ref_out, ref_w = mha(q, k, v, **kw)
        out, w = ours(q, k, v, **kw)
        assert out.shape == ref_out.shape
        torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
        if ref_w is None:
            assert w is None
        else:
            assert w.shape == ref_w.shape
            torch.testing.assert_close(w, ref_w, rtol=1e-12, atol=1e-12)
    # unbatched (L, E)
    ref_out, ref_w = mha(q[:, 0] if not batch_first else q[0], k[:, 0] if not batch_first else k[0],
                         v[:, 0] if not batch_first else v[0])
    out, w = ours(q[:, 0] if not batch_first else q[0], k[:, 0] if not batch_first else k[0],
                  v[:, 0] if not batch_first else v[0])
    torch.testing.assert_close(out, ref_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w, ref_w, rtol=1e-12, atol=1e-12)


def test_fully_masked_row_gives_what_mha_gives():
    """MHA(need_weights=False) in training mode gives a zero attention output for a row with every key masked
    (its need_weights=True path gives NaN); the drop-in gives the zero output on both paths."""
    torch.manual_seed(8)
    mha = torch.nn.MultiheadAttention(8, 2, bias=False, batch_first=True).double()
    ours = _copy_of_mha(mha, True)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    am = torch.zeros(5, 5, dtype=torch.bool)
    am[2] = True
    ref, _ = mha(x, x, x, attn_mask=am, need_weights=False)
    assert torch.all(ref[:, 2] == 0.0)
    for nw in (False, True):
        out, w = ours(x, x, x, attn_mask=am, need_weights=nw)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        if nw:
            assert torch.all(w[:, 2] == 0.0)
    for kind in ("l2", "metric"):
        layer = MultiheadMetricAttention(8, 2, kind=kind, batch_first=True).double()
        xs = x.clone().requires_grad_(True)
        out, _ = layer(xs, xs, xs, attn_mask=am, need_weights=False)
        torch.testing.assert_close(out[:, 2], layer.attn.out.bias.expand(2, -1))
        out.sum().backward()
        assert torch.all(torch.isfinite(xs.grad))


def test_multihead_bad_arguments_name_the_parameter():
    layer = MultiheadMetricAttention(4, 2)
    x = torch.randn(3, 2, 4)
    with pytest.raises(ValueError, match="query"):
        layer(torch.randn(3, 2, 5), x, x)
    with pytest.raises(ValueError, match="attn_mask"):
        layer(x, x, x, attn_mask=torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="key_padding_mask"):
        layer(x, x, x, key_padding_mask=torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="attn_mask"):
        layer(x, x, x, attn_mask=torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="dropout"):
        MultiheadMetricAttention(4, 2, dropout=0.1)
    with pytest.raises(ValueError, match="backend"):
        MetricAttention(4, backend="flash")


@pytest.mark.parametrize("kind", KINDS)
def test_torch_compile_fullgraph(kind):
    """Dynamo traces the whole layer, masks included, with no graph break (fullgraph=True), forward and
    backward (aot_eager backend: AOTAutograd without C++; ~3 s each). The inductor backend was measured
    separately: 55 s to compile on the loaded 2-core CPU, output equal to 6e-8 in float32."""
    torch.manual_seed(9)
    layer = MultiheadMetricAttention(8, 2, kind=kind, batch_first=True)
    x = torch.randn(2, 5, 8, requires_grad=True)
    am = torch.zeros(5, 5, dtype=torch.bool)
    am[2] = True
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    out = compiled(x, x, x, attn_mask=am, need_weights=False)[0]
    torch.testing.assert_close(out, layer(x, x, x, attn_mask=am, need_weights=False)[0])
    out.sum().backward()
    assert torch.all(torch.isfinite(x.grad))


# -- 5. the paper's IPN, ablations, minibatches ------------------------------------------------------------


def test_ipn_is_the_papers_by_default_with_ablations():
    net = InformationPropagationNetwork(2, 2)
    assert net.mlps is None and len(net.attn) == 2
    assert E.parse_kind("metric") == ("metric", False) and E.parse_kind("l2+mlp") == ("l2", True)
    assert E.parse_kind("none") == ("none", True)
    for bad in ("metric+relu", "dot"):
        with pytest.raises(ValueError, match="kind"):
            E.parse_kind(bad)
    with pytest.raises(ValueError, match="block_mlp"):
        InformationPropagationNetwork(2, 2, attention="none")
    mlp_only = InformationPropagationNetwork(2, 2, attention="none", block_mlp=True).double()
    x = torch.randn(7, 2, dtype=torch.float64)
    # no attention: each point is classified on its own
    torch.testing.assert_close(mlp_only(x)[:3], mlp_only(x[:3]))


def test_minibatch_attention_bounds_the_sequence_length():
    """batch_points=B: every attention call sees at most B points, all points are predicted."""
    x, y, test = E.moons_data(200, 100)
    cfg = E.settings("two_moons", True, {"batch_points": 64})
    trial = E.ipn_trial(x, y, test, "metric", 0, cfg)
    seen = []
    hook = trial.model.attn[0].register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    loss = trial.train_epoch()
    acc = trial.test_accuracy()
    hook.remove()
    assert max(seen) == 64 and sum(seen[:5]) == 300  # 5 training steps of 64 + one of 44, then evaluation
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0


def test_mnist_path_defaults_to_minibatches(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=rng.integers(0, 256, (300, 4, 4), dtype=np.uint8), y_train=rng.integers(0, 3, 300),
             x_test=rng.integers(0, 256, (100, 4, 4), dtype=np.uint8), y_test=rng.integers(0, 3, 100))
    result = E.digits(quick=True, seeds=1, epochs=1, mnist=path, kinds=["metric"], width=8, mlp_width=8,
                      batch_points=None)
    assert result["config"]["batch_points"] == 1024 and result["config"]["temperature"] == "auto"
    assert set(result["baselines"]) == {"logistic", "knn5"}


def test_digits_split_is_stratified_with_500_test_points():
    x, y, test = E.digits_data(test_size=500)
    assert test.sum() == 500 and len(y) == 1797
    frac = np.bincount(y[test], minlength=10) / np.bincount(y, minlength=10)
    assert np.all(np.abs(frac - 500 / 1797) < 0.02)
    with pytest.raises(ValueError, match="test_size"):
        E.digits_data(subset=300, test_size=500)


# -- 6. statistics ----------------------------------------------------------------------------------------


def test_paired_statistics_and_interval():
    res = {"seeds": np.arange(5), "kinds": {"a": {"final_accuracy": np.array([0.9, 0.8, 0.85, 0.95, 0.9])},
                                            "b": {"final_accuracy": np.array([0.8, 0.8, 0.80, 0.90, 0.85])}}}
    (row,) = T.paired_statistics(res)
    d = np.array([0.1, 0.0, 0.05, 0.05, 0.05])
    assert math.isclose(row["mean_diff"], d.mean())
    half = 2.7764451051977987 * d.std(ddof=1) / math.sqrt(5)  # t_{0.975, 4}
    assert math.isclose(row["ci_high"] - row["mean_diff"], half, rel_tol=1e-9)
    assert (row["wins"], row["ties"], row["losses"]) == (4, 1, 0)
    assert 0.01 < row["p_ttest"] < 0.05  # t = 3.54, 4 dof: p = 0.024
    mean, lo, hi = T.mean_interval(np.array([1.0, 1.0]))
    assert mean == lo == hi == 1.0


def test_quick_two_moons_with_ablations_records_temperature(tmp_path):
    result = E.two_moons(quick=True, seeds=2, epochs=5, kinds=["metric", "none", "metric+mlp"], n_test=100)
    assert list(result["kinds"]) == ["metric", "none", "metric+mlp"]
    assert result["config"]["temperature"] == "auto" and result["temperatures"]["metric"] == 20.0  # 2 * width
    assert "paired differences" in result["table"] and "logistic (baseline)" in result["table"]
    paths = E.finish(result, "two_moons", out=tmp_path, figures=None)
    from continuum_attention import storage

    arrays, meta = storage.load(paths["h5"])
    assert meta["config"]["temperature"] == "auto" and meta["config"]["kinds"] == ["metric", "none", "metric+mlp"]


# -- 7. the bridge's maximum principle ---------------------------------------------------------------------


def test_overshoot_measure_both_sides():
    from continuum_attention.learn.bridge import overshoot

    assert overshoot(np.array([0.0, 0.5, 1.0])) == 0.0
    assert math.isclose(overshoot(np.array([-0.085, 0.5, 1.02])), 0.085)
    assert math.isclose(overshoot(np.array([0.1, 1.086])), 0.086)


def test_kernel_heat_flow_keeps_the_maximum_principle_for_an_anisotropic_metric():
    """The kernel flow of an indicator under a metric with anisotropy 1e4 (rotated) stays in [0, 1] up to
    round-off (convex combinations; reached 9e-15 after 40 steps), while it still mixes."""
    from continuum_attention.learn.bridge import kernel_heat_flow
    from continuum_attention.metrics import Mahalanobis

    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (300, 2))
    c, s = np.cos(0.6), np.sin(0.6)
    rot = np.array([[c, -s], [s, c]])
    metric = Mahalanobis(rot @ np.diag([100.0, 0.01]) @ rot.T)
    h0 = (pts[:, 0] > 0).astype(float)
    queries = rng.uniform(-1, 1, (50, 2))
    at_p, at_q = kernel_heat_flow(metric, pts, h0, queries, 0.2, 3, 0.01)
    assert at_p.shape == (3, 300) and at_q.shape == (3, 50)
    np.testing.assert_array_equal(at_p[0], h0)
    assert min(at_p.min(), at_q.min()) >= -1e-13 and max(at_p.max(), at_q.max()) <= 1.0 + 1e-13
    assert np.mean((at_p[-1] > 0.01) & (at_p[-1] < 0.99)) > 0.05  # mixing: some points strictly inside


def test_pde_heat_flow_overshoot_for_rotated_anisotropic_metric_is_as_documented():
    """The bridge's implicit-Euler PDE flow (40 x 40 grid, t = 0.1, dt = 1e-3, two-moons KDE) under a constant
    metric with eigenvalue ratio 100 rotated by 30 degrees leaves [0, 1] by 0.121 (docs/experiments.md; 0 when
    the same g is axis-aligned); the kernel flow under the same metric stays in [0, 1]."""
    from continuum_attention.domains import Box
    from continuum_attention.grid import Grid
    from continuum_attention.learn import bridge as B
    from continuum_attention.metrics import Mahalanobis

    x, y, test = E.moons_data()
    x = x.astype(float)
    dens = B.kde_density(x[~test])
    h0 = B._nearest_label(Grid(Box(*B.BOX), 40).points, x[~test], y[~test])
    lam = np.diag([2.0, 0.02]) / 1.01  # ratio 100, mean tr g / 2 = 1
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    rot = np.array([[c, -s], [s, c]])
    over = {}
    for name, g in (("aligned", lam), ("rotated", rot @ lam @ rot.T)):
        over[name] = B.overshoot(B.heat_flow(Mahalanobis(g), dens, h0, 0.1, 3, 40, 1e-3))
    assert over["aligned"] < 1e-12
    assert 0.06 < over["rotated"] < 0.25, over  # reached 0.121
    at_p, at_q = B.kernel_heat_flow(Mahalanobis(rot @ lam @ rot.T), x[~test], y[~test].astype(float), x[test],
                                    0.1, 3, 0.01)
    assert min(at_p.min(), at_q.min()) >= -1e-12 and max(at_p.max(), at_q.max()) <= 1.0 + 1e-12


def test_command_line_selects_kinds_ablations_and_records_load(tmp_path, capsys):
    result = E.main("two_moons", ["--quick", "--seeds", "2", "--epochs", "2", "--kinds", "metric", "--ablations",
                                  "--temperature", "3", "--out", str(tmp_path), "--figures", str(tmp_path)])
    assert list(result["kinds"]) == ["metric", "none", "metric+mlp"]
    cfg = result["config"]
    assert cfg["temperature"] == 3.0 and result["temperatures"]["metric"] == 3.0
    assert len(cfg["load_average"]["before"]) == 3 and (tmp_path / "learn_two_moons.h5").exists()
    assert "load average before" in capsys.readouterr().out
