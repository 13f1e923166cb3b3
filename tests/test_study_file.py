"""Study files: every shipped one validates; bad ones fail with the field and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.ablate.protocol import Protocol, load
from harness.ablate.study_file import load_study, parse_study
from harness.errors import ConfigError

STUDIES = sorted(Path(__file__).parent.parent.glob("ablations/*.yaml"))
BASE = {"name": "s", "base": {"preset": "memoryformer-nano"}, "budget": {"steps": 10},
        "axes": {"model.chunk_size": [4, 8]}}


def test_the_shipped_studies_are_all_there():
    names = {path.stem for path in STUDIES}
    assert {"quickstart", "bucket-bits", "learning-rate", "expansion-bits", "ffn-activation",
            "dense-vs-memory", "weighting-temperature", "knob-grid", "multi-objective",
            "tune-lr-temperature"} <= names


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_shipped_study_validates_and_builds_every_cell(path):
    loaded = load(path)  # builds each cell's RunConfig (a protocol: of every phase it can know)
    if isinstance(loaded, Protocol):
        assert loaded.name == path.stem and loaded.raw["description"]
        return
    study = loaded
    assert study.name == path.stem and study.description
    if study.is_grid:
        assert len(study.cells()) == len({tuple(sorted(c.items())) for c in study.cells()})


def test_grid_cells_are_axes_times_seeds():
    study = parse_study({**BASE, "axes": {"model.chunk_size": [4, 8], "preset": [
        "memoryformer-nano", "dense-nano"]}, "seeds": [0, 1, 2]})
    assert len(study.cells()) == 12
    config = study.run_config({"model.chunk_size": 4, "preset": "dense-nano", "seed": 2})
    assert (config.preset, config.model.kind, config.train.seed) == ("dense-nano", "dense", 2)
    assert config.model.chunk_size == 4 and config.train.max_steps == 10


def test_token_budget_becomes_steps():
    study = parse_study({**BASE, "budget": {"tokens": 100_000, "val_every": 5},
                         "base": {"preset": "memoryformer-nano", "set": {"data.batch_size": 8,
                                                                          "data.seq_len": 128}}})
    assert study.steps == 98 and study.val_every == 5  # ceil(100000 / (8 * 128))


@pytest.mark.parametrize("changes, field, allowed", [
    ({"axes": {"model.colour": [1, 2]}}, "axes.model.colour", "allowed: name, kind"),
    ({"axes": {"optimizer.lr": [1]}}, "axes.optimizer.lr", "allowed: preset, model.FIELD"),
    ({"axes": {"model.chunk_size": ["four"]}}, "model.chunk_size", "integers >= 1"),
    ({"axes": {"model.bucket_bits": [8, 30]}}, "model.bucket_bits", "TiB in fp32"),
    ({"axes": {"model.chunk_size": [4, 4]}}, "axes.model.chunk_size", "distinct values"),
    ({"axes": {}}, "axes", "exactly one of `axes`"),
    ({"search": {"n_trials": 2, "params": {"optim.lr": {"low": 1, "high": 2}}}}, "axes",
     "exactly one of `axes`"),
    ({"pruner": "median"}, "pruner", "allowed: none"),
    ({"budget": {"steps": 10, "tokens": 5}}, "budget", "exactly one of steps, tokens, flops or"),
    ({"seeds": [0, 0]}, "seeds", "distinct"),
    ({"objectives": ["accuracy"]}, "objectives.metric", "val_loss, flops_per_token"),
    ({"colour": 1}, "colour", "allowed: name, description"),
    ({"name": "my study"}, "name", "without spaces"),
    ({"base": {"preset": "gpt-5"}}, "preset", "allowed: pythia-70m"),
])
def test_bad_study_files_name_the_field(tmp_path, changes, field, allowed):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**BASE, **changes}))
    with pytest.raises(ConfigError) as error:
        load_study(path)
    assert error.value.field == field, str(error.value)
    assert allowed in str(error.value)


def test_unaffordable_cell_says_how_many_bytes_and_which_cell(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**BASE, "axes": {"model.bucket_bits": [8, 30]}}))
    with pytest.raises(ConfigError, match=r"= 24\.0 TiB in fp32.* \(in the cell "
                                          r"model\.bucket_bits=30, seed=0\)"):
        load_study(path)


def test_definition_digest_ignores_the_description_only():
    a = parse_study({**BASE, "description": "one"})
    assert a.digest() == parse_study({**BASE, "description": "two"}).digest()
    assert a.digest() != parse_study({**BASE, "seeds": [0, 1]}).digest()
    assert a.with_seeds((0, 1)).digest() == parse_study({**BASE, "seeds": [0, 1]}).digest()
