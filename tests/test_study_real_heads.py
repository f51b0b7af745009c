"""Study real_heads on a tiny random BERT (the study itself loads all-MiniLM-L6-v2: reproduce runs it)."""

import numpy as np

from continuum_attention.real import extract
from continuum_attention.storage import load_result, save_result
from continuum_attention.studies import all_studies
from continuum_attention.studies import real_heads as study
from test_real import SEQS, tiny_bert

CFG = {"n_sequences": len(SEQS), "max_length": 64, "min_words": 6, "max_words": 30, "model": "tiny random BERT",
       "eps": 0.5, "span_rtol": 1e-6, "spectrum_rtol": 1e-8}


def test_synthetic_identity_is_exact():
    assert study.synthetic_identity_error(0) < 1e-13  # ~2e-15 reached
    assert study.synthetic_identity_error(5) < 1e-13


def test_analyse_a_tiny_model_and_store_it(tmp_path):
    ex = extract(tiny_bert(), SEQS)
    result = study.analyse(ex, [f"sentence {i}" for i in range(len(SEQS))], CFG, seed=0)
    by_name = {c.quantity: c for c in result.checks}
    for quantity in ("max |P recomputed - P model| (every head, sequence, entry)",
                     "logits rebuilt from the split, max relative error",
                     "synthetic identity: DotProduct vs Mahalanobis(A_s/2) + key potential"):
        assert by_name[quantity].ok, by_name[quantity]
    assert result.arrays["tv_metric"].shape == (2, 2)
    (l0, h0), (l1, h1) = result.arrays["example_heads"]
    assert result.arrays["tv_metric"][l0, h0] <= result.arrays["tv_metric"][l1, h1]
    P = result.arrays["example_0_P"]
    assert np.allclose(P.sum(1), 1.0) and P.shape == result.arrays["example_0_S"].shape
    assert result.figure is not None and len(result.figure.axes) >= 8
    stored = load_result(save_result(tmp_path / "real_heads.h5", result))
    assert np.array_equal(stored.arrays["tv_metric"], result.arrays["tv_metric"])
    assert [c.quantity for c in stored.checks] == [c.quantity for c in result.checks]
    assert stored.config["corpus_sha256"] == result.config["corpus_sha256"]


def test_registered_for_reproduce():
    assert "real_heads" in all_studies()
