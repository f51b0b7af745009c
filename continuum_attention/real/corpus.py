"""A fixed, offline text corpus: sentences from the docstrings of Python's standard library.

Selection (deterministic for a given Python version): for each module of :data:`CORPUS_MODULES`, in that
order, the docstrings of the module and of its public members (``dir(module)`` order: sorted names, then the
public methods of each class, also sorted) are split into paragraphs at blank lines, each paragraph is joined
into one line and cut into sentences after ``.``, ``!`` or ``?`` followed by a space and a capital letter. A
sentence is kept when it is printable ASCII, starts with a capital letter, ends with a period, has
``min_words`` to ``max_words`` words, and has none of ``>>>``, ``::``, ``{``, ``}``, ``|``, ``$``, ``\\``, a
tab or two spaces in a row (code and tables); the first occurrence of each sentence is kept. From the
candidates, ``n`` are taken at evenly spaced positions (``numpy.linspace`` over the candidate list, rounded
down), so the corpus spans all the modules. The docstrings change between Python releases; the study stores
the Python version and a SHA-256 of the corpus with its results.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
import warnings

import numpy as np

from .._validation import positive_int

__all__ = ["CORPUS_MODULES", "stdlib_sentences", "corpus_digest"]

#: Pure-Python standard-library modules with prose docstrings, imported without side effects.
CORPUS_MODULES = (
    "argparse", "bisect", "calendar", "collections", "configparser", "contextlib", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "email.message", "enum", "fractions", "functools", "gettext", "heapq",
    "html.parser", "inspect", "ipaddress", "itertools", "json", "logging", "os", "pathlib", "pickle",
    "random", "re", "sched", "shutil", "statistics", "string", "tarfile", "tempfile", "textwrap",
    "threading", "typing", "unittest", "urllib.parse", "uuid", "zipfile",
)

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_BAD = (">>>", "::", "{", "}", "|", "$", "\\", "\t", "  ")


def _docstrings(module_name: str) -> list:
    """The module's docstring, then those of its public members and their public attributes (see above)."""
    module = importlib.import_module(module_name)
    docs = [getattr(module, "__doc__", None)]
    with warnings.catch_warnings():  # typing.io / typing.re warn when touched
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in dir(module):
            if name.startswith("_"):
                continue
            obj = getattr(module, name, None)
            if getattr(obj, "__module__", None) != module.__name__:
                continue  # defined elsewhere (re-exported): counted with its own module, if listed
            docs.append(getattr(obj, "__doc__", None))
            if isinstance(obj, type):
                docs.extend(getattr(vars(obj)[attr], "__doc__", None) for attr in sorted(vars(obj))
                            if not attr.startswith("_"))
    return docs


def _sentences(doc: str, min_words: int, max_words: int):
    for paragraph in re.split(r"\n\s*\n", doc):
        line = " ".join(paragraph.split())
        for sentence in _SPLIT.split(line):
            words = sentence.split()
            if not (min_words <= len(words) <= max_words):
                continue
            if not (sentence.isascii() and sentence.isprintable() and sentence[0].isupper() and sentence.endswith(".")):
                continue
            if any(bad in sentence for bad in _BAD):
                continue
            yield sentence


def stdlib_sentences(n: int | None = 300, *, min_words: int = 6, max_words: int = 30,
                     modules: tuple[str, ...] = CORPUS_MODULES) -> list[str]:
    """``n`` sentences from the standard library's docstrings (all candidates when ``n`` is None).

    Parameters
    ----------
    n : int or None
        Number of sentences, taken at evenly spaced positions of the candidate list (module docstring).
    min_words, max_words : int
        Sentence length bounds, in words.
    modules : tuple of str
        Module names, in order (default :data:`CORPUS_MODULES`).

    Returns
    -------
    list of str
        Distinct sentences, in candidate order. ValueError when fewer than ``n`` candidates exist.
    """
    min_words = positive_int(min_words, "min_words")
    max_words = positive_int(max_words, "max_words")
    if max_words < min_words:
        raise ValueError(f"max_words must be >= min_words, got max_words={max_words}, min_words={min_words}")
    if isinstance(modules, str) or not all(isinstance(m, str) for m in modules):
        raise TypeError(f"modules must be a tuple of module names, got modules={modules!r}")
    seen: dict[str, None] = {}
    for name in modules:
        for doc in _docstrings(name):
            if isinstance(doc, str):
                for sentence in _sentences(doc, min_words, max_words):
                    seen.setdefault(sentence, None)
    candidates = list(seen)
    if n is None:
        return candidates
    n = positive_int(n, "n")
    if n > len(candidates):
        raise ValueError(f"n={n} exceeds the {len(candidates)} candidate sentences (Python {sys.version.split()[0]})")
    idx = np.floor(np.linspace(0, len(candidates) - 1, n)).astype(int)
    return [candidates[i] for i in idx]


def corpus_digest(sentences: list[str]) -> str:
    """SHA-256 (hex) of the sentences joined by newlines: identifies the corpus in stored results."""
    return hashlib.sha256("\n".join(sentences).encode()).hexdigest()
