"""Per-head measures of a pretrained head against the metric case (THEORY.md section 7), NumPy only.

A head's score is a(x, y) = x^T A y + c . y + (terms in x alone), A = W_Q^T W_K / sqrt(d_head)
(:class:`~continuum_attention.metrics.DotProductSplit`). The paper's theory (its Assumption 2: the
pseudo-metric is a metric, f = d^2) needs A = A_s positive definite on the tokens. Measured here:

* ``antisymmetric_share`` ||A_a||_F / ||A||_F and the spectrum of A_s on the span of the tokens
  (:func:`token_span`, :func:`symmetric_spectrum`): counts of positive, negative and near-zero eigenvalues,
  and the share of the spectrum's absolute mass that is negative;
* the *metric model* of a head (:func:`metric_model`): the Mahalanobis part of the identity, with
  M_+ = (A_s)_+ / 2 (the positive eigenspace of A_s; the negative one is an anti-metric and is dropped), and
  the identity's key potential u(y) = y^T A_s y / 2 + c . y; i.e. S_model(x, y) proportional to
  exp(-(x - y)^T M_+ (x - y) + u(y)); and the same metric part with the key potential fitted to the head's
  rows of each sentence (:func:`fit_key_potential`, KL-optimal). Also the *symmetric model* (A_a dropped
  only), which is the identity with A_a = 0 whatever the sign of A_s;
* per row of attention P (:func:`row_measures`): total-variation distance to each model,
  TV_i = sum_j |P_ij - S_ij| / 2; whether the highest-weight key is the token itself (the metric case),
  the [CLS] or [SEP] token (first or last position), or another token (Theorem 5's A_x away from x); the
  entropy H_i = -sum_j P_ij log P_ij, its effective number of neighbours exp(H_i) and H_i / log n.

All attention rows are :class:`~continuum_attention.attention.AttentionOperator` matrices at eps = 1/2 (the
NumPy backend: the rows are short, n <= 64, where the Numba kernels' parallel start-up dominates).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from .._validation import positive_float, real_array
from ..attention import AttentionOperator
from ..metrics import DotProduct, DotProductSplit, Mahalanobis

__all__ = ["token_span", "symmetric_spectrum", "MetricModel", "metric_model", "fit_key_potential",
           "head_attention", "symmetric_model", "symmetric_model_attention", "row_measures", "measure_heads"]

EPS = 0.5  # vanilla attention


def token_span(tokens, rtol: float = 1e-6) -> np.ndarray:
    """Orthonormal basis (D, r) of the linear span of the tokens (rows of the stacked (T, D) array).

    r counts the singular values above ``rtol`` times the largest (1e-6: the states come from float32).
    """
    X = real_array(tokens, "tokens", ndim=2)
    rtol = positive_float(rtol, "rtol")
    _, s, Vt = np.linalg.svd(X, full_matrices=False)
    return np.ascontiguousarray(Vt[s > rtol * s[0]].T)


def symmetric_spectrum(split: DotProductSplit, basis: np.ndarray | None = None, rtol: float = 1e-8) -> dict:
    """Eigenvalues of A_s restricted to a span (B^T A_s B, B orthonormal (D, r); whole space by default).

    Computed from the rank-2m factor of :meth:`DotProductSplit.symmetric_eigh`: with A_s = V diag(lambda)
    V^T and B^T V = U2 R2 (thin QR), the nonzero eigenvalues of B^T A_s B are those of R2 diag(lambda)
    R2^T; the other r - rank ones are zero. Returns ``eigenvalues`` (the nonzero part, ascending),
    ``n_positive``, ``n_negative``, ``n_zero`` (|lambda| <= rtol max |lambda|, out of r) and
    ``negative_share`` = sum |lambda_-| / sum |lambda|.
    """
    if not isinstance(split, DotProductSplit):
        raise TypeError(f"split must be a DotProductSplit, got split={split!r}")
    lam, V = split.symmetric_eigh()
    if basis is None:
        r = split.dim
    else:
        B = real_array(basis, "basis", ndim=2)
        if B.shape[0] != split.dim:
            raise ValueError(f"basis must have {split.dim} rows, got shape {B.shape}")
        r = B.shape[1]
        _, R2 = np.linalg.qr(B.T @ V)
        lam = np.linalg.eigvalsh(R2 @ np.diag(lam) @ R2.T)
    tol = rtol * max(float(np.max(np.abs(lam), initial=0.0)), np.finfo(float).tiny)
    pos, neg = lam > tol, lam < -tol
    mass = float(np.sum(np.abs(lam[pos | neg])))
    return {"eigenvalues": np.sort(lam), "n_positive": int(pos.sum()), "n_negative": int(neg.sum()),
            "n_zero": int(r - pos.sum() - neg.sum()),
            "negative_share": float(np.sum(np.abs(lam[neg])) / mass) if mass > 0 else 0.0}


@dataclass(frozen=True)
class MetricModel:
    """The metric part of a head: f_M(x, y) = (x - y)^T M_+ (x - y), M_+ = V diag(lambda_+) V^T / 2, and u.

    ``basis`` (D, k) spans the positive eigenspace; ``metric`` is Mahalanobis(diag(lambda_+) / 2) on the
    coordinates ``x @ basis``; ``split`` supplies u.
    """

    split: DotProductSplit
    basis: np.ndarray
    metric: Mahalanobis

    def attention(self, x: np.ndarray) -> np.ndarray:
        """S_model (n, n) at eps = 1/2: exp(-(x - y)^T M_+ (x - y) + u(y)), row-normalised."""
        op = AttentionOperator(x @ self.basis, EPS, metric=self.metric, key_potential=self.split.key_potential(x),
                               backend="numpy", truncate=False)
        return op.dense()


    def log_kernel(self, x: np.ndarray) -> np.ndarray:
        """-(x_i - x_j)^T M_+ (x_i - x_j) (n, n): the log-weights of the metric part at eps = 1/2."""
        z = x @ self.basis
        return -self.metric.pairwise(z, z)

    def attention_with(self, x: np.ndarray, potential: np.ndarray) -> np.ndarray:
        """The metric part with another key potential w: exp(-(x - y)^T M_+ (x - y) + w(y)), row-normalised."""
        op = AttentionOperator(x @ self.basis, EPS, metric=self.metric, key_potential=potential, backend="numpy",
                               truncate=False)
        return op.dense()


def fit_key_potential(P: np.ndarray, log_kernel: np.ndarray, start: np.ndarray | None = None, *,
                      ridge: float = 1e-8, iterations: int = 50, tol: float = 1e-10) -> np.ndarray:
    r"""The key potential w that brings softmax_j(log_kernel_ij + w_j) closest to the rows P_i (KL).

    Minimises the convex L(w) = sum_i [logsumexp_j(F_ij + w_j) - sum_j P_ij (F_ij + w_j)]
    + (ridge / 2) |w - start|^2 by Newton steps with backtracking (gradient sum_i (Q_ij - P_ij), Hessian
    sum_i (diag Q_i - Q_i^T Q_i)); the small ridge fixes the free constant and keeps w finite for keys that no
    row attends. Stops when the gradient's largest entry is below ``tol`` (or after ``iterations`` steps).
    The best metric model for the given metric in the KL sense (not in TV, which is reported).
    """
    P = real_array(P, "P", ndim=2)
    F = real_array(log_kernel, "log_kernel", ndim=2)
    n = P.shape[1]
    if F.shape != P.shape:
        raise ValueError(f"log_kernel must have the shape of P {P.shape}, got {F.shape}")
    w0 = np.zeros(n) if start is None else real_array(start, "start", ndim=1)
    w = w0.copy()

    def value(w):
        Z = F + w
        m = Z.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(Z - m).sum(axis=1))
        Q = np.exp(Z - lse[:, None])
        return float(lse.sum() - np.sum(P * Z) + 0.5 * ridge * np.sum((w - w0) ** 2)), Q

    L, Q = value(w)
    for _ in range(iterations):
        g = Q.sum(axis=0) - P.sum(axis=0) + ridge * (w - w0)
        if np.max(np.abs(g)) < tol:
            break
        H = np.diag(Q.sum(axis=0)) - Q.T @ Q + ridge * np.eye(n)
        step = np.linalg.solve(H, -g)
        t = 1.0
        while t > 1e-8:
            L_new, Q_new = value(w + t * step)
            if L_new <= L + 1e-4 * t * float(g @ step):
                break
            t *= 0.5
        else:
            break
        w, L, Q = w + t * step, L_new, Q_new
    return w


def metric_model(split: DotProductSplit, rtol: float = 1e-8) -> MetricModel:
    """The :class:`MetricModel` of a head: A_s = V diag(lambda) V^T, keep lambda > rtol max |lambda|."""
    lam, V = split.symmetric_eigh()
    keep = lam > rtol * max(float(np.max(np.abs(lam))), np.finfo(float).tiny)
    if not np.any(keep):
        raise ValueError("A_s has no positive eigenvalue: the head has no metric part")
    return MetricModel(split, np.ascontiguousarray(V[:, keep]), Mahalanobis(np.diag(0.5 * lam[keep])))


def head_attention(dot: DotProduct, x: np.ndarray) -> np.ndarray:
    """The head's own attention P (n, n) at eps = 1/2 (AttentionOperator of the DotProduct)."""
    return AttentionOperator(x, EPS, metric=dot, backend="numpy", truncate=False).dense()


def symmetric_model(dot: DotProduct) -> DotProduct:
    """The head with A_a dropped, as a DotProduct of the same rank: Q' = [Q; K], K' = [K; Q] / 2.

    Q'^T K' = (Q^T K + K^T Q) / 2 = A_s exactly; the key term c . y is a key potential
    (:func:`symmetric_model_attention`), the query terms cancel.
    """
    return DotProduct(np.vstack([dot.Q, dot.K]), 0.5 * np.vstack([dot.K, dot.Q]))


def symmetric_model_attention(sym: DotProduct, split: DotProductSplit, x: np.ndarray) -> np.ndarray:
    """exp(x^T A_s y + c . y) row-normalised at eps = 1/2 (``sym`` from :func:`symmetric_model`)."""
    return AttentionOperator(x, EPS, metric=sym, key_potential=x @ split.key_linear, backend="numpy",
                             truncate=False).dense()


def row_measures(P: np.ndarray, models: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-row numbers of one attention matrix P (n, n), first and last positions being [CLS] and [SEP].

    ``tv_NAME`` for each model S in ``models``: sum_j |P_ij - S_ij| / 2; ``argmax`` the highest-weight key;
    ``self``, ``special``, ``other`` (booleans: it is i, it is position 0 or n-1 and not i, else);
    ``previous`` (it is i - 1, whatever the class above);
    ``entropy`` H_i, ``neighbours`` exp(H_i), ``normalised_entropy`` H_i / log n.
    """
    n = P.shape[0]
    out = {f"tv_{name}": 0.5 * np.abs(P - S).sum(axis=1) for name, S in models.items()}
    j = np.argmax(P, axis=1)
    i = np.arange(n)
    out["self"] = j == i
    out["special"] = ((j == 0) | (j == n - 1)) & (j != i)
    out["other"] = ~out["self"] & ~out["special"]
    out["previous"] = j == i - 1  # a positional head: the top key is the preceding token (not exclusive)
    with np.errstate(divide="ignore", invalid="ignore"):
        H = -np.sum(np.where(P > 0, P * np.log(P), 0.0), axis=1)
    out["entropy"] = H
    out["neighbours"] = np.exp(H)
    out["normalised_entropy"] = H / np.log(n) if n > 1 else np.zeros(n)
    return out


def _one_blas_thread():
    """BLAS limited to one thread (threadpoolctl, when installed): the matrices here are small (n <= 64,
    D = 384), and on a shared 2-core machine OpenBLAS threads oversubscribe (measured: a 384 x 384 eigh
    took 1.7 s with its default threads under load 4.9, 0.04 s with one)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def measure_heads(extraction, *, span_rtol: float = 1e-6, spectrum_rtol: float = 1e-8) -> dict[str, np.ndarray]:
    """Every measure of this module for every head of an :class:`~continuum_attention.real.model.Extraction`.

    Returns (L, H) arrays: ``antisymmetric_share``, ``n_positive``, ``n_negative``, ``n_zero``,
    ``negative_share`` (A_s on the span of the layer's tokens, all sequences stacked; ``span_rank`` (L,)),
    ``pair_positive_share`` (share of token pairs i != j of a sequence with (x_i - x_j)^T A_s (x_i - x_j)
    > 0, where the metric part is a squared distance), the means over all rows of ``tv_metric``,
    ``tv_fitted``, ``tv_symmetric``, ``self``, ``special``, ``other``, ``previous``, ``entropy``,
    ``neighbours``, ``normalised_entropy`` (:func:`row_measures`; ``tv_fitted``: the metric part with the key
    potential of :func:`fit_key_potential`, per sentence, started from u), ``metric_self`` (the self share
    of the metric model), ``self_content`` (the self share over the rows of the word pieces only: first and
    last positions left out), ``recompute_error``
    (max |P - P_model| against the model's own attention probabilities) and ``identity_error`` (max
    |a - a_split| / max |a| of the logits rebuilt by :meth:`DotProductSplit.scores`, first sequence);
    ``rows_tv_metric`` (L, H, T), the per-row distances.
    """
    L, H = extraction.n_layers, extraction.n_heads
    keys = ("antisymmetric_share", "n_positive", "n_negative", "n_zero", "negative_share", "pair_positive_share",
            "tv_metric", "tv_fitted", "tv_symmetric", "self", "special", "other", "previous", "entropy",
            "neighbours", "normalised_entropy", "metric_self", "self_content", "recompute_error", "identity_error")
    out = {k: np.zeros((L, H)) for k in keys}
    T = sum(x.shape[1] for x in extraction.hidden)
    out["rows_tv_metric"] = np.zeros((L, H, T))
    out["span_rank"] = np.zeros(L, dtype=np.int64)
    with _one_blas_thread():
        for l in range(L):
            basis = token_span(np.vstack([x[l] for x in extraction.hidden]), span_rtol)
            out["span_rank"][l] = basis.shape[1]
            for h in range(H):
                w = extraction.heads[l][h]
                dot = w.dot_product()
                split = dot.split()
                spec = symmetric_spectrum(split, basis, spectrum_rtol)
                model, sym = metric_model(split, spectrum_rtol), symmetric_model(dot)
                rows: dict[str, list] = {}
                pairs_pos = pairs = 0
                worst = 0.0
                for s, (x, att) in enumerate(zip(extraction.hidden, extraction.attentions)):
                    xl = x[l]
                    P = head_attention(dot, xl)
                    worst = max(worst, float(np.max(np.abs(P - att[l, h]))))
                    S_model = model.attention(xl)
                    u = split.key_potential(xl)
                    S_fit = model.attention_with(xl, fit_key_potential(P, model.log_kernel(xl), u))
                    r = row_measures(P, {"metric": S_model, "fitted": S_fit,
                                         "symmetric": symmetric_model_attention(sym, split, xl)})
                    r["metric_self"] = np.argmax(S_model, axis=1) == np.arange(xl.shape[0])
                    r["self_content"] = r["self"][1:-1]  # rows of the word pieces, [CLS] and [SEP] left out
                    for k, v in r.items():
                        rows.setdefault(k, []).append(v)
                    g = (xl @ split.symmetric) * xl
                    quad = g.sum(1)[:, None] + g.sum(1)[None, :] - 2.0 * (xl @ split.symmetric @ xl.T)
                    off = ~np.eye(xl.shape[0], dtype=bool)
                    pairs_pos += int(np.sum(quad[off] > 0))
                    pairs += int(off.sum())
                    if s == 0:
                        a = w.logits(xl)
                        out["identity_error"][l, h] = float(np.max(np.abs(split.scores(xl, xl) - a)) / np.max(np.abs(a)))
                for k in ("tv_metric", "tv_fitted", "tv_symmetric", "self", "special", "other", "previous",
                          "entropy", "neighbours", "normalised_entropy", "metric_self", "self_content"):
                    out[k][l, h] = float(np.mean(np.concatenate(rows[k])))
                out["rows_tv_metric"][l, h] = np.concatenate(rows["tv_metric"])
                out["antisymmetric_share"][l, h] = split.antisymmetric_share
                for k in ("n_positive", "n_negative", "n_zero", "negative_share"):
                    out[k][l, h] = spec[k]
                out["pair_positive_share"][l, h] = pairs_pos / max(pairs, 1)
                out["recompute_error"][l, h] = worst
    return out
