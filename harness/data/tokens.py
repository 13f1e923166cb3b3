"""Token ids of a split, encoded once and cached as a flat numpy memmap.

The stream is doc_1 SEP doc_2 SEP ... where SEP is the tokenizer's separator: <|endoftext|> for
the BPEs (one id the text cannot produce by accident, and GPT-2's own convention), a blank line
for bytes (which have no spare id; a blank line is also how plain text separates sections).
Training windows that straddle a separator teach the model that a new document starts there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from harness.data.corpora import Document, documents_digest
from harness.data.tokenizers import Tokenizer

ENCODE_BATCH = 64  # documents per encode_batch call: bounds memory on large corpora


def token_dtype(vocab_size: int) -> type[np.unsignedinteger]:
    return np.uint16 if vocab_size <= 2**16 else np.uint32  # ids are < vocab_size


def token_path(cache_dir: Path | str, documents: Sequence[Document], tokenizer: Tokenizer,
               split: str) -> Path:
    """Keyed by the split's documents (so by corpus and split) and by the tokenizer's digest."""
    dtype = np.dtype(token_dtype(tokenizer.vocab_size)).name
    name = f"{split}-{documents_digest(documents)}-{tokenizer.digest}.{dtype}.bin"
    return Path(cache_dir) / "tokens" / name


def encode_documents(documents: Sequence[Document], tokenizer: Tokenizer,
                     cache_dir: Path | str, split: str) -> np.ndarray:
    """The split's token stream, read-only and memory-mapped (encoded on the first call only)."""
    path = token_path(cache_dir, documents, tokenizer, split)
    dtype = token_dtype(tokenizer.vocab_size)
    if not path.exists():
        _write_tokens(documents, tokenizer, path, dtype)
    if path.stat().st_size == 0:
        return np.zeros(0, dtype=dtype)  # mmap cannot map an empty file
    return np.memmap(path, dtype=dtype, mode="r")


def _write_tokens(documents: Sequence[Document], tokenizer: Tokenizer, path: Path,
                  dtype: type[np.unsignedinteger]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # write then rename: readers never see half
    separator = list(tokenizer.separator)
    with tmp.open("wb") as f:
        for start in range(0, len(documents), ENCODE_BATCH):
            batch = [d.text for d in documents[start:start + ENCODE_BATCH]]
            for ids in tokenizer.encode_batch(batch):
                f.write(np.asarray(ids + separator, dtype=dtype).tobytes())
    os.replace(tmp, path)
