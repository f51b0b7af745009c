"""Networks built from the metric-attention layers: the IPN, Transformer blocks and a small seq2seq model.

Information propagation network (THEORY section 6)
--------------------------------------------------
``InformationPropagationNetwork`` maps the features of *all* data points at once, (batch, N, d_in) with the
whole data set as one sequence (transductive, as in the paper), or of minibatches of data points (attention
across the points of one minibatch, :func:`.experiments.ipn_trial` with ``batch_points``). As the paper
describes it (the default, ``block_mlp=False``):

    H_0 = X A^T + c                                    (linear embedding, width ``width``)
    H_{l+1} = H_l + Attn_l(H_l, mask)                  (attention across the data points)
    logits  = H_L B^T + e                              (linear read-out; softmax via cross-entropy)

``block_mlp=True`` adds a two-layer ReLU MLP after each attention, H_{l+1} = H' + MLP_l(H') with
H' = H_l + Attn_l(H_l) (the block of a Transformer; not in the paper). ``attention="none"`` with
``block_mlp=True`` drops the attention (the MLP-only ablation: each point is classified alone).
No normalisation layers. The attention type is ``"self"``, ``"l2"`` or ``"metric"`` (:func:`make_attention`).

Transformer
-----------
``TransformerBlock`` is a pre-norm block: self-attention, optional cross-attention on a memory (decoder),
MLP, each with a residual connection. Cross-attention scores f(x_query, y_key) with the layer's pseudo-metric.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .layers import MetricAttention, MetricAttentionBase, check_int, make_attention

__all__ = ["InformationPropagationNetwork", "TransformerBlock", "Seq2SeqTransformer", "causal_mask"]


def _mlp(width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width))


class InformationPropagationNetwork(nn.Module):
    """Linear -> L x (attention across points [+ MLP], residual) -> linear -> class logits.

    Parameters
    ----------
    in_dim : int
        Input feature dimension.
    num_classes : int
        Number of classes (logits per point).
    attention : str
        ``"self"``, ``"l2"``, ``"metric"``, or ``"none"`` (no attention; needs ``block_mlp=True``).
    width : int
        Width of the propagated features.
    mlp_width : int
        Width of the MLP inside each block (used with ``block_mlp=True``).
    layers : int
        Number of propagation blocks L.
    heads : int
        Heads per attention layer.
    eps : float
        THEORY time scale (S = softmax(-f / (2 eps tau))).
    temperature : float or "auto"
        tau of the attention layers (:class:`.layers.MetricAttentionBase`); ``"auto"`` is the default.
    metric_hidden : int, optional
        Width of phi's MLP for metric-attention (default: the layer's parameter-matched width).
    block_mlp : bool
        Default False (the paper's network: the only nonlinearity is the attention, so whatever the network
        computes beyond a linear map of the inputs passes through the attention weights). True adds the ReLU
        MLP of width ``mlp_width`` to every block.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        *,
        attention: str = "metric",
        width: int = 10,
        mlp_width: int = 10,
        layers: int = 2,
        heads: int = 1,
        eps: float = 0.5,
        temperature: float | str | None = "auto",
        metric_hidden: int | None = None,
        block_mlp: bool = False,
    ):
        super().__init__()
        check_int(layers, "layers")
        check_int(mlp_width, "mlp_width")
        self.block_mlp = bool(block_mlp)
        self.attention_kind = attention
        if attention == "none" and not self.block_mlp:
            raise ValueError("attention='none' needs block_mlp=True (otherwise the network is linear)")
        self.embed = nn.Linear(check_int(in_dim, "in_dim"), check_int(width, "width"))
        if attention == "none":
            self.attn = None
        else:
            self.attn = nn.ModuleList(
                make_attention(attention, width, hidden=metric_hidden, heads=heads, eps=eps, temperature=temperature)
                for _ in range(layers))
        self.mlps = nn.ModuleList(_mlp(width, mlp_width) for _ in range(layers)) if self.block_mlp else None
        self.num_layers = int(layers)
        self.head = nn.Linear(width, check_int(num_classes, "num_classes"))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Logits (batch, N, classes) for points x of shape (batch, N, in_dim) or (N, in_dim).

        ``mask``: boolean (N, N) or (batch, N, N), True = admissible pair (e.g. a kNN graph).
        """
        squeeze = x.dim() == 2
        h = self.embed(x.unsqueeze(0) if squeeze else x)
        for k in range(self.num_layers):
            if self.attn is not None:
                h = h + self.attn[k](h, mask=mask)
            if self.mlps is not None:
                h = h + self.mlps[k](h)
        out = self.head(h)
        return out.squeeze(0) if squeeze else out

    def input_metric(self, layer: int = 0, head: int | None = None):
        """Pull-back of the first metric-attention layer to the input space, as ``metrics.Learned``.

        For ``layer=0`` the attention sees z = A x + c, so f(x, y) = |phi(A x + c) - phi(A y + c)|^2 and the
        metric on the input space is g(x) = J(x)^T J(x) with J = J_phi(A x + c) A (width x in_dim).
        Only ``layer=0`` of a metric-attention network is a function of the input alone.
        """
        if layer != 0:
            raise ValueError(f"only layer=0 sees the raw inputs; got layer={layer!r}")
        attn = self.attn[0] if self.attn is not None else None
        if not isinstance(attn, MetricAttention):
            raise ValueError(f"input_metric needs attention='metric', this network has {self.attention_kind!r}")
        phi, jac = attn.numpy_map(head)
        a = self.embed.weight.detach().cpu().double().numpy().copy()
        c = self.embed.bias.detach().cpu().double().numpy().copy()

        def phi_in(points: np.ndarray) -> np.ndarray:
            return phi(np.atleast_2d(np.asarray(points, dtype=float)) @ a.T + c)

        def jac_in(points: np.ndarray) -> np.ndarray:
            return jac(np.atleast_2d(np.asarray(points, dtype=float)) @ a.T + c) @ a

        from ..metrics import Learned

        return Learned(phi_in, jacobian=jac_in)


def causal_mask(n: int, device: torch.device | None = None) -> Tensor:
    """Boolean (n, n) mask, True on and below the diagonal (query i sees keys j <= i)."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


class TransformerBlock(nn.Module):
    """Pre-norm Transformer block with a swappable attention type.

    Parameters
    ----------
    dim : int
        Model width.
    attention : str
        ``"self"``, ``"l2"`` or ``"metric"`` (used for self- and cross-attention).
    heads : int
        Attention heads.
    mlp_width : int
        Hidden width of the feed-forward MLP (and of phi for metric-attention).
    cross : bool
        Add a cross-attention sub-layer on a memory (decoder block); queries are this block's features,
        keys and values the memory, scored with f(x_query, y_key).
    eps : float
        Attention time scale.
    metric_hidden : int, optional
        Width of phi's MLP for metric-attention (default: the parameter-matched width of
        :class:`.layers.MetricAttention`).
    temperature : float or "auto"
        tau of the attention layers (default ``"auto"``, :class:`.layers.MetricAttentionBase`).
    """

    def __init__(self, dim: int, *, attention: str = "metric", heads: int = 1, mlp_width: int | None = None,
                 cross: bool = False, eps: float = 0.5, metric_hidden: int | None = None,
                 temperature: float | str | None = "auto"):
        super().__init__()
        mlp_width = mlp_width if mlp_width is not None else 2 * dim
        kw = dict(hidden=metric_hidden, heads=heads, eps=eps, out_proj=True, temperature=temperature)
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = make_attention(attention, dim, **kw)
        self.cross_attn: MetricAttentionBase | None = None
        if cross:
            self.norm_c = nn.LayerNorm(dim)
            self.cross_attn = make_attention(attention, dim, **kw)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _mlp(dim, mlp_width)

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                memory_mask: Tensor | None = None) -> Tensor:
        """x (batch, P, dim); memory (batch, Q, dim) for a decoder block; masks as in the attention layers."""
        h = self.norm1(x)
        x = x + self.self_attn(h, mask=mask)
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("this block has cross-attention: pass memory=(batch, Q, dim)")
            x = x + self.cross_attn(self.norm_c(x), memory, mask=memory_mask)
        elif memory is not None:
            raise ValueError("memory given to a block built with cross=False")
        return x + self.mlp(self.norm2(x))


def TransformerEncoderBlock(dim: int, **kwargs) -> TransformerBlock:
    """Encoder block: :class:`TransformerBlock` without cross-attention."""
    return TransformerBlock(dim, cross=False, **kwargs)


def TransformerDecoderBlock(dim: int, **kwargs) -> TransformerBlock:
    """Decoder block: :class:`TransformerBlock` with cross-attention on the encoder memory."""
    return TransformerBlock(dim, cross=True, **kwargs)


__all__ += ["TransformerEncoderBlock", "TransformerDecoderBlock"]


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder on token sequences (token and learned position embeddings, tied to no vocabulary).

    Parameters
    ----------
    vocab : int
        Number of tokens, including the begin-of-sequence token (the last index, ``vocab - 1``).
    max_len : int
        Longest sequence (encoder and decoder).
    dim, heads, layers, mlp_width, attention, eps, temperature
        As :class:`TransformerBlock`; ``layers`` encoder and ``layers`` decoder blocks.
    """

    def __init__(self, vocab: int, max_len: int, *, dim: int = 32, heads: int = 2, layers: int = 1,
                 mlp_width: int = 64, attention: str = "metric", eps: float = 0.5,
                 temperature: float | str | None = "auto"):
        super().__init__()
        self.vocab, self.max_len = check_int(vocab, "vocab", 2), check_int(max_len, "max_len")
        self.tok = nn.Embedding(vocab, dim)
        self.pos_enc = nn.Parameter(torch.randn(max_len, dim) * 0.5)
        self.pos_dec = nn.Parameter(torch.randn(max_len, dim) * 0.5)
        kw = dict(attention=attention, heads=heads, mlp_width=mlp_width, eps=eps, temperature=temperature)
        self.encoder = nn.ModuleList(TransformerEncoderBlock(dim, **kw) for _ in range(layers))
        self.decoder = nn.ModuleList(TransformerDecoderBlock(dim, **kw) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab)

    @property
    def bos(self) -> int:
        return self.vocab - 1

    def encode(self, src: Tensor, noise: float = 0.0) -> Tensor:
        """Memory (batch, L, dim); ``noise`` adds Gaussian noise of that size to the input embeddings."""
        h = self.tok(src) + self.pos_enc[: src.shape[1]]
        if noise > 0:
            h = h + noise * torch.randn_like(h)
        for block in self.encoder:
            h = block(h)
        return h

    def decode(self, tgt_in: Tensor, memory: Tensor) -> Tensor:
        """Logits (batch, T, vocab) for decoder inputs (teacher forcing, causal mask)."""
        h = self.tok(tgt_in) + self.pos_dec[: tgt_in.shape[1]]
        mask = causal_mask(tgt_in.shape[1], device=tgt_in.device)
        for block in self.decoder:
            h = block(h, memory, mask=mask)
        return self.out(self.norm(h))

    def forward(self, src: Tensor, tgt: Tensor, noise: float = 0.0) -> Tensor:
        """Teacher-forced logits for target ``tgt`` (batch, T): decoder input is BOS + tgt[:, :-1]."""
        bos = torch.full_like(tgt[:, :1], self.bos)
        return self.decode(torch.cat([bos, tgt[:, :-1]], dim=1), self.encode(src, noise))

    @torch.no_grad()
    def generate(self, src: Tensor, length: int, noise: float = 0.0) -> Tensor:
        """Greedy decoding of ``length`` tokens (batch, length)."""
        memory = self.encode(src, noise)
        out = torch.full_like(src[:, :1], self.bos)
        for _ in range(length):
            nxt = self.decode(out, memory)[:, -1].argmax(-1, keepdim=True)
            out = torch.cat([out, nxt], dim=1)
        return out[:, 1:]
