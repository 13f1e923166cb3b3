"""DataConfig: what to read, how to tokenize it, and how to batch it; validated on creation.

Cheap checks run here (names, ranges, that a corpus path exists); checks that need the text
(corpus too small for one batch) run in TextDataModule.prepare(), still before step 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.data.corpora import check_corpus_spec
from harness.data.tokenizers import MIN_BPE_VOCAB, TOKENIZERS
from harness.errors import ConfigError
from harness.validate import ConfigFields, check_choice, check_int


@dataclass(frozen=True)
class DataConfig(ConfigFields):
    corpus: str = "shakespeare"  # one of corpora.CORPORA, a .txt/.md file or folder, hf:NAME[:CFG]
    tokenizer: str = "bpe"  # one of TOKENIZERS
    vocab_size: int = 2048  # the BPE's size only: byte has 256 ids, gpt2 50,257
    seq_len: int | None = 256  # tokens of context (None: the model's context_length, which the
    # caller resolves); a batch row holds seq_len + 1 tokens (inputs and targets)
    batch_size: int = 16
    val_fraction: float = 0.1  # share of documents held out (at least one)
    # Picks the held-out documents. Not the run's seed (that orders the training windows), so
    # every seed of a study is evaluated on the same text.
    split_seed: int = 0
    cache_dir: str = ".harness/cache"  # trained BPEs and token memmaps; safe to delete
    num_workers: int = 0  # DataLoader workers; windows are memmap slices, so 0 is usually enough
    val_batches: int | None = 16  # cap on validation batches (spread over the split); None = all

    def __post_init__(self) -> None:
        _validate(self)


def _validate(cfg: DataConfig) -> None:
    check_corpus_spec(cfg.corpus)
    check_choice("tokenizer", cfg.tokenizer, TOKENIZERS)
    check_int("vocab_size", cfg.vocab_size, MIN_BPE_VOCAB if cfg.tokenizer == "bpe" else 1)
    check_int("batch_size", cfg.batch_size, 1)
    for name in ("seq_len", "val_batches"):  # None: the model's context / every window
        if getattr(cfg, name) is not None:
            check_int(name, getattr(cfg, name), 1)
    for name in ("split_seed", "num_workers"):
        check_int(name, getattr(cfg, name), 0)
    value = cfg.val_fraction
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError("val_fraction", f"{value!r} is out of range; allowed: numbers in (0, 1)")
    if not isinstance(cfg.cache_dir, str | os.PathLike) or not str(cfg.cache_dir):
        raise ConfigError("cache_dir", f"{cfg.cache_dir!r} is not a path; allowed: a folder path")
    if Path(cfg.cache_dir).exists() and not Path(cfg.cache_dir).is_dir():
        raise ConfigError("cache_dir", f"{str(cfg.cache_dir)!r} is a file; allowed: a folder path")
