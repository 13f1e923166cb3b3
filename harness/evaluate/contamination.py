"""Is an evaluation example in the training text? An index of the training split's word n-grams,
built once and asked once per example (harness.data.ngram_overlap rebuilds it on every call).

Words and n-grams are those of ngram_overlap: lowercased runs of word characters, punctuation
ignored, so a line that differs from training text only in punctuation still counts as seen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from harness.data import Document

_WORD = re.compile(r"\w+")  # the same words as harness.data.overlap


class NgramIndex:
    def __init__(self, documents: Iterable[Document | str], n: int):
        self.n = n
        self._seen: set[int] = set()
        for doc in documents:
            words = words_of(doc.text if isinstance(doc, Document) else doc)
            self._seen.update(hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1))

    def shared(self, text: str) -> int:
        """How many word n-grams of `text` occur in the indexed documents."""
        words = words_of(text)
        return sum(hash(tuple(words[i:i + self.n])) in self._seen
                   for i in range(len(words) - self.n + 1))


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower())
