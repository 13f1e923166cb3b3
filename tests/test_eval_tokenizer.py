"""The evaluated run's tokenizer: rebuilt from its data config, bit for bit, even without cache."""

from __future__ import annotations

import shutil

import pytest

from harness.data import DataConfig
from harness.errors import ConfigError
from harness.evaluate.run_data import corpus_split, run_tokenizer

LINES = ["Now is the winter of our discontent", "Made glorious summer by this sun of York;",
         "And all the clouds that lour'd upon our house", "In the deep bosom of the ocean buried."]


@pytest.fixture
def data(tmp_path) -> DataConfig:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"doc{i}.txt").write_text("\n".join(LINES[i:] + LINES[:i]) * 20)
    return DataConfig(corpus=str(corpus), tokenizer="bpe", vocab_size=300, val_fraction=0.34,
                      cache_dir=str(tmp_path / "cache"))


def test_a_deleted_bpe_cache_is_rebuilt_identically(data):
    first = run_tokenizer(data, 300)
    shutil.rmtree(data.cache_dir)
    corpus_split.cache_clear()
    again = run_tokenizer(data, 300, digest=first.digest)
    assert again.name == first.name and again.digest == first.digest
    assert again.encode("winter of York") == first.encode("winter of York")


def test_a_tokenizer_that_differs_from_the_run_is_refused(data):
    with pytest.raises(ConfigError, match="not the run's recorded 0000") as error:
        run_tokenizer(data, 300, digest="0000")
    assert error.value.field == "data.tokenizer"
    with pytest.raises(ConfigError, match="512 in the checkpoint") as error:
        run_tokenizer(data, 512)
    assert error.value.field == "model.vocab_size"
