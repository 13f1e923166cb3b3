"""Does an evaluation text overlap the training text? Word n-gram matching, as GPT-3 used for its
contamination checks (13-grams of lowercased words, punctuation ignored)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from harness.data.corpora import Document

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Overlap:
    ngrams: int  # n-grams in the checked text
    shared: int  # of those, how many occur somewhere in the reference documents
    example: str | None  # the first shared n-gram, for the message

    @property
    def fraction(self) -> float:
        return self.shared / self.ngrams if self.ngrams else 0.0


def ngram_overlap(text: str, documents: Iterable[Document | str], n: int = 13) -> Overlap:
    """How many word n-grams of `text` also occur in `documents` (e.g. the training split)."""
    seen: set[int] = set()
    for doc in documents:
        words = _words(doc.text if isinstance(doc, Document) else doc)
        seen.update(hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1))
    words = _words(text)
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    shared = [g for g in grams if hash(g) in seen]
    return Overlap(len(grams), len(shared), " ".join(shared[0]) if shared else None)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())
