"""RunConfig: presets plus `section.field=value` overrides, the LR recipe, YAML round trip."""

from __future__ import annotations

import math

import pytest

from harness.errors import ConfigError
from harness.runs.config import RunConfig, build_run_config, with_values
from harness.train.module import lr_factor


def test_overrides_are_typed_from_yaml_and_reach_their_section():
    config = build_run_config("memoryformer-nano", [
        "model.chunk_size=4", "model.weighting=l1", "optim.lr=0.002", "train.max_steps=7",
        "data.corpus=bible", "train.precision=bf16"])
    assert (config.model.chunk_size, config.model.resolved_num_tables) == (4, 32)
    assert config.model.weighting == "l1" and config.optim.lr == 0.002
    assert config.train.max_steps == 7 and config.data.corpus == "bible"
    assert config.train.precision == "bf16"


@pytest.mark.parametrize("overrides, field, allowed", [
    (["model.num_tables=abc"], "model.num_tables", "integers >= 1"),
    (["model.colour=red"], "model.colour", "allowed: name, kind"),
    (["optimizer.lr=1"], "set", "allowed: model, data, optim, train"),
    (["model.chunk_size"], "set", "SECTION.FIELD=VALUE"),
    (["train.precision=fp8"], "train.precision", "32, bf16"),
    (["optim.beta2=1.5"], "optim.beta2", "<= 1"),
    (["train.max_steps=0"], "train.max_steps", "integers >= 1"),
    (["model.bucket_bits=30"], "model.bucket_bits", "bucket_bits <="),
    (["data.seq_len=4096"], "data.seq_len", "allowed: 1..256"),
])
def test_bad_overrides_name_the_field(overrides, field, allowed):
    with pytest.raises(ConfigError) as error:
        build_run_config("memoryformer-nano", overrides)
    assert error.value.field == field
    assert allowed in str(error.value)


def test_unknown_preset():
    with pytest.raises(ConfigError, match=r"^preset: 'nano' is not a preset; allowed: "):
        build_run_config("nano")


@pytest.mark.parametrize("name, lr", [
    ("dense-nano", 1e-3), ("memoryformer-nano", 3e-3), ("pythia-160m", 6e-4),
    ("memoryformer-small", 1.8e-3), ("pythia-410m", 3e-4), ("memoryformer-base", 9e-4)])
def test_peak_lr_is_pythias_and_three_times_that_for_memoryformer(name, lr):
    assert math.isclose(build_run_config(name).peak_lr, lr)
    assert build_run_config(name, ["optim.lr=0.01"]).peak_lr == 0.01


def test_yaml_round_trip_and_flat_params():
    config = build_run_config("memoryformer-nano", ["model.bucket_bits=6", "train.seed=3"])
    assert RunConfig.from_yaml(config.to_yaml()) == config
    flat = config.flat_params()
    assert flat["model.bucket_bits"] == 6 and flat["model.resolved_num_tables"] == 16
    assert flat["train.seed"] == 3 and flat["optim.peak_lr"] == config.peak_lr
    assert flat["data.resolved_seq_len"] == 256


def test_schedule_warms_up_then_decays_to_a_tenth():
    warmup, total = 10, 110
    assert lr_factor(0, warmup, total, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, warmup, total, 0.1) == pytest.approx(1.0)
    assert lr_factor(60, warmup, total, 0.1) == pytest.approx(0.55)
    assert lr_factor(110, warmup, total, 0.1) == pytest.approx(0.1)
    assert lr_factor(500, warmup, total, 0.1) == pytest.approx(0.1)


def test_exponent_floats_and_typed_values():
    config = build_run_config("memoryformer-nano", ["optim.lr=1e-3", "model.name=1e3x"],
                              values={"model.init_std": 1.0e38, "data.corpus": "bible"})
    assert config.optim.lr == 0.001 and config.model.name == "1e3x"
    assert config.model.init_std == 1.0e38 and config.data.corpus == "bible"


def test_typed_values_are_applied_to_a_built_config_and_validated_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "on").mkdir()  # a folder of text named like a YAML boolean
    config = build_run_config("memoryformer-nano")
    changed = with_values(config, {"train.devices": 2, "train.strategy": "ddp",
                                   "data.corpus": "on", "model.kernel": "reference"})
    assert (changed.train.devices, changed.train.strategy) == (2, "ddp")
    assert changed.data.corpus == "on" and changed.model.kernel == "reference"  # not True
    assert changed.model.resolved_num_tables == config.model.resolved_num_tables
    with pytest.raises(ConfigError, match=r"^train\.devices: 0 is too small"):
        with_values(config, {"train.devices": 0})
    with pytest.raises(ConfigError, match=r"^train\.colour: unknown field"):
        with_values(config, {"train.colour": "red"})
    with pytest.raises(ConfigError, match=r"^train\.keep_freed_memory: 'no'; allowed: true"):
        with_values(config, {"train.keep_freed_memory": "no"})


def test_a_config_comes_back_from_the_params_a_run_logged():
    config = build_run_config("memoryformer-nano", ["optim.fused=false", "train.flops_budget=1e12",
                                                    "model.temperature=0.5"])
    logged = {key: str(value) for key, value in config.flat_params().items()}  # as MLflow has them
    logged["data.cache_dir"] = "/elsewhere/cache"  # the logging machine's folder
    back = RunConfig.from_params(logged)
    assert back == config  # this machine's cache folder, every other field as logged
    assert back.optim.fused is False and back.train.seconds_budget is None
