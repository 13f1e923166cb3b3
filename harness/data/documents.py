"""A corpus as the rest of the data layer sees it: named documents, and the names of the
corpora and file kinds a spec may give. Imports nothing of the harness: every corpus source
(builtin.py, files.py, hf.py) builds on it, and corpora.py chooses among them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

CORPORA = ("shakespeare", "bible")
HF_PREFIX = "hf:"
TEXT_SUFFIXES = (".txt", ".md")
SINGLE_FILE_PARTS = 20  # a lone file is cut into this many contiguous documents, to be split
ALLOWED = (
    f"allowed: {', '.join(CORPORA)}, a path to a {'/'.join(TEXT_SUFFIXES)} file or a folder of "
    f"them, or {HF_PREFIX}NAME[:CONFIG] (Hugging Face datasets, needs the package and a network)"
)


@dataclass(frozen=True)
class Document:
    name: str  # unique within its corpus, e.g. "tragedies/hamlet" or "Genesis"
    text: str


@dataclass(frozen=True)
class Corpus:
    name: str  # the spec it was loaded from
    documents: tuple[Document, ...]

    @cached_property
    def digest(self) -> str:
        return documents_digest(self.documents)

    @property
    def num_chars(self) -> int:
        return sum(len(d.text) for d in self.documents)


def documents_digest(documents: tuple[Document, ...] | list[Document]) -> str:
    """Short sha256 over names and texts: the provenance key of a corpus or of one split of it."""
    h = hashlib.sha256()
    for doc in documents:
        for part in (doc.name, doc.text):
            data = part.encode("utf-8")
            h.update(len(data).to_bytes(8, "little"))  # length prefix: ("ab","c") != ("a","bc")
            h.update(data)
    return h.hexdigest()[:16]
