"""Attention layers with an explicit pseudo-metric (THEORY section 1).

Every layer scores pairs with a pseudo-metric f and propagates values with the row-stochastic matrix

    S_eps[i, j] = softmax_j( -f(x_i, y_j) / (2 eps) ),

so one layer is one explicit Euler step of length eps/2 of the attention-limit equation; vanilla attention is
``eps = 1/2``. Three pseudo-metrics:

* :class:`SelfAttention`: f(x, y) = -q.k with q = W_Q x, k = W_K y (the 1/sqrt(d) of scaled dot-product
  attention is absorbed into the initialisation of W_Q).
* :class:`L2SelfAttention`: tied weights, f(x, y) = |W x - W y|^2 (Kim et al. 2021); a Mahalanobis metric
  with M = W^T W (:meth:`L2SelfAttention.to_metric`).
* :class:`MetricAttention`: f(x, y) = |phi(x) - phi(y)|^2 with the residual MLP
  phi(x) = x + W2 tanh(W1 x + b1) + b2; its pull-back metric is J^T J (:meth:`MetricAttention.to_learned`).

Shapes: queries ``x`` are (batch, P, d), keys/values ``y`` (batch, Q, d) (``y = x`` for self-attention).
Multi-head: each head h has its own pseudo-metric f_h, its own value map V_h (d -> d_value) and produces
H_h = S_h V_h; the heads are concatenated and mapped by one linear layer W_O, which is the same as
H_new = sum_h H_h W_h with W_h the row blocks of W_O^T (THEORY section 3, multi-head). With one head and
``out_proj=None`` no output map is applied, so the layer is exactly S_eps (y W_V^T).

A boolean ``mask`` of shape (P, Q) or (batch, P, Q) marks admissible pairs: False pairs get exactly zero
weight (their scores are set to -inf before the softmax). A query row with every pair masked is refused
with a ValueError, before the softmax.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from .._validation import positive_float

__all__ = ["MetricAttentionBase", "SelfAttention", "L2SelfAttention", "MetricAttention", "make_attention",
           "ATTENTION_TYPES", "check_int"]


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
    if int(value) != value or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def _check_mask(mask: Tensor | None, batch: int, p: int, q: int) -> Tensor | None:
    """Validate a boolean mask and return it as (batch or 1, 1, P, Q) for broadcasting over heads."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError("mask must be a boolean torch.Tensor (True = admissible pair)")
    if mask.dim() == 2:
        mask = mask.unsqueeze(0)
    if mask.dim() != 3 or mask.shape[-2:] != (p, q) or mask.shape[0] not in (1, batch):
        raise ValueError(f"mask must have shape ({p}, {q}) or ({batch}, {p}, {q}), got mask.shape={tuple(mask.shape)}")
    empty = ~mask.any(dim=-1)
    if bool(empty.any()):
        b, i = (int(v) for v in empty.nonzero()[0])
        raise ValueError(f"mask leaves query row {i} (batch {b}) with no admissible key: every pair is masked")
    return mask.unsqueeze(1)


class MetricAttentionBase(nn.Module):
    """Shared machinery: values, softmax with temperature 2 eps, masking, multi-head output.

    Parameters
    ----------
    dim : int
        Feature dimension d of the inputs (queries and keys).
    eps : float
        Time scale; S = softmax(-f / (2 eps)). Default 0.5 (vanilla attention).
    heads : int
        Number of heads, each with its own pseudo-metric and value map.
    value : bool
        If True, values are y W_V^T (per head, dimension ``value_dim``); if False the values are ``y`` itself
        (each head propagates the raw features, so the layer computes S_eps H exactly).
    value_dim : int, optional
        Per-head value dimension (default ``dim // heads`` rounded up to at least 1, or ``dim`` for one head).
    out_dim : int, optional
        Output dimension (default ``dim``).
    out_proj : bool, optional
        Apply a final linear map to the concatenated heads. Default: True when ``heads > 1`` or when the
        concatenated width differs from ``out_dim``.
    """

    def __init__(
        self,
        dim: int,
        *,
        eps: float = 0.5,
        heads: int = 1,
        value: bool = True,
        value_dim: int | None = None,
        out_dim: int | None = None,
        out_proj: bool | None = None,
    ):
        super().__init__()
        self.dim = check_int(dim, "dim")
        self.eps = positive_float(eps, "eps")
        self.heads = check_int(heads, "heads")
        self.out_dim = check_int(out_dim if out_dim is not None else dim, "out_dim")
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

    # -- the pseudo-metric (one per head) ------------------------------------------------------------------

    def _scores(self, x: Tensor, y: Tensor) -> Tensor:
        """f_h(x_i, y_j) for every head: (..., P, d), (..., Q, d) -> (..., heads, P, Q)."""
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

    def attention_weights(self, x: Tensor, y: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Row-stochastic S_eps of shape (batch, heads, P, Q) for x (batch, P, d) and y (batch, Q, d)."""
        x, y = self._prepare(x, y)
        mask = _check_mask(mask, x.shape[0], x.shape[1], y.shape[1])
        logits = self._scores(x, y) / (-2.0 * self.eps)
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        return torch.softmax(logits, dim=-1)

    def _prepare(self, x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        x = self._check_points(x, "x")
        y = x if y is None else self._check_points(y, "y")
        if x.dim() != 3 or y.dim() != 3 or x.shape[0] != y.shape[0]:
            raise ValueError(f"x and y must be (batch, N, d) with the same batch, got {tuple(x.shape)} and {tuple(y.shape)}")
        return x, y

    def forward(self, x: Tensor, y: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
        """Attention output (batch, P, out_dim): queries x, keys and values y (default y = x)."""
        x, y = self._prepare(x, y)
        s = self.attention_weights(x, y, mask)  # (B, H, P, Q)
        if self.w_value is None:
            v = y.unsqueeze(1).expand(-1, self.heads, -1, -1)
        else:
            v = torch.einsum("bqd,hed->bhqe", y, self.w_value)
        h = s @ v  # (B, H, P, e)
        h = h.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.heads * self.value_dim)
        return self.out(h) if self.out is not None else h

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}, heads={self.heads}, value_dim={self.value_dim}, out_dim={self.out_dim}"


class SelfAttention(MetricAttentionBase):
    """Dot-product attention, f(x, y) = -(W_Q x).(W_K y) per head (not a metric in general).

    Parameters
    ----------
    dim : int
        Input dimension d.
    key_dim : int, optional
        Per-head query/key dimension (default ``dim // heads``, at least 1).
    **kwargs
        ``eps``, ``heads``, ``value``, ``value_dim``, ``out_dim``, ``out_proj`` of :class:`MetricAttentionBase`.
    """

    def __init__(self, dim: int, *, key_dim: int | None = None, **kwargs):
        super().__init__(dim, **kwargs)
        kd = check_int(key_dim if key_dim is not None else max(1, dim // self.heads), "key_dim")
        self.key_dim = kd
        self.w_query = nn.Parameter(torch.randn(self.heads, kd, dim) / math.sqrt(dim) / kd**0.25)
        self.w_key = nn.Parameter(torch.randn(self.heads, kd, dim) / math.sqrt(dim) / kd**0.25)

    def _scores(self, x: Tensor, y: Tensor) -> Tensor:
        q = torch.einsum("...pd,hkd->...hpk", x, self.w_query)
        k = torch.einsum("...qd,hkd->...hqk", y, self.w_key)
        return -(q @ k.transpose(-1, -2))


class L2SelfAttention(MetricAttentionBase):
    """Tied-weight L2 attention, f(x, y) = |W x - W y|^2 per head (Kim, Papamakarios, Mnih 2021).

    Parameters
    ----------
    dim : int
        Input dimension d.
    key_dim : int, optional
        Rows of W per head (default ``dim``, so that M = W^T W can be non-singular).
    **kwargs
        As :class:`MetricAttentionBase`.
    """

    def __init__(self, dim: int, *, key_dim: int | None = None, **kwargs):
        super().__init__(dim, **kwargs)
        kd = check_int(key_dim if key_dim is not None else dim, "key_dim")
        self.key_dim = kd
        self.weight = nn.Parameter(torch.randn(self.heads, kd, dim) / math.sqrt(dim))

    def _scores(self, x: Tensor, y: Tensor) -> Tensor:
        a = torch.einsum("...pd,hkd->...hpk", x, self.weight)
        b = torch.einsum("...qd,hkd->...hqk", y, self.weight)
        return squared_distances(a, b)

    def metric_matrix(self, head: int | None = None) -> np.ndarray:
        """M = W^T W (d, d) of one head, as a float64 NumPy array."""
        w = self.weight[self._head(head)].detach().cpu().double().numpy()
        return w.T @ w

    def to_metric(self, head: int | None = None):
        """Export head ``head`` as ``continuum_attention.metrics.Mahalanobis(W^T W)``."""
        from ..metrics import Mahalanobis

        return Mahalanobis(self.metric_matrix(head))


class MetricAttention(MetricAttentionBase):
    """Metric-attention, f(x, y) = |phi(x) - phi(y)|^2 with phi(x) = x + W2 tanh(W1 x + b1) + b2 per head.

    Parameters
    ----------
    dim : int
        Input dimension d (phi maps R^d to R^d).
    hidden : int, optional
        Width of the MLP inside phi (default ``dim``).
    **kwargs
        As :class:`MetricAttentionBase`.
    """

    def __init__(self, dim: int, *, hidden: int | None = None, **kwargs):
        super().__init__(dim, **kwargs)
        m = check_int(hidden if hidden is not None else dim, "hidden")
        self.hidden = m
        h = self.heads
        self.w1 = nn.Parameter(torch.randn(h, m, dim) / math.sqrt(dim))
        self.b1 = nn.Parameter(torch.zeros(h, m))
        self.w2 = nn.Parameter(torch.randn(h, dim, m) / math.sqrt(m))
        self.b2 = nn.Parameter(torch.zeros(h, dim))

    def phi(self, x: Tensor) -> Tensor:
        """phi_h(x) for every head: (..., N, d) -> (..., heads, N, d)."""
        z = torch.tanh(torch.einsum("...nd,hmd->...hnm", x, self.w1) + self.b1[:, None, :])
        return x.unsqueeze(-3) + torch.einsum("...hnm,hdm->...hnd", z, self.w2) + self.b2[:, None, :]

    def _scores(self, x: Tensor, y: Tensor) -> Tensor:
        return squared_distances(self.phi(x), self.phi(y))

    def numpy_map(self, head: int | None = None) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
        """phi and its Jacobian of one head as float64 NumPy callables on (P, d) arrays.

        Returns
        -------
        phi : callable
            (P, d) -> (P, d).
        jacobian : callable
            (P, d) -> (P, d, d), J = I + W2 diag(1 - tanh^2(W1 x + b1)) W1.
        """
        k = self._head(head)
        w1, b1, w2, b2 = (p[k].detach().cpu().double().numpy().copy() for p in (self.w1, self.b1, self.w2, self.b2))
        return _residual_mlp(w1, b1, w2, b2)

    def to_learned(self, head: int | None = None):
        """Export head ``head`` as ``continuum_attention.metrics.Learned`` (NumPy, float64).

        phi is a serialisable ``metrics.ResidualFeatureMap`` with the layer's weights; the Jacobian is exact.
        """
        from ..metrics import Learned, ResidualFeatureMap

        k = self._head(head)
        w1, b1, w2, b2 = (p[k].detach().cpu().double().numpy().copy() for p in (self.w1, self.b1, self.w2, self.b2))
        phi = ResidualFeatureMap(w1, b1, w2, b2)
        return Learned(phi, jacobian=phi.jacobian)


def _residual_mlp(w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray):
    """NumPy phi(x) = x + W2 tanh(W1 x + b1) + b2 and its Jacobian, closed over copies of the weights."""
    d = w1.shape[1]

    def phi(points: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(points, dtype=float))
        return x + np.tanh(x @ w1.T + b1) @ w2.T + b2

    def jacobian(points: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(points, dtype=float))
        sech2 = 1.0 - np.tanh(x @ w1.T + b1) ** 2  # (P, m)
        return np.eye(d) + np.einsum("dm,pm,me->pde", w2, sech2, w1)

    return phi, jacobian


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
