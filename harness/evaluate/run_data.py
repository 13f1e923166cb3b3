"""A run's text and tokenizer, rebuilt from its DataConfig exactly as training built them."""

from __future__ import annotations

from functools import lru_cache

from harness.data import (
    DataConfig,
    Document,
    Tokenizer,
    build_tokenizer,
    documents_digest,
    load_corpus,
    load_tokenizer,
    split_documents,
)
from harness.errors import ConfigError

Split = tuple[tuple[Document, ...], tuple[Document, ...]]


@lru_cache(maxsize=4)
def corpus_split(corpus: str, val_fraction: float, split_seed: int) -> Split:
    """(train, held-out) documents of a corpus under a run's split settings (read once)."""
    return split_documents(load_corpus(corpus).documents, val_fraction, split_seed)


def run_split(data: DataConfig) -> Split:
    return corpus_split(data.corpus, data.val_fraction, data.split_seed)


def run_tokenizer(data: DataConfig, vocab_size: int, digest: str | None = None) -> Tokenizer:
    """The run's tokenizer. A trained BPE comes from the cache, or, when the cache was deleted, is
    trained again on the same training split (deterministic); `digest`, the run's recorded
    data.tokenizer_digest, proves the result tokenizes exactly as training did."""
    if data.tokenizer == "bpe":
        train, _ = run_split(data)
        tokenizer = build_tokenizer("bpe", [d.text for d in train], data.vocab_size,
                                    data.cache_dir, documents_digest(train))
    else:
        tokenizer = load_tokenizer(data.tokenizer, data.cache_dir)
    if digest and tokenizer.digest != digest:
        raise ConfigError("data.tokenizer", f"the rebuilt {tokenizer.name!r} has digest "
                          f"{tokenizer.digest}, not the run's recorded {digest}: it would not "
                          "tokenize as training did")
    if tokenizer.vocab_size != vocab_size:
        raise ConfigError("model.vocab_size", f"{vocab_size} in the checkpoint, but its tokenizer "
                          f"{tokenizer.name!r} has {tokenizer.vocab_size} ids")
    return tokenizer
