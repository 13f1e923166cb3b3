"""User corpora: a text file, or a folder whose text files are the documents."""

from __future__ import annotations

import bisect
import itertools
from pathlib import Path

from harness.data.documents import TEXT_SUFFIXES, Document


def path_documents(path: Path, parts: int) -> list[Document]:
    """Every .txt/.md file under a folder is a document (sorted by path, so the order is the same
    on every machine); a lone file, or a folder with one file, is cut into `parts` documents."""
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
    root = path.parent if path.is_file() else path
    documents = [Document(f.relative_to(root).as_posix(), read_text(f)) for f in files]
    documents = [d for d in documents if d.text.strip()]
    if len(documents) == 1:
        return cut_document(documents[0], parts)
    return documents


def read_text(path: Path) -> str:
    # newline="" keeps "\r\n" as written, so the digest and the tokens match the file's bytes;
    # errors="replace": one stray non-UTF-8 byte in a user's file should not stop a run.
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        return f.read()


def cut_document(document: Document, parts: int) -> list[Document]:
    """Cut one text into up to `parts` contiguous pieces of about equal size, at line ends, so a
    lone file can still be split into training and held-out text by (pseudo-)document."""
    lines = document.text.splitlines(keepends=True)
    parts = max(1, min(parts, len(lines)))
    ends = list(itertools.accumulate(len(line) for line in lines))  # chars up to each line end
    cuts = [0]  # pieces are lines[cuts[k]:cuts[k + 1]]
    for k in range(1, parts):
        ideal = k * ends[-1] / parts
        i = bisect.bisect_left(ends, ideal)  # first line ending at or past the ideal cut
        if i > 0 and ideal - ends[i - 1] < ends[i] - ideal:
            i -= 1  # the line end before it is nearer
        # at least one line per piece, and enough lines left for the pieces after this one
        cuts.append(min(max(i + 1, cuts[-1] + 1), len(lines) - (parts - k)))
    cuts.append(len(lines))
    width = len(str(parts - 1))
    return [Document(f"{document.name}#{k:0{width}d}", "".join(lines[a:b]))
            for k, (a, b) in enumerate(itertools.pairwise(cuts))]
