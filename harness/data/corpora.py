"""Corpora as lists of named documents, from packages on disk, user files or (with a network) HF.

A corpus is split into training and held-out text by whole document (a play, a book, a file), so
the held-out perplexity measures text the model has never seen a line of. Nothing here downloads:
the two built-in corpora ship inside pip packages (see the shared STACK notes).
"""

from __future__ import annotations

from pathlib import Path

from harness.data.documents import (  # noqa: F401 (also read from here by the data layer)
    ALLOWED,
    CORPORA,
    HF_PREFIX,
    SINGLE_FILE_PARTS,
    TEXT_SUFFIXES,
    Corpus,
    Document,
    documents_digest,
)
from harness.errors import ConfigError


def check_corpus_spec(spec: object) -> None:
    """Cheap check of a corpus spec without reading it; raises ConfigError('corpus', ...)."""
    if not isinstance(spec, str | Path) or not str(spec):
        raise ConfigError("corpus", f"{spec!r} is not a corpus; {ALLOWED}")
    text = str(spec)
    if text in CORPORA:
        return
    if text.startswith(HF_PREFIX):
        if not text[len(HF_PREFIX):].split(":")[0]:
            raise ConfigError("corpus", f"{text!r} names no dataset; {ALLOWED}")
        return
    path = Path(text).expanduser()
    if not path.exists():
        raise ConfigError("corpus", f"{text!r} is neither a known corpus nor an existing path; "
                          f"{ALLOWED}")
    if path.is_file() and path.suffix not in TEXT_SUFFIXES:
        raise ConfigError("corpus", f"{text!r} is not a {'/'.join(TEXT_SUFFIXES)} file; {ALLOWED}")


def load_corpus(spec: str | Path) -> Corpus:
    """Read a corpus: a built-in name, a text file or folder, or hf:NAME[:CONFIG]."""
    check_corpus_spec(spec)
    text = str(spec)
    if text == "shakespeare":
        from harness.data.builtin import shakespeare_documents
        documents = shakespeare_documents()
    elif text == "bible":
        from harness.data.builtin import bible_documents
        documents = bible_documents()
    elif text.startswith(HF_PREFIX):
        from harness.data.hf import hf_documents
        documents = hf_documents(text[len(HF_PREFIX):])
    else:
        from harness.data.files import path_documents
        documents = path_documents(Path(text).expanduser(), SINGLE_FILE_PARTS)
    documents = tuple(d for d in documents if d.text.strip())
    if not documents:
        raise ConfigError("corpus", f"{text!r} holds no text; {ALLOWED}")
    return Corpus(text, documents)
