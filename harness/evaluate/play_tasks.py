"""Multiple-choice tasks built from held-out plays, so a Shakespeare model can be tested zero-shot
on text it never saw, without any download.

- mc:next-line: the true next line of a speech, against lines of about the same length drawn from
  the other held-out plays.
- mc:speaker: who speaks next: the true speaker's tag and three other speakers of the same play,
  each followed by the true first line of the speech (so the speech itself is evidence).

Examples are drawn by a hash of (seed, task, version, play, line), which is the same on every
machine and Python version. Every example is checked against the training split by word n-grams
and dropped if any is shared; the count dropped is reported with the task.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.data import Document
from harness.errors import ConfigError
from harness.evaluate.contamination import NgramIndex
from harness.evaluate.multiple_choice import MCExample

VERSIONS = {"mc:next-line": "1", "mc:speaker": "1"}  # bump when examples change
SEED = 1234
SIZE = 1000  # examples per task: stderr about 1.6 points at 50% accuracy
CHOICES = 4
CONTEXT_LINES = 8  # lines of the play before the prediction point
MIN_WORDS = 4  # shorter lines ("Ay.", "O!") say too little to tell apart
LENGTH_RATIO = 1.33  # distractor lines are within this factor of the true line's length
MIN_SPEECHES = 5  # a distractor speaker speaks at least this often in the play
OVERLAP_N = 8  # word n-grams for the training-overlap check: a verse line is about 8 words
_SPEAKER = re.compile(r"^[A-Z][\w'.,\- ]{0,40}:$")  # "HAMLET:", "First Lord:"


@dataclass(frozen=True)
class Line:
    play: str
    index: int  # line number in the play's text
    text: str
    speaker: str | None  # set on speech lines (the tag, without the colon); None elsewhere
    first: bool  # the first line of a speech (just after the speaker tag)


@dataclass(frozen=True)
class BuiltTask:
    name: str
    version: str
    examples: tuple[MCExample, ...]
    dropped: int  # candidates dropped for sharing an n-gram with the training split
    source: str  # in words: which documents the examples come from


def build_play_task(name: str, held_out: Sequence[Document], training: Iterable[Document],
                    size: int = SIZE, seed: int = SEED) -> BuiltTask:
    """`size` examples of task `name` (a key of VERSIONS) from `held_out` plays; none shares a
    word n-gram with `training`."""
    if name not in VERSIONS:
        raise ConfigError("tasks", f"{name!r} is not a play task; allowed: {', '.join(VERSIONS)}")
    plays = Plays({doc.name: parse_play(doc) for doc in held_out})
    if len(plays.lines) < 2:
        raise ConfigError("data.val_fraction", f"{name} draws choices across held-out plays and "
                          f"the split holds {len(plays.lines)}; allowed: a split with 2+ "
                          "held-out plays")
    index = NgramIndex(training, OVERLAP_N)
    make = plays.next_line_example if name == "mc:next-line" else plays.speaker_example
    version = VERSIONS[name]
    candidates = [line for lines in plays.lines.values() for line in lines
                  if _eligible(name, line)]
    candidates.sort(key=lambda line: _rank(seed, name, version, line.play, line.index))
    examples: list[MCExample] = []
    dropped = 0
    for line in candidates:
        example = make(line, (seed, name, version, line.play, line.index))
        if example is None:
            continue
        if index.shared(example.context + "\n" + "\n".join(example.choices)):
            dropped += 1
            continue
        examples.append(example)
        if len(examples) == size:
            break
    source = (f"{len(plays.lines)} held-out plays ({', '.join(plays.lines)}); {OVERLAP_N}-gram "
              "check against the training split")
    return BuiltTask(name, version, tuple(examples), dropped, source)


class Plays:
    """Parsed held-out plays with the pools distractors are drawn from, indexed once."""

    def __init__(self, lines: dict[str, list[Line]]):
        self.lines = lines
        # Per play, speech lines long enough to be choices, sorted by length (for a length range).
        self._by_length: dict[str, list[Line]] = {
            play: sorted((x for x in play_lines if x.speaker is not None
                          and len(x.text.split()) >= MIN_WORDS), key=lambda x: len(x.text))
            for play, play_lines in lines.items()}
        self._lengths = {play: [len(x.text) for x in pool]
                         for play, pool in self._by_length.items()}
        self._speakers: dict[str, list[str]] = {}
        for play, play_lines in lines.items():
            counts = Counter(x.speaker for x in play_lines if x.first)
            self._speakers[play] = sorted(s for s, c in counts.items()
                                          if s is not None and c >= MIN_SPEECHES)

    def next_line_example(self, line: Line, key: tuple) -> MCExample | None:
        low, high = len(line.text) / LENGTH_RATIO, len(line.text) * LENGTH_RATIO
        pool: list[Line] = []
        for play, lengths in self._lengths.items():
            if play != line.play:
                pool += self._by_length[play][bisect_left(lengths, low):bisect_right(lengths, high)]
        distractors = _sample([x.text for x in pool if x.text != line.text], CHOICES - 1, key)
        if len(distractors) < CHOICES - 1:
            return None
        return _shuffled(_context(self.lines[line.play], line.index), line.text, distractors,
                         key)

    def speaker_example(self, line: Line, key: tuple) -> MCExample | None:
        pool = [s for s in self._speakers[line.play] if s != line.speaker]
        distractors = _sample(pool, CHOICES - 1, key)
        if len(distractors) < CHOICES - 1:
            return None
        tag_index = line.index - 1  # the speaker tag sits on the line before the speech
        return _shuffled(_context(self.lines[line.play], tag_index),
                         f"{line.speaker}:\n{line.text}",
                         [f"{name}:\n{line.text}" for name in distractors], key)


def parse_play(doc: Document) -> list[Line]:
    """Every line of a play's text, speech lines marked with their speaker."""
    out: list[Line] = []
    speaker: str | None = None
    first = False
    previous = ""
    for i, text in enumerate(doc.text.split("\n")):
        if not text.strip():
            speaker = None  # a blank line ends a speech
        elif not previous.strip() and _SPEAKER.match(text):
            out.append(Line(doc.name, i, text, None, False))
            speaker, first, previous = text[:-1], True, text
            continue
        out.append(Line(doc.name, i, text, speaker, first and speaker is not None))
        first = False
        previous = text
    return out


def _eligible(name: str, line: Line) -> bool:
    if line.speaker is None or len(line.text.split()) < MIN_WORDS:
        return False
    return line.first if name == "mc:speaker" else True


def _context(lines: list[Line], index: int) -> str:
    """The CONTEXT_LINES lines before line `index`, ending with a newline."""
    return "\n".join(line.text for line in lines[max(0, index - CONTEXT_LINES):index]) + "\n"


def _shuffled(context: str, gold: str, others: list[str], key: tuple) -> MCExample:
    """The gold choice at a position drawn from the key, so its place carries no signal."""
    position = int(_rank(*key, "position"), 16) % (len(others) + 1)
    choices = [*others[:position], gold, *others[position:]]
    return MCExample(context, tuple(choices), (position,))


def _sample(pool: Sequence[str], count: int, key: tuple) -> list[str]:
    """`count` distinct items of `pool` drawn by hash of the key (fewer if the pool is small)."""
    distinct = sorted(set(pool))  # sorted: the draw must not depend on the pool's order
    chosen: list[str] = []
    for attempt in range(8 * count):
        if len(chosen) == count or len(chosen) == len(distinct):
            break
        item = distinct[int(_rank(*key, "draw", attempt), 16) % len(distinct)]
        if item not in chosen:
            chosen.append(item)
    return chosen


def _rank(*parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode("utf-8")).hexdigest()
