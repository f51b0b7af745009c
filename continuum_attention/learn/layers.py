"""Attention layers with an explicit pseudo-metric (THEORY section 1).

Every layer scores pairs with a pseudo-metric f and propagates values with the row-stochastic matrix

    S[i, j] = softmax_j( -f(x_i, y_j) / (2 eps tau) ),

so one layer is one explicit Euler step of length eps_eff / 2 of the attention-limit equation, with the
*effective time scale* eps_eff = eps * tau (:attr:`MetricAttentionBase.effective_eps`). ``eps`` is the
THEORY parameter (vanilla attention is ``eps = 1/2``); the *temperature* tau is a fixed number chosen at
construction that makes the three kinds comparable at initialisation (``temperature="auto"``):

* :class:`SelfAttention`: f(x, y) = -q.k with q = W_Q x, k = W_K y; tau = 1 (the 1/sqrt(d_head) of scaled
  dot-product attention is in the initialisation of W_Q and W_K, so q.k has unit variance on unit-variance
  tokens and the initial row perplexity is about N exp(-1/2)).
* :class:`L2SelfAttention`: tied weights, f(x, y) = |W x - W y|^2 (Kim et al. 2021); a Mahalanobis metric
  with M = W^T W (:meth:`L2SelfAttention.to_metric`). tau = 2 * key_dim = E f(x, y) at initialisation for
  independent x, y ~ N(0, I_d) (W has N(0, 1/d) entries).
* :class:`MetricAttention`: f(x, y) = |phi(x) - phi(y)|^2 with phi(x) = x + W2 tanh(W1 x + b1) + b2 (one head,
  the paper's residual map) or phi(x) = P x + W2 tanh(W1 x + b1) + b2 (several heads, P: d -> d / heads);
  its pull-back metric is J^T J (:meth:`MetricAttention.to_learned`). tau = 2 * key_dim, the expected
  f of the linear part at initialisation.

Without a temperature (tau = 1) a distance kind at d_head >= 32 starts as the identity (row perplexity 1):
f(x, x) = 0 while f(x, y) ~ 2 d_head for y != x. With tau = E f the logits are -f / E f = -1 +- sqrt(1.5 /
d_head), close to uniform; measured initial row perplexity / self-attention's: 1.10 .. 1.58 for d = 16 .. 512
(``tests/test_learn_scaled.py``). ``temperature=1.0`` restores the plain S_eps of THEORY section 1.

Parameter budget (per-head widths). With H heads every kind scores in d / H dimensions per head and the
pseudo-metric has about 2 d^2 parameters, the size of W_Q and W_K together: self-attention key_dim = d / H,
L2 key_dim = 2 d / H (one tied W of the size of W_Q and W_K), metric-attention key_dim = d / H and a phi width
``hidden`` chosen so that P, W1, b1, W2, b2 add up to the same count.

Computation. ``forward`` calls ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels on every
device) with the exact rewrite of the distance kinds

    -|a - b|^2 / (2 eps_eff) = (a . b) / eps_eff - |b|^2 / (2 eps_eff) - |a|^2 / (2 eps_eff),

whose last (row) term cancels in the softmax: scores a . b at scale 1 / eps_eff plus the per-key additive bias
-|b|^2 / (2 eps_eff). a and b are shifted by the mean key first (f is translation invariant), which keeps the
rewrite accurate. ``backend="explicit"`` (and :meth:`attention_weights`, ``need_weights=True``) form S
explicitly; the two agree to round-off (1e-12 in float64, tested).

Shapes: queries ``x`` are (batch, P, d), keys/values ``y`` (batch, Q, d) (``y = x`` for self-attention).
Multi-head: each head h has its own pseudo-metric f_h, its own value map V_h (d -> d_value) and produces
H_h = S_h V_h; the heads are concatenated and mapped by one linear layer W_O, which is the same as
H_new = sum_h H_h W_h with W_h the row blocks of W_O^T (THEORY section 3, multi-head). With one head and
``out_proj=None`` no output map is applied, so the layer is exactly S (y W_V^T).

Masks. ``forward(x, y, mask)``: a boolean ``mask`` of shape (P, Q) or (batch, P, Q), True = admissible pair
(False pairs get exactly zero weight). :class:`MultiheadMetricAttention` has the ``nn.MultiheadAttention``
call form and polarity (True = masked out). A query row with every pair masked gets all-zero weights and a zero
attention output (before the output map), which is what ``scaled_dot_product_attention`` and
``nn.MultiheadAttention(need_weights=False)`` give; no data-dependent branch, so ``torch.compile(fullgraph=True)``
traces the layers.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import positive_float

__all__ = ["MetricAttentionBase", "SelfAttention", "L2SelfAttention", "MetricAttention", "MultiheadMetricAttention",
           "make_attention", "ATTENTION_TYPES", "check_int", "BACKENDS"]

BACKENDS = ("sdpa", "explicit")


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances |a_i - b_j|^2 of (..., P, m) and (..., Q, m) -> (..., P, Q).

    Both sets are shifted by the mean of ``b`` first (distances are translation invariant), which keeps the
    expansion |a|^2 + |b|^2 - 2 a.b accurate; round-off negatives are clamped to zero.
    """
    centre = b.mean(dim=-2, keepdim=True)
    a = a - centre
    b = b - centre
    sq = (a * a).sum(-1, keepdim=True) + (b * b).sum(-1).unsqueeze(-2) - 2.0 * (a @ b.transpose(-1, -2))
    return sq.clamp_min(0.0)


def check_int(value: int, name: str, minimum: int = 1) -> int:
    """``int(value)`` when ``value`` is an integer (of any type) >= ``minimum``; a ValueError naming ``name``
    otherwise (2.5 is refused, not truncated)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be an integer, got {name}={value!r}")
    if int(value) != value or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def _check_mask(mask: Tensor | None, batch: int, p: int, q: int) -> Tensor | None:
    """Validate a boolean keep-mask (True = admissible) and return it as (batch or 1, 1, P, Q)."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError("mask must be a boolean torch.Tensor (True = admissible pair)")
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    if mask.dim() != 3 or mask.shape[-2:] != (p, q) or mask.shape[0] not in (1, batch):
        raise ValueError(f"mask must have shape ({p}, {q}) or ({batch}, {p}, {q}), got mask.shape={tuple(mask.shape)}")
    return mask.unsqueeze(1)


def _keep_to_bias(keep: Tensor, dtype: torch.dtype) -> Tensor:
    """Boolean keep-mask -> additive float mask (0 where kept, -inf where masked)."""
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, float("-inf"))


def _safe_softmax(logits: Tensor) -> Tensor:
    """Row softmax that gives all-zero rows where every logit is -inf (as SDPA does), without a branch.

    The -inf rows are replaced by zeros before the softmax (so no NaN enters the graph, gradients stay
    finite) and multiplied by zero after it.
    """
    alive = torch.isfinite(logits).any(dim=-1, keepdim=True)
    s = torch.softmax(torch.where(alive, logits, torch.zeros_like(logits)), dim=-1)
    return s * alive.to(s.dtype)


def _resolve_temperature(temperature: float | str | None, auto: float) -> float:
    if temperature is None or (isinstance(temperature, str) and temperature == "auto"):
        return float(auto)
    if isinstance(temperature, str):
        raise ValueError(f"temperature must be a positive number or 'auto', got temperature={temperature!r}")
    return positive_float(temperature, "temperature")


class MetricAttentionBase(nn.Module):
    """Shared machinery: values, softmax at time scale eps_eff = eps * tau, masking, multi-head output, SDPA.

    Parameters
    ----------
    dim : int
        Feature dimension d of the inputs (queries and keys).
    eps : float
        THEORY time scale; S = softmax(-f / (2 eps tau)). Default 0.5 (vanilla attention).
    temperature : float or "auto"
        tau, a fixed positive number; eps_eff = eps * tau is the time scale the layer really uses.
        ``"auto"`` (default): 1 for self-attention, 2 * key_dim (= E f at initialisation on unit-variance
        tokens) for the distance kinds. ``1.0`` gives the plain THEORY S_eps.
    heads : int
        Number of heads, each with its own pseudo-metric and value map.
    value : bool
        If True, values are y W_V^T (per head, dimension ``value_dim``); if False the values are ``y`` itself
        (each head propagates the raw features, so the layer computes S H exactly).
    value_dim : int, optional
        Per-head value dimension (default ``dim // heads`` rounded up to at least 1, or ``dim`` for one head).
    out_dim : int, optional
        Output dimension (default ``dim``).
    out_proj : bool, optional
        Apply a final linear map to the concatenated heads. Default: True when ``heads > 1`` or when the
        concatenated width differs from ``out_dim``.
    backend : {"sdpa", "explicit"}
        ``"sdpa"`` (default): ``forward`` calls ``scaled_dot_product_attention`` with the exact rewrite (module
        docstring); ``"explicit"``: forms f and S. Equal to round-off.
    """

    def __init__(
        self,
        dim: int,
        *,
        eps: float = 0.5,
        temperature: float | str | None = "auto",
        heads: int = 1,
        value: bool = True,
        value_dim: int | None = None,
        out_dim: int | None = None,
        out_proj: bool | None = None,
        backend: str = "sdpa",
    ):
        super().__init__()
        self.dim = check_int(dim, "dim")
        self.eps = positive_float(eps, "eps")
        self.heads = check_int(heads, "heads")
        self.out_dim = check_int(out_dim if out_dim is not None else dim, "out_dim")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got backend={backend!r}")
        self.backend = backend
        self._temperature_arg = temperature
        _resolve_temperature(temperature, 1.0)  # validate now; the subclass sets the value (needs key_dim)
        self.temperature = 1.0
        if value:
            vd = value_dim if value_dim is not None else (dim if heads == 1 else max(1, dim // heads))
            self.value_dim = check_int(vd, "value_dim")
            self.w_value = nn.Parameter(torch.empty(self.heads, self.value_dim, self.dim))
            nn.init.normal_(self.w_value, std=1.0 / math.sqrt(self.dim))
        else:
            if value_dim is not None:
                raise ValueError("value_dim is only used with value=True")
            self.value_dim = self.dim
            self.register_parameter("w_value", None)
        concat = self.heads * self.value_dim
        if out_proj is None:
            out_proj = self.heads > 1 or concat != self.out_dim
        if not out_proj and concat != self.out_dim:
            raise ValueError(f"out_proj=False needs heads * value_dim == out_dim, got {concat} != {self.out_dim}")
        self.out = nn.Linear(concat, self.out_dim) if out_proj else None

    def _set_temperature(self, auto: float) -> None:
        self.temperature = _resolve_temperature(self._temperature_arg, auto)
        self.temperature_rule = "auto" if self._temperature_arg in (None, "auto") else "given"

    @property
    def effective_eps(self) -> float:
        """eps_eff = eps * temperature: S = softmax(-f / (2 eps_eff)); the eps of ``AttentionOperator``."""
        return self.eps * self.temperature

    # -- the pseudo-metric (one per head) ------------------------------------------------------------------

    def _scores(self, x: Tensor, y: Tensor) -> Tensor:
        """f_h(x_i, y_j) for every head: (..., P, d), (..., Q, d) -> (..., heads, P, Q)."""
        raise NotImplementedError

    def _sdpa_terms(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, float, Tensor | None]:
        """(q, k, scale, key_bias) with softmax(scale q.k + key_bias) = softmax(-f / (2 eps_eff)) row-wise."""
        raise NotImplementedError

    def pseudo_metric(self, x: Tensor, y: Tensor) -> Tensor:
        """The pseudo-metric f(x_i, y_j) of this layer.

        Parameters
        ----------
        x, y : Tensor
            Points of shape (..., P, d) and (..., Q, d).

        Returns
        -------
        Tensor
            (..., P, Q) for one head, (..., heads, P, Q) for several.
        """
        x, y = self._check_points(x, "x"), self._check_points(y, "y")
        f = self._scores(x, y)
        return f.squeeze(-3) if self.heads == 1 else f

    def _check_points(self, x: Tensor, name: str) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[-1] != self.dim:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"{name} must be a tensor of shape (..., N, {self.dim}), got {shape}")
        return x

    def _head(self, head: int | None) -> int:
        if head is None:
            if self.heads != 1:
                raise ValueError(f"this layer has heads={self.heads}; pass head=0..{self.heads - 1}")
            return 0
        if not 0 <= int(head) < self.heads:
            raise ValueError(f"head must be in 0..{self.heads - 1}, got head={head!r}")
        return int(head)

    # -- attention -----------------------------------------------------------------------------------------

    def _logits(self, x: Tensor, y: Tensor, bias: Tensor | None) -> Tensor:
        logits = self._scores(x, y) / (-2.0 * self.effective_eps)
        return logits if bias is None else logits + bias

    def attention_weights(self, x: Tensor, y: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Row-stochastic S of shape (batch, heads, P, Q) for x (batch, P, d) and y (batch, Q, d).

        Rows whose pairs are all masked are zero (module docstring).
        """
        x, y = self._prepare(x, y)
        keep = _check_mask(mask, x.shape[0], x.shape[1], y.shape[1])
        return _safe_softmax(self._logits(x, y, None if keep is None else _keep_to_bias(keep, x.dtype)))

    def _prepare(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        x = self._check_points(x, "x")
        y = x if y is None else self._check_points(y, "y")
        if x.dim() != 3 or y.dim() != 3 or x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must be (batch, N, d) with the same batch, got {tuple(x.shape)} and {tuple(y.shape)}")
        return x, y

    def _values(self, v: Tensor) -> Tensor:
        if self.w_value is None:
            return v.unsqueeze(1).expand(-1, self.heads, -1, -1)
        return torch.einsum("bqd,hed->bhqe", v, self.w_value)

    def _attend(self, x: Tensor, y: Tensor, v: Tensor, bias: Tensor | None, need_weights: bool,
                backend: str | None = None) -> tuple[Tensor, Tensor | None]:
        """Attention of queries x on keys y with values v (batch, Q, d); ``bias`` an additive float mask
        broadcastable to (batch, heads, P, Q). Returns (output (batch, P, out_dim), S or None)."""
        values = self._values(v)  # (B, H, Q, e)
        backend = self.backend if backend is None else backend
        weights = None
        if need_weights or backend == "explicit":
            weights = _safe_softmax(self._logits(x, y, bias))
            h = weights @ values
        else:
            q, k, scale, key_bias = self._sdpa_terms(x, y)
            if key_bias is not None and bias is not None:
                key_bias = key_bias + bias
            elif key_bias is None:
                key_bias = bias
            if key_bias is not None:
                key_bias = key_bias.to(q.dtype)
            h = F.scaled_dot_product_attention(q, k, values, attn_mask=key_bias, scale=scale)
        h = h.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.heads * self.value_dim)
        return (self.out(h) if self.out is not None else h), weights

    def forward(self, x: Tensor, y: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Attention output (batch, P, out_dim): queries x, keys and values y (default y = x).

        ``mask`` (P, Q) or (batch, P, Q) boolean, True = admissible pair (see :class:`MultiheadMetricAttention`
        for the ``nn.MultiheadAttention`` polarity).
        """
        x, y = self._prepare(x, y)
        keep = _check_mask(mask, x.shape[0], x.shape[1], y.shape[1])
        bias = None if keep is None else _keep_to_bias(keep, x.dtype)
        return self._attend(x, y, y, bias, need_weights=False)[0]

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, eps={self.eps}, temperature={self.temperature:g}, heads={self.heads}, "
                f"value_dim={self.value_dim}, out_dim={self.out_dim}, backend={self.backend!r}")


def _distance_terms(a: Tensor, b: Tensor, eps_eff: float) -> tuple[Tensor, Tensor, float, Tensor]:
    """SDPA terms of softmax(-|a_i - b_j|^2 / (2 eps_eff)): centred a, b, scale 1 / eps_eff and the per-key
    bias -|b_j|^2 / (2 eps_eff) of shape (..., 1, Q); the row term -|a_i|^2 / (2 eps_eff) cancels."""
    centre = b.mean(dim=-2, keepdim=True)
    a, b = a - centre, b - centre
    key_bias = (b * b).sum(-1).unsqueeze(-2) / (-2.0 * eps_eff)
    return a, b, 1.0 / eps_eff, key_bias


def _default_key_dim(dim: int, heads: int) -> int:
    """d / heads (at least 1), or d for one head."""
    return dim if heads == 1 else max(1, dim // heads)


class SelfAttention(MetricAttentionBase):
    """Dot-product attention, f(x, y) = -(W_Q x).(W_K y) per head (not a metric in general).

    S = softmax(q.k / (2 eps tau)); with the defaults (eps = 1/2, tau = 1) this is softmax(q.k), and the
    initialisation W ~ N(0, 1 / (d sqrt(key_dim))) makes q.k of unit variance on unit-variance tokens
    (scaled dot-product attention with the 1/sqrt(d_head) absorbed into W_Q, W_K).

    Parameters
    ----------
    dim : int
        Input dimension d.
    key_dim : int, optional
        Per-head query/key dimension (default ``dim // heads``, at least 1).
    **kwargs
        ``eps``, ``temperature``, ``heads``, ``value``, ``value_dim``, ``out_dim``, ``out_proj``, ``backend`` of
        :class:`MetricAttentionBase`.
    """

    def __init__(self, dim: int, *, key_dim: int | None = None, **kwargs):
        super().__init__(dim, **kwargs)
        kd = check_int(key_dim if key_dim is not None else _default_key_dim(dim, self.heads), "key_dim")
        self.key_dim = kd
        self.w_query = nn.Parameter(torch.randn(self.heads, kd, dim) / math.sqrt(dim) / kd**0.25)
        self.w_key = nn.Parameter(torch.randn(self.heads, kd, dim) / math.sqrt(dim) / kd**0.25)
        self._set_temperature(1.0)

    def _scores(self, x: Tensor, y: Tensor) -> Tensor:
        q = torch.einsum("...pd,hkd->...hpk", x, self.w_query)
        k = torch.einsum("...qd,hkd->...hqk", y, self.w_key)
        return -(q @ k.transpose(-1, -2))

    def _sdpa_terms(self, x: Tensor, y: Tensor):
        q = torch.einsum("bpd,hkd->bhpk", x, self.w_query)
        k = torch.einsum("bqd,hkd->bhqk", y, self.w_key)
        return q, k, 1.0 / (2.0 * self.effective_eps), None


class L2SelfAttention(MetricAttentionBase):
    """Tied-weight L2 attention, f(x, y) = |W x - W y|^2 per head (Kim, Papamakarios, Mnih 2021).

    S = softmax(-f / (2 eps tau)), tau = 2 * key_dim by default (E f at initialisation, W ~ N(0, 1/d)).

    Parameters
    ----------
    dim : int
        Input dimension d.
    key_dim : int, optional
        Rows of W per head. Default ``2 * (dim // heads)`` (``2 * dim`` for one head): the tied W has as many
        entries as W_Q and W_K of :class:`SelfAttention` together, so the budgets match.
    **kwargs
        As :class:`MetricAttentionBase`.
    """

    def __init__(self, dim: int, *, key_dim: int | None = None, **kwargs):
        super().__init__(dim, **kwargs)
        kd = check_int(key_dim if key_dim is not None else 2 * _default_key_dim(dim, self.heads), "key_dim")
        self.key_dim = kd
        self.weight = nn.Parameter(torch.randn(self.heads, kd, dim) / math.sqrt(dim))
        self._set_temperature(2.0 * kd)

    def _features(self, x: Tensor) -> Tensor:
        return torch.einsum("...nd,hkd->...hnk", x, self.weight)

    def _scores(self, x: Tensor, y: Tensor) -> Tensor:
        return squared_distances(self._features(x), self._features(y))

    def _sdpa_terms(self, x: Tensor, y: Tensor):
        return _distance_terms(self._features(x), self._features(y), self.effective_eps)

    def metric_matrix(self, head: int | None = None) -> np.ndarray:
        """M = W^T W (d, d) of one head, as a float64 NumPy array."""
        w = self.weight[self._head(head)].detach().cpu().double().numpy()
        return w.T @ w

    def to_metric(self, head: int | None = None):
        """Export head ``head`` as ``continuum_attention.metrics.Mahalanobis(W^T W)``.

        The layer's S is ``AttentionOperator(points, layer.effective_eps, metric=layer.to_metric())``.
        """
        from ..metrics import Mahalanobis

        return Mahalanobis(self.metric_matrix(head))


def _budget_hidden(dim: int, heads: int, key_dim: int, projected: bool) -> int:
    """phi width m with P (if projected), W1, b1, W2, b2 as many parameters as W_Q and W_K of one
    self-attention head: key_dim d [P] + m d + m + key_dim m + key_dim = 2 (d / heads) d."""
    budget = 2 * _default_key_dim(dim, heads) * dim - key_dim - (key_dim * dim if projected else 0)
    return max(1, int(round(budget / (dim + 1 + key_dim))))


class MetricAttention(MetricAttentionBase):
    """Metric-attention, f(x, y) = |phi(x) - phi(y)|^2 per head.

    phi(x) = x + W2 tanh(W1 x + b1) + b2 when ``key_dim == dim`` (the paper's residual map; the default for one
    head) and phi(x) = P x + W2 tanh(W1 x + b1) + b2 with a learned P: R^d -> R^key_dim otherwise (the default
    for several heads, key_dim = d / heads). S = softmax(-f / (2 eps tau)), tau = 2 * key_dim by default.

    Parameters
    ----------
    dim : int
        Input dimension d.
    key_dim : int, optional
        Output dimension of phi per head (default ``dim`` for one head, ``dim // heads`` for several).
    hidden : int, optional
        Width of the MLP inside phi. Default: the width that gives the pseudo-metric as many parameters as
        W_Q and W_K of :class:`SelfAttention` (``dim - 1`` for one head).
    **kwargs
        As :class:`MetricAttentionBase`.
    """

    def __init__(self, dim: int, *, key_dim: int | None = None, hidden: int | None = None, **kwargs):
        super().__init__(dim, **kwargs)
        h = self.heads
        kd = check_int(key_dim if key_dim is not None else _default_key_dim(dim, h), "key_dim")
        self.key_dim = kd
        self.residual = kd == dim
        m = check_int(hidden if hidden is not None else _budget_hidden(dim, h, kd, not self.residual), "hidden")
        self.hidden = m
        if self.residual:
            self.register_parameter("proj", None)
        else:
            self.proj = nn.Parameter(torch.randn(h, kd, dim) / math.sqrt(dim))
        self.w1 = nn.Parameter(torch.randn(h, m, dim) / math.sqrt(dim))
        self.b1 = nn.Parameter(torch.zeros(h, m))
        self.w2 = nn.Parameter(torch.randn(h, kd, m) / math.sqrt(m))
        self.b2 = nn.Parameter(torch.zeros(h, kd))
        self._set_temperature(2.0 * kd)

    def phi(self, x: Tensor) -> Tensor:
        """phi_h(x) for every head: (..., N, d) -> (..., heads, N, key_dim)."""
        z = torch.tanh(torch.einsum("...nd,hmd->...hnm", x, self.w1) + self.b1[:, None, :])
        lin = x.unsqueeze(-3) if self.proj is None else torch.einsum("...nd,hkd->...hnk", x, self.proj)
        return lin + torch.einsum("...hnm,hdm->...hnd", z, self.w2) + self.b2[:, None, :]

    def _scores(self, x: Tensor, y: Tensor) -> Tensor:
        return squared_distances(self.phi(x), self.phi(y))

    def _sdpa_terms(self, x: Tensor, y: Tensor):
        return _distance_terms(self.phi(x), self.phi(y), self.effective_eps)

    def _numpy_weights(self, head: int | None):
        k = self._head(head)
        w1, b1, w2, b2 = (p[k].detach().cpu().double().numpy().copy() for p in (self.w1, self.b1, self.w2, self.b2))
        proj = None if self.proj is None else self.proj[k].detach().cpu().double().numpy().copy()
        return w1, b1, w2, b2, proj

    def numpy_map(self, head: int | None = None) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
        """phi and its Jacobian of one head as float64 NumPy callables on (P, d) arrays.

        Returns
        -------
        phi : callable
            (P, d) -> (P, key_dim).
        jacobian : callable
            (P, d) -> (P, key_dim, d), J = I (or P) + W2 diag(1 - tanh^2(W1 x + b1)) W1.
        """
        return _residual_mlp(*self._numpy_weights(head))

    def to_learned(self, head: int | None = None):
        """Export head ``head`` as ``continuum_attention.metrics.Learned`` (NumPy, float64).

        For the residual map phi is a serialisable ``metrics.ResidualFeatureMap`` with the layer's weights; with
        a projection P it is a NumPy closure. The Jacobian is exact. The layer's S is
        ``AttentionOperator(points, layer.effective_eps, metric=layer.to_learned())``.
        """
        from ..metrics import Learned, ResidualFeatureMap

        w1, b1, w2, b2, proj = self._numpy_weights(head)
        if proj is None:
            phi = ResidualFeatureMap(w1, b1, w2, b2)
            return Learned(phi, jacobian=phi.jacobian)
        phi, jac = _residual_mlp(w1, b1, w2, b2, proj)
        return Learned(phi, jacobian=jac)


def _residual_mlp(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray, proj: np.ndarray | None = None):
    """NumPy phi(x) = x (or P x) + W2 tanh(W1 x + b1) + b2 and its Jacobian, closed over the weights."""
    d = w1.shape[1]
    lin = np.eye(d) if proj is None else proj

    def phi(points: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(points, dtype=float))
        return x @ lin.T + np.tanh(x @ w1.T + b1) @ w2.T + b2

    def jacobian(points: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(points, dtype=float))
        sech2 = 1.0 - np.tanh(x @ w1.T + b1) ** 2  # (P, m)
        return lin + np.einsum("dm,pm,me->pde", w2, sech2, w1)

    return phi, jacobian


class MultiheadMetricAttention(nn.Module):
    """Drop-in for ``nn.MultiheadAttention`` with any of the three pseudo-metrics.

    Same constructor core (``embed_dim``, ``num_heads``, ``batch_first``) and the same call form and mask
    polarity::

        out, weights = layer(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                             average_attn_weights=True, is_causal=False)

    * ``query`` (L, N, E), ``key`` and ``value`` (S, N, E) ((N, L, E) with ``batch_first=True``; unbatched
      (L, E) also accepted). Keys are scored with the layer's pseudo-metric f(query_i, key_j); values are
      ``value W_V^T`` per head.
    * ``attn_mask``: (L, S) or (N * num_heads, L, S); boolean True = *not allowed* (MHA's polarity), or float,
      added to the logits -f / (2 eps_eff).
    * ``key_padding_mask``: (N, S); boolean True = ignore that key, or float (added).
    * ``is_causal``: with ``attn_mask=None`` applies the causal mask (query i sees keys j <= i).
    * ``need_weights``: also return S, averaged over heads (N, L, S) or per head (N, H, L, S).

    A query row with every key masked gives zero weights and output ``out_proj.bias`` (the zero attention
    output mapped by W_O): what MHA gives with ``need_weights=False`` in training mode (its
    ``need_weights=True`` path returns NaN there). No data-dependent branch: ``torch.compile(fullgraph=True)``
    traces it. Dropout on the weights is not implemented (``dropout`` must be 0).

    Parameters
    ----------
    embed_dim, num_heads : int
        As ``nn.MultiheadAttention``; per-head widths follow :class:`MetricAttentionBase` (d / heads).
    kind : {"self", "l2", "metric"}
        The pseudo-metric (default ``"metric"``).
    batch_first : bool
        Inputs (N, L, E) instead of (L, N, E).
    dropout : float
        Must be 0.0.
    **kwargs
        Passed to the layer: ``eps``, ``temperature``, ``key_dim``, ``hidden`` (metric), ``backend``.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, kind: str = "metric", batch_first: bool = False,
                 dropout: float = 0.0, **kwargs):
        super().__init__()
        if dropout != 0.0:
            raise ValueError(f"dropout is not implemented, got dropout={dropout!r}; use 0.0")
        self.embed_dim = check_int(embed_dim, "embed_dim")
        self.num_heads = check_int(num_heads, "num_heads")
        self.batch_first = bool(batch_first)
        self.attn = make_attention(kind, embed_dim, heads=num_heads, out_proj=True, **kwargs)

    def _mask_bias(self, mask: Tensor | None, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor | None:
        if mask is None:
            return None
        if not isinstance(mask, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor or None, got {type(mask).__name__}")
        if mask.dtype == torch.bool:
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
        if not mask.is_floating_point():
            raise TypeError(f"{name} must be boolean or floating point, got dtype {mask.dtype}")
        return mask.to(dtype)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        """(attn_output, attn_weights) with ``nn.MultiheadAttention``'s shapes and mask semantics."""
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor) or t.dim() not in (2, 3) or t.shape[-1] != self.embed_dim:
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"{name} must be (L, E), (L, N, E) or (N, L, E) with E={self.embed_dim}, got {shape}")
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(f"key and value must have the same batch and length as each other and the batch of query, "
                             f"got key {tuple(key.shape)}, value {tuple(value.shape)}, query {tuple(query.shape)}")
        n, lq, s = query.shape[0], query.shape[1], key.shape[1]
        dtype = query.dtype
        bias = None
        am = self._mask_bias(attn_mask, "attn_mask", (lq, s), dtype)
        if am is None and is_causal:
            am = torch.zeros(lq, s, dtype=dtype, device=query.device).masked_fill(
                ~torch.ones(lq, s, dtype=torch.bool, device=query.device).tril(), float("-inf"))
        if am is not None:
            if am.dim() == 2 and am.shape == (lq, s):
                bias = am.view(1, 1, lq, s)
            elif am.dim() == 3 and am.shape == (n * self.num_heads, lq, s):
                bias = am.view(n, self.num_heads, lq, s)
            else:
                raise ValueError(f"attn_mask must be ({lq}, {s}) or ({n * self.num_heads}, {lq}, {s}), got {tuple(am.shape)}")
        kp = self._mask_bias(key_padding_mask if not unbatched or key_padding_mask is None
                             else key_padding_mask.unsqueeze(0), "key_padding_mask", (n, s), dtype)
        if kp is not None:
            if kp.shape != (n, s):
                raise ValueError(f"key_padding_mask must be ({n}, {s}), got {tuple(kp.shape)}")
            kp = kp.view(n, 1, 1, s)
            bias = kp if bias is None else bias + kp
        out, weights = self.attn._attend(query, key, value, bias, need_weights=bool(need_weights))
        if unbatched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(dim=1)
            if unbatched:
                weights = weights.squeeze(0)
        return out, weights


ATTENTION_TYPES: dict[str, type[MetricAttentionBase]] = {
    "self": SelfAttention,
    "l2": L2SelfAttention,
    "metric": MetricAttention,
}


def make_attention(kind: str, dim: int, *, hidden: int | None = None, **kwargs) -> MetricAttentionBase:
    """Build an attention layer by name: ``"self"``, ``"l2"`` or ``"metric"`` (``hidden`` only for metric)."""
    if kind not in ATTENTION_TYPES:
        raise ValueError(f"kind must be one of {sorted(ATTENTION_TYPES)}, got kind={kind!r}")
    if kind == "metric":
        return MetricAttention(dim, hidden=hidden, **kwargs)
    return ATTENTION_TYPES[kind](dim, **kwargs)
