"""Tasks built from held-out plays: deterministic, well-formed, and disjoint from training text."""

from __future__ import annotations

import pytest

from harness.data import Document, ngram_overlap
from harness.errors import ConfigError
from harness.evaluate.contamination import NgramIndex
from harness.evaluate.multiple_choice import examples_digest
from harness.evaluate.play_tasks import OVERLAP_N, build_play_task, parse_play
from harness.evaluate.run_data import corpus_split

SIZE = 150


@pytest.fixture(scope="module")
def split():
    return corpus_split("shakespeare", 0.1, 0)


@pytest.fixture(scope="module", params=["mc:next-line", "mc:speaker"])
def built(request, split):
    train, held_out = split
    return build_play_task(request.param, held_out, train, size=SIZE)


def test_the_same_inputs_build_the_same_examples(built, split):
    train, held_out = split
    again = build_play_task(built.name, held_out, train, size=SIZE)
    assert again.examples == built.examples
    assert examples_digest(again.examples) == examples_digest(built.examples)
    reseeded = build_play_task(built.name, held_out, train, size=SIZE, seed=7)
    assert reseeded.examples != built.examples
    assert built.version == "1" and len(built.examples) == SIZE


def test_no_example_shares_text_with_the_training_split(built, split):
    train, held_out = split
    index = NgramIndex(train, OVERLAP_N)
    held_out_text = "\n".join(d.text for d in held_out)
    for example in built.examples:
        text = example.context + "\n" + "\n".join(example.choices)
        assert index.shared(text) == 0
        assert example.context.rstrip("\n").split("\n")[-1] in held_out_text
    # The index agrees with harness.data.ngram_overlap (which rebuilds its table per call).
    sample = built.examples[0].context
    assert ngram_overlap(sample, train, n=OVERLAP_N).shared == 0
    seen = train[0].text.split("\n")[200:206]
    assert ngram_overlap("\n".join(seen), train, n=OVERLAP_N).shared == index.shared(
        "\n".join(seen)) > 0


def test_examples_are_well_formed(built):
    positions = {example.gold[0] for example in built.examples}
    assert positions == {0, 1, 2, 3}  # the answer's place carries no signal
    for example in built.examples:
        assert len(example.choices) == 4 and len(set(example.choices)) == 4
        assert example.context.endswith("\n") and len(example.gold) == 1


def test_next_line_choices_come_from_other_held_out_plays(split):
    train, held_out = split
    built = build_play_task("mc:next-line", held_out, train, size=30)
    lines = {doc.name: set(doc.text.split("\n")) for doc in held_out}
    for example in built.examples:
        gold = example.choices[example.gold[0]]
        home = [name for name, play in lines.items() if example.context.split("\n")[-2] in play]
        assert gold in lines[home[0]]
        for i, choice in enumerate(example.choices):
            if i != example.gold[0]:
                assert any(choice in lines[name] for name in lines if name != home[0])


def test_speaker_choices_differ_only_in_the_speaker(split):
    train, held_out = split
    for example in build_play_task("mc:speaker", held_out, train, size=30).examples:
        speeches = {choice.split("\n", 1)[1] for choice in example.choices}
        assert len(speeches) == 1
        assert all(choice.split("\n")[0].endswith(":") for choice in example.choices)


def test_parse_play_marks_speakers():
    doc = Document("p", "ACT I\n\nHAMLET:\nTo be, or not to be:\nthat is the question.\n\n"
                   "Exit\n\nFirst Lord:\nMy lord.\n")
    lines = parse_play(doc)
    assert [(x.speaker, x.first) for x in lines if x.text] == [
        (None, False), (None, False), ("HAMLET", True), ("HAMLET", False), (None, False),
        (None, False), ("First Lord", True)]


def test_one_held_out_play_is_refused(split):
    train, held_out = split
    with pytest.raises(ConfigError, match="2\\+ held-out plays") as error:
        build_play_task("mc:next-line", held_out[:1], train)
    assert error.value.field == "data.val_fraction"
