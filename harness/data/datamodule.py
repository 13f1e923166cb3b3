"""TextDataModule: corpus -> split by document -> tokenizer -> memmapped ids -> window batches.

Batches are int64 tensors of shape (B, seq_len + 1): inputs = batch[:, :-1], targets =
batch[:, 1:]. Training batches are an endless stream in which batch `step` is a pure function of
(seed, step): a resumed run sees exactly the batches an uninterrupted one would, and max_steps
alone ends training. Validation is the same fixed windows every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader

from harness.data.config import DataConfig
from harness.data.corpora import Corpus, Document, documents_digest, load_corpus
from harness.data.split import split_documents
from harness.data.tokenizers import Tokenizer, build_tokenizer
from harness.data.tokens import encode_documents, token_dtype, token_path
from harness.data.windows import (
    FixedSampler,
    StepBatches,
    TokenWindows,
    validation_offsets,
)
from harness.errors import ConfigError


@dataclass(frozen=True)
class PreparedData:
    """Everything prepare() builds; the token streams themselves stay on disk."""

    corpus: Corpus
    train_documents: tuple[Document, ...]
    val_documents: tuple[Document, ...]
    train_digest: str  # keys the BPE and the training memmap
    tokenizer: Tokenizer
    train_tokens: int
    val_tokens: int


class TextDataModule(pl.LightningDataModule):
    """`order_seed` orders the training windows (a run passes its own seed; the split keeps
    `config.split_seed`). `seq_len`, when given, replaces the config's (a training run resolves it
    from the model); self.config holds the values in use."""

    def __init__(self, config: DataConfig | None = None, *, seq_len: int | None = None,
                 order_seed: int = 0):
        super().__init__()
        config = config or DataConfig()
        self.config = config if seq_len is None else config.replace(seq_len=seq_len)
        self.order_seed = order_seed
        if self.config.seq_len is None:
            raise ConfigError("seq_len", "None stands for the model's context_length, which the "
                              "data module cannot know; allowed: integers >= 1, or pass seq_len=")
        self._prepared: PreparedData | None = None

    # -- building (all of it before step 0) ------------------------------------------------------
    def prepare(self) -> TextDataModule:
        """Read, split, tokenize and cache; raise ConfigError on a corpus that cannot work.

        Idempotent and cheap once cached; the CLI calls it up front so that a bad corpus fails
        before a model is built. Lightning's prepare_data and setup call it too.
        """
        if self._prepared is None:
            self._prepared = self._build()
        return self

    @property
    def data(self) -> PreparedData:
        self.prepare()
        assert self._prepared is not None
        return self._prepared

    def prepare_data(self) -> None:
        self.prepare()

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _build(self) -> PreparedData:
        cfg = self.config
        corpus = load_corpus(cfg.corpus)
        train, val = split_documents(corpus.documents, cfg.val_fraction, cfg.split_seed)
        train_digest = documents_digest(train)
        tokenizer = build_tokenizer(cfg.tokenizer, [d.text for d in train], cfg.vocab_size,
                                    cfg.cache_dir, train_digest)
        train_tokens = len(encode_documents(train, tokenizer, cfg.cache_dir, "train"))
        val_tokens = len(encode_documents(val, tokenizer, cfg.cache_dir, "val"))
        prepared = PreparedData(corpus, train, val, train_digest, tokenizer, train_tokens,
                                val_tokens)
        check_sizes(cfg, self.seq_len, prepared)
        return prepared

    def split_tokens(self, split: str) -> np.ndarray:
        """The memmapped token stream of "train" or "val" (documents joined by the separator)."""
        documents = {"train": self.train_documents, "val": self.val_documents}[split]
        return encode_documents(documents, self.tokenizer, self.config.cache_dir, split)

    # -- what a run records (each builds on first use) -------------------------------------------
    @property
    def seq_len(self) -> int:
        assert self.config.seq_len is not None  # resolved in __init__
        return self.config.seq_len

    @property
    def corpus(self) -> Corpus:
        return self.data.corpus

    @property
    def train_documents(self) -> tuple[Document, ...]:
        return self.data.train_documents

    @property
    def val_documents(self) -> tuple[Document, ...]:
        return self.data.val_documents

    @property
    def tokenizer(self) -> Tokenizer:
        return self.data.tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def corpus_digest(self) -> str:
        return self.corpus.digest

    @property
    def train_digest(self) -> str:
        return self.data.train_digest

    @property
    def tokenizer_digest(self) -> str:
        return self.tokenizer.digest

    @property
    def train_tokens(self) -> int:
        return self.data.train_tokens

    @property
    def val_tokens(self) -> int:
        return self.data.val_tokens

    def provenance(self) -> dict[str, str | int]:
        """Flat values to log with a run: enough to rebuild and verify its data and tokenizer."""
        return {
            "corpus_digest": self.corpus_digest,
            "train_digest": self.train_digest,
            "train_documents": len(self.train_documents),
            "val_documents": len(self.val_documents),
            "tokenizer_name": self.tokenizer.name,
            "tokenizer_digest": self.tokenizer_digest,
            "tokenizer_vocab_size": self.vocab_size,
            "train_tokens": self.train_tokens,
            "val_tokens": self.val_tokens,
        }

    # -- loaders ---------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        windows = self._windows(self.train_documents, "train")
        # A resumed trainer has restored global_step before it asks for the loader.
        start = self.trainer.global_step if self.trainer is not None else 0
        batches = StepBatches(windows, self.config.batch_size, self.order_seed, start)
        workers = self.config.num_workers
        return DataLoader(batches, batch_size=None, num_workers=workers,
                          persistent_workers=workers > 0)

    def val_dataloader(self) -> DataLoader:
        cfg = self.config
        windows = self._windows(self.val_documents, "val")
        cap = None if cfg.val_batches is None else cfg.val_batches * cfg.batch_size
        offsets = validation_offsets(self.val_tokens, self.seq_len, cap)
        return self._loader(windows, FixedSampler(offsets), drop_last=False)

    def _windows(self, documents: tuple[Document, ...], split: str) -> TokenWindows:
        path = token_path(self.config.cache_dir, documents, self.tokenizer, split)
        return TokenWindows(path, token_dtype(self.tokenizer.vocab_size), self.seq_len)

    def _loader(self, windows: TokenWindows, sampler: Any, drop_last: bool) -> DataLoader:
        workers = self.config.num_workers
        return DataLoader(windows, batch_size=self.config.batch_size, sampler=sampler,
                          drop_last=drop_last, num_workers=workers,
                          persistent_workers=workers > 0)


def check_sizes(cfg: DataConfig, seq_len: int, data: PreparedData) -> None:
    """One training batch and one validation window must fit, or nothing can run."""
    name = data.tokenizer.name
    need = cfg.batch_size * (seq_len + 1)
    if data.train_tokens < need:
        raise ConfigError("corpus", f"{cfg.corpus!r}: its training split has {data.train_tokens} "
                          f"{name} tokens; one batch needs batch_size * (seq_len + 1) = {need}; "
                          "allowed: a larger corpus, or a smaller batch_size or seq_len")
    if data.val_tokens < seq_len + 1:
        raise ConfigError("corpus", f"{cfg.corpus!r}: its held-out split has {data.val_tokens} "
                          f"{name} tokens; one validation window needs seq_len + 1 = "
                          f"{seq_len + 1}; allowed: a larger corpus or val_fraction, or a "
                          "smaller seq_len")
