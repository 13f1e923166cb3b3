"""Split by whole document: deterministic from the seed, disjoint, never empty on either side."""

import pytest

from harness.data.corpora import Document, load_corpus
from harness.data.overlap import ngram_overlap
from harness.data.split import held_out_documents, split_documents
from harness.errors import ConfigError


@pytest.fixture(scope="module")
def plays():
    return load_corpus("shakespeare").documents


def test_split_is_by_document_and_disjoint(plays):
    train, val = split_documents(plays, 0.1, seed=0)
    assert len(val) == 4 and len(train) == 34  # round(38 * 0.1)
    assert {d.name for d in train}.isdisjoint(d.name for d in val)
    assert {d.name for d in train} | {d.name for d in val} == {d.name for d in plays}
    order = [d.name for d in plays]
    assert [order.index(d.name) for d in val] == sorted(order.index(d.name) for d in val)


def test_split_is_deterministic_from_the_seed(plays):
    assert split_documents(plays, 0.1, 0) == split_documents(plays, 0.1, 0)
    assert split_documents(plays, 0.1, 0)[1] != split_documents(plays, 0.1, 1)[1]
    assert held_out_documents("shakespeare", 0.1, 0) == split_documents(plays, 0.1, 0)[1]


def test_split_keeps_one_document_on_each_side():
    docs = [Document(str(i), "text") for i in range(3)]
    assert [len(s) for s in split_documents(docs, 0.01, 0)] == [2, 1]
    assert [len(s) for s in split_documents(docs, 0.99, 0)] == [1, 2]


def test_split_refuses_what_cannot_be_split():
    with pytest.raises(ConfigError, match=r"^corpus: has 1 document"):
        split_documents([Document("only", "text")], 0.1, 0)
    for fraction in (0, 1, 1.5):
        with pytest.raises(ConfigError, match=r"^val_fraction: .*allowed: 0 < x < 1"):
            split_documents([Document("a", "x"), Document("b", "y")], fraction, 0)


def test_overlap_finds_training_text_and_ignores_case_and_punctuation():
    train = [Document("a", " ".join(f"word{i}" for i in range(100)))]
    copied = "WORD10, word11; " + " ".join(f"word{i}" for i in range(12, 40))
    assert ngram_overlap(copied, train).fraction == 1.0
    assert ngram_overlap("something else " * 20, train).fraction == 0.0
    found = ngram_overlap(copied + " new text " * 10, train)
    assert 0 < found.fraction < 1 and found.example.startswith("word10 word11")


def test_held_out_plays_do_not_overlap_the_training_plays(plays):
    train, val = split_documents(plays, 0.1, 0)
    assert ngram_overlap(val[0].text, train).fraction < 0.01
