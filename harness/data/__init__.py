"""Data layer: corpora that ship in pip packages (or user text), splits by document, tokenizers,
token memmaps and the Lightning DataModule. Importing this package loads neither Lightning nor
HF `tokenizers`; TextDataModule (which needs Lightning) is imported on first use.
"""

from typing import Any

from harness.data.config import DataConfig
from harness.data.corpora import CORPORA, Corpus, Document, documents_digest, load_corpus
from harness.data.overlap import ngram_overlap
from harness.data.split import held_out_documents, split_documents
from harness.data.tokenizers import TOKENIZERS, Tokenizer, build_tokenizer, load_tokenizer
from harness.data.tokens import encode_documents

__all__ = [
    "CORPORA",
    "TOKENIZERS",
    "Corpus",
    "DataConfig",
    "Document",
    "TextDataModule",
    "Tokenizer",
    "build_tokenizer",
    "documents_digest",
    "encode_documents",
    "held_out_documents",
    "load_corpus",
    "load_tokenizer",
    "ngram_overlap",
    "split_documents",
]


def __getattr__(name: str) -> Any:
    if name == "TextDataModule":
        from harness.data.datamodule import TextDataModule

        return TextDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
