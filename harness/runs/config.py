"""A training run's whole config: model, data, optimiser and loop, each a frozen dataclass.

A run is a preset plus `section.field=value` overrides (the CLI's `--set`, a study cell's axes).
The resolved config is flattened into MLflow params and saved as YAML beside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import yaml

from harness.data.config import DataConfig
from harness.errors import ConfigError
from harness.models.config import ModelConfig
from harness.models.presets import base_preset, pair_of, preset, preset_names
from harness.validate import check_choice, check_int, check_number

PRECISIONS = ("32", "bf16")
ACCELERATORS = ("auto", "cpu", "gpu")

# Pythia's peak learning rates (SPEC section 4); CPU-sized presets take the smallest model's.
DENSE_PEAK_LR = {"pythia-70m": 1e-3, "pythia-160m": 6e-4, "pythia-410m": 3e-4}
DEFAULT_DENSE_LR = 1e-3


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with Pythia's recipe: cosine decay to min_lr_ratio x peak after a linear warm-up."""

    lr: float | None = None  # None: the recipe's peak LR, x memory_lr_multiplier for MemoryFormer
    memory_lr_multiplier: float = 3.0  # the paper trains MemoryFormer at 3x the dense LR (Table 4)
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1  # on matrices and hash tables; never on biases and norms
    grad_clip: float = 1.0
    warmup_fraction: float = 0.01
    min_lr_ratio: float = 0.1
    # One fused AdamW pass per step; false: torch's foreach implementation. Same arithmetic in
    # another floating-point order (ablations/float-order.yaml measures what that changes).
    fused: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.fused, bool):
            raise ConfigError("fused", f"{self.fused!r}; allowed: true, false")
        if self.lr is not None:
            check_number("lr", self.lr, positive=True)
        check_number("memory_lr_multiplier", self.memory_lr_multiplier, positive=True)
        for name in ("beta1", "beta2", "warmup_fraction", "min_lr_ratio"):
            check_number(name, getattr(self, name), maximum=1)
        check_number("eps", self.eps, positive=True)
        check_number("weight_decay", self.weight_decay)
        check_number("grad_clip", self.grad_clip)


@dataclass(frozen=True)
class TrainConfig:
    # The run's length in optimiser steps. A budget replaces it: with flops_budget the step count
    # that spends it (runs/budget.py, once the tokenizer fixes the vocabulary); with
    # seconds_budget it is only a cap.
    max_steps: int = 300
    val_every: int = 50  # validation (and a checkpoint) every this many optimiser steps
    # > 0: validate this many times, evenly, instead of every val_every steps (a flops budget's
    # step count is known only when the run starts)
    validations: int = 0
    flops_budget: float | None = None  # training FLOPs to spend (models/cost.py's convention)
    seconds_budget: float | None = None  # seconds of optimiser steps to spend (no validation)
    seed: int = 0  # model init and sample order; the validation split stays fixed across seeds
    precision: str = "32"  # one of PRECISIONS; bf16 autocast keeps fp32 master weights
    accelerator: str = "auto"  # one of ACCELERATORS
    devices: int = 1  # > 1: Lightning DDP across this many devices of one machine
    strategy: str = "auto"  # a Lightning strategy name, e.g. ddp
    log_every: int = 10
    throughput_warmup_steps: int = 3  # excluded from tokens/s: allocator and kernel warm-up
    log_checkpoint: bool = False  # also store the final checkpoint as an MLflow artifact
    # Keep freed memory for reuse instead of returning it to the OS (harness/allocator.py): a
    # process-wide glibc setting, applied when a run starts; HARNESS_KEEP_FREED_MEMORY=0 overrides.
    keep_freed_memory: bool = True

    def __post_init__(self) -> None:
        for name in ("max_steps", "val_every", "log_every"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("validations", self.validations, minimum=0)
        for name in ("flops_budget", "seconds_budget"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), positive=True)
        if self.flops_budget is not None and self.seconds_budget is not None:
            raise ConfigError("seconds_budget", "a run holds one resource fixed; allowed: "
                              "flops_budget or seconds_budget, not both")
        if self.validations and self.seconds_budget is not None:
            raise ConfigError("validations", f"{self.validations} needs a known step count and "
                              "a seconds budget has none; allowed: 0 (validate every val_every)")
        check_int("seed", self.seed, minimum=0)
        check_int("devices", self.devices, minimum=1)
        check_int("throughput_warmup_steps", self.throughput_warmup_steps, minimum=0)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("accelerator", self.accelerator, ACCELERATORS)
        for name in ("log_checkpoint", "keep_freed_memory"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"{getattr(self, name)!r}; allowed: true, false")


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "optim": OptimConfig,
                             "train": TrainConfig}


@dataclass(frozen=True)
class RunConfig:
    preset: str
    model: ModelConfig
    data: DataConfig
    optim: OptimConfig
    train: TrainConfig

    @property
    def peak_lr(self) -> float:
        """The configured LR, else Pythia's for this size (3x for MemoryFormer, Table 4)."""
        if self.optim.lr is not None:
            return self.optim.lr
        dense_name = self.preset if self.model.kind == "dense" else pair_of(self.preset)
        lr = DENSE_PEAK_LR.get(base_preset(dense_name), DEFAULT_DENSE_LR)
        return lr * (self.optim.memory_lr_multiplier if self.model.kind == "memoryformer" else 1)

    @property
    def seq_len(self) -> int:
        return self.data.seq_len or self.model.context_length

    @property
    def budget(self) -> str:
        """The resource this run's length holds fixed (records.BUDGET_KINDS; tokens: steps)."""
        if self.train.flops_budget is not None:
            return "flops"
        return "seconds" if self.train.seconds_budget is not None else "steps"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"preset": self.preset}
        for section in SECTIONS:
            out[section] = dataclasses.asdict(getattr(self, section))
        return out

    def flat_params(self) -> dict[str, Any]:
        """`section.field` -> value, plus the values the knobs resolve to: MLflow params."""
        flat: dict[str, Any] = {"preset": self.preset}
        for section in SECTIONS:
            for key, value in dataclasses.asdict(getattr(self, section)).items():
                flat[f"{section}.{key}"] = value
        flat["model.resolved_bucket_bits"] = self.model.resolved_bucket_bits
        flat["model.resolved_num_tables"] = self.model.resolved_num_tables
        flat["optim.peak_lr"] = self.peak_lr
        flat["data.resolved_seq_len"] = self.seq_len
        return flat

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        sections = {}
        for name, kind in SECTIONS.items():
            sections[name] = _section(name, kind, values.get(name, {}))
        return cls(preset=values["preset"], **sections)

    @classmethod
    def from_yaml(cls, text: str) -> RunConfig:
        return cls.from_dict(yaml.safe_load(text))

    @classmethod
    def from_params(cls, params: Mapping[str, str], keep: tuple[str, ...] = ()) -> RunConfig:
        """The config a run logged as MLflow params (flat_params, values as strings), read back
        by each field's type; the resolved extras are ignored. Fields not in `keep` that name a
        place on the logging machine (data.cache_dir) take this machine's default."""
        values: dict[str, Any] = {"preset": params["preset"]}
        for name, kind in SECTIONS.items():
            hints = typing.get_type_hints(kind)
            section = {}
            for field in fields(kind):
                key = f"{name}.{field.name}"
                if key in params and (key not in _MACHINE_LOCAL or key in keep):
                    section[field.name] = _typed(params[key], hints[field.name])
            values[name] = section
        return cls.from_dict(values)


def build_run_config(preset_name: str, overrides: list[str] | tuple[str, ...] = (),
                     values: Mapping[str, Any] | None = None) -> RunConfig:
    """A preset's model, default data, optimiser and loop, then changes: `section.field=value`
    strings (a user's `--set`, parsed as YAML), then typed `values` {"section.field": value}
    (flags and study settings, never parsed)."""
    if preset_name not in preset_names():
        raise ConfigError("preset", f"{preset_name!r} is not a preset; "
                          f"allowed: {', '.join(preset_names())}")
    base = RunConfig(preset_name, preset(preset_name), DataConfig(), OptimConfig(), TrainConfig())
    changes = parse_overrides(overrides)
    for section, fields_ in nest_values(values or {}).items():
        changes.setdefault(section, {}).update(fields_)
    return apply_overrides(base, changes)


def with_values(config: RunConfig, values: Mapping[str, Any]) -> RunConfig:
    """`config` with typed {"section.field": value} changes applied, validated as a whole."""
    return apply_overrides(config, nest_values(values))


def nest_values(values: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{"model.chunk_size": 4} -> {"model": {"chunk_size": 4}}."""
    changes: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise ConfigError(key, f"not SECTION.FIELD; allowed sections: {', '.join(SECTIONS)}")
        changes.setdefault(section, {})[name] = value
    return changes


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """["model.chunk_size=4", ...] -> {"model": {"chunk_size": 4}}; values parsed as YAML."""
    changes: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError("set", f"{item!r} is not SECTION.FIELD=VALUE; allowed sections: "
                              f"{', '.join(SECTIONS)}")
        if section not in SECTIONS:
            raise ConfigError("set", f"unknown section {section!r} in {item!r}; allowed: "
                              f"{', '.join(SECTIONS)}")
        changes.setdefault(section, {})[name] = parse_value(raw)
    return changes


def parse_value(raw: str) -> Any:
    """A YAML scalar, except that 1e-3 is a number (YAML 1.1 reads it as a string)."""
    if not raw.strip():
        return None
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(config: RunConfig, changes: Mapping[str, Mapping[str, Any]]) -> RunConfig:
    """`config` with {section: {field: value}} changes, each section rebuilt with `replace` (so
    validated again), errors naming `section.field`."""
    sections = {name: getattr(config, name) for name in SECTIONS}
    for name, values in changes.items():
        _check_fields(name, SECTIONS[name], values)
        try:
            sections[name] = dataclasses.replace(sections[name], **values)
        except ConfigError as error:
            raise error.within(name) from None
    run = RunConfig(preset=config.preset, **sections)
    if run.data.seq_len is not None and run.data.seq_len > run.model.context_length:
        raise ConfigError("data.seq_len", f"{run.data.seq_len} is longer than model.context_length"
                          f"={run.model.context_length}; allowed: 1..{run.model.context_length}")
    return run


def _check_fields(name: str, kind: type, values: Mapping[str, Any]) -> None:
    allowed = [f.name for f in fields(kind)]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}", f"unknown field; allowed: {', '.join(allowed)}")


_MACHINE_LOCAL = ("data.cache_dir",)


def _typed(raw: str, hint: Any) -> Any:
    """An MLflow param string (str(value)) as the field's type: int, float, bool, str or None."""
    options = typing.get_args(hint) or (hint,)
    if raw == "None" and type(None) in options:
        return None
    kind = next(t for t in options if t is not type(None))
    if kind is bool:
        return raw == "True"
    return kind(raw)


def _section(name: str, kind: type, values: Mapping[str, Any]) -> Any:
    """Build one section, with errors naming `section.field`."""
    _check_fields(name, kind, values)
    try:
        return kind(**values)
    except ConfigError as error:
        raise error.within(name) from None
