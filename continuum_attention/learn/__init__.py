"""PyTorch annex: metric-attention layers, the information propagation network, Transformer blocks.

Importing this subpackage imports torch (the optional extra ``learn``); nothing else in the package does.
Trained layers export their pseudo-metric to the particle and PDE sides:
:meth:`MetricAttention.to_learned` gives ``metrics.Learned``, :meth:`L2SelfAttention.to_metric` gives
``metrics.Mahalanobis``.

Experiments: :mod:`.experiments` (the paper's experiments), :mod:`.bridge` (the learned metric and its PDE heat
flow); their figures in :mod:`.figures` (``matplotlib.figure.Figure``, no pyplot); the scripts that run and save
them are in ``simulations/``.
"""

from .layers import (
    ATTENTION_TYPES,
    L2SelfAttention,
    MetricAttention,
    MetricAttentionBase,
    MultiheadMetricAttention,
    SelfAttention,
    make_attention,
)
from .models import (
    InformationPropagationNetwork,
    Seq2SeqTransformer,
    TransformerBlock,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
    causal_mask,
)

__all__ = [
    "ATTENTION_TYPES",
    "InformationPropagationNetwork",
    "L2SelfAttention",
    "MetricAttention",
    "MetricAttentionBase",
    "MultiheadMetricAttention",
    "Seq2SeqTransformer",
    "SelfAttention",
    "TransformerBlock",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
    "causal_mask",
    "make_attention",
]
