"""DataConfig: what to read, how to tokenize it, and how to batch it; validated on creation.

Cheap checks run here (names, ranges, that a corpus path exists); checks that need the text
(corpus too small for one batch) run in TextDataModule.prepare(), still before step 0.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from harness.data.corpora import check_corpus_spec
from harness.data.tokenizers import MIN_BPE_VOCAB, TOKENIZERS
from harness.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    corpus: str = "shakespeare"  # one of corpora.CORPORA, a .txt/.md file or folder, hf:NAME[:CFG]
    tokenizer: str = "bpe"  # one of TOKENIZERS
    vocab_size: int = 2048  # the BPE's size only: byte has 256 ids, gpt2 50,257
    seq_len: int | None = 256  # tokens of context (None: the model's context_length, which the
    # caller resolves); a batch row holds seq_len + 1 tokens (inputs and targets)
    batch_size: int = 16
    val_fraction: float = 0.1  # share of documents held out (at least one)
    split_seed: int = 0  # picks the held-out documents; fixed across a study's seeds, so all
    # of them are evaluated on the same text
    seed: int = 0  # the order of training windows (a training run passes its own as order_seed)
    cache_dir: str = ".harness/cache"  # trained BPEs and token memmaps; safe to delete
    num_workers: int = 0  # DataLoader workers; windows are memmap slices, so 0 is usually enough
    val_batches: int | None = 16  # cap on validation batches (spread over the split); None = all

    def __post_init__(self) -> None:
        _validate(self)

    def replace(self, **changes: Any) -> DataConfig:
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ConfigError(unknown[0], f"unknown field; allowed: {', '.join(field_names())}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataConfig:
        return cls().replace(**values)


def field_names() -> list[str]:
    return [f.name for f in fields(DataConfig)]


def _validate(cfg: DataConfig) -> None:
    check_corpus_spec(cfg.corpus)
    if cfg.tokenizer not in TOKENIZERS:
        raise ConfigError("tokenizer", f"{cfg.tokenizer!r} is not allowed; "
                          f"allowed: {', '.join(TOKENIZERS)}")
    _check_int(cfg, "vocab_size", MIN_BPE_VOCAB if cfg.tokenizer == "bpe" else 1)
    _check_int(cfg, "batch_size", 1)
    if cfg.seq_len is not None:
        _check_int(cfg, "seq_len", 1)
    for name in ("split_seed", "seed", "num_workers"):
        _check_int(cfg, name, 0)
    if cfg.val_batches is not None:
        _check_int(cfg, "val_batches", 1)
    value = cfg.val_fraction
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError("val_fraction", f"{value!r} is out of range; allowed: numbers in (0, 1)")
    if not isinstance(cfg.cache_dir, str | os.PathLike) or not str(cfg.cache_dir):
        raise ConfigError("cache_dir", f"{cfg.cache_dir!r} is not a path; allowed: a folder path")
    if Path(cfg.cache_dir).exists() and not Path(cfg.cache_dir).is_dir():
        raise ConfigError("cache_dir", f"{str(cfg.cache_dir)!r} is a file; allowed: a folder path")


def _check_int(cfg: DataConfig, name: str, minimum: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"{value!r} is not an integer; allowed: integers >= {minimum}")
    if value < minimum:
        raise ConfigError(name, f"{value} is too small; allowed: integers >= {minimum}")
