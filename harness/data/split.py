"""Training / held-out split by whole document, so no line of a held-out play is ever trained on."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from harness.data.corpora import Document, load_corpus
from harness.errors import ConfigError


def split_documents(
    documents: Sequence[Document], val_fraction: float, seed: int
) -> tuple[tuple[Document, ...], tuple[Document, ...]]:
    """(train, val): round(n * val_fraction) documents, at least one, drawn by the seed.

    Both sides keep the corpus order, so held-out text reads (and is evaluated) front to back.
    """
    n = len(documents)
    if not 0 < val_fraction < 1:
        raise ConfigError("val_fraction", f"{val_fraction} is out of range; allowed: 0 < x < 1")
    if n < 2:
        raise ConfigError("corpus", f"has {n} document(s); a split by document needs at least 2 "
                          "(a lone file is cut into parts; allowed: a folder of 2+ files)")
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    # Rank documents by a hash of (seed, name): the same on every machine and Python version
    # (random's algorithms may change between versions), and independent of the corpus order.
    ranked = sorted(range(n), key=lambda i: _rank_key(seed, documents[i].name, i))
    held_out = set(ranked[:n_val])
    train = tuple(d for i, d in enumerate(documents) if i not in held_out)
    val = tuple(d for i, d in enumerate(documents) if i in held_out)
    return train, val


def _rank_key(seed: int, name: str, index: int) -> tuple[str, int]:
    return hashlib.sha256(f"{seed}\0{name}".encode()).hexdigest(), index


def held_out_documents(corpus: str, val_fraction: float, seed: int) -> tuple[Document, ...]:
    """The held-out documents of a corpus spec, as a training run with these settings left them."""
    return split_documents(load_corpus(corpus).documents, val_fraction, seed)[1]
