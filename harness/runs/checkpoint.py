"""Reading a harness checkpoint: a Lightning checkpoint whose extra keys `harness_config` (the
resolved RunConfig) and `mlflow_run_id` make it self-describing.

Loaded with `weights_only=True`: a checkpoint is data, and unpickling arbitrary objects would run
their code. Resume (train/run.py) and evaluation (evaluate/) both read it here, from a path or an
fsspec URL (see checkpoint_store.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.errors import ConfigError
from harness.runs import checkpoint_store
from harness.runs.config import RunConfig

CHECKPOINT = "last.ckpt"  # the name train() gives a run's latest checkpoint
STATE_PREFIX = "model."  # CausalLM holds the LanguageModel as `self.model`
WRITTEN_BY = "a checkpoint written by `harness train` (.harness/checkpoints/RUN_ID/last.ckpt)"


@dataclass(frozen=True)
class Checkpoint:
    path: Path | str  # a local path, or the URL of a shared checkpoint store
    config: RunConfig
    run_id: str | None  # the MLflow run that trained it
    step: int  # optimiser steps taken
    state_dict: dict[str, torch.Tensor] = field(repr=False)  # the LanguageModel's, unprefixed


def read_checkpoint(path: Path | str, field_name: str = "resume") -> Checkpoint:
    """Config, run id, step and model weights of a harness checkpoint; ConfigError otherwise."""
    location = str(path)
    try:
        found = checkpoint_store.exists(location)
    except Exception as error:  # an fsspec store that cannot be reached (no credentials, ...)
        raise ConfigError(field_name, f"{location} cannot be reached ({type(error).__name__}: "
                          f"{str(error)[:200]}); allowed: {WRITTEN_BY}") from None
    if not found:
        raise ConfigError(field_name, f"{location} is not a file; allowed: {WRITTEN_BY}")
    try:
        state: Any = checkpoint_store.load(location)
    except Exception as error:  # torch raises many types on a foreign file (IndexError, ...)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(field_name, f"{path} is not readable as a checkpoint "
                          f"({reason[:200]}); allowed: {WRITTEN_BY}") from None
    if not isinstance(state, dict) or "harness_config" not in state or "state_dict" not in state:
        raise ConfigError(field_name, f"{path} was not written by `harness train` (it has no "
                          f"harness_config); allowed: {WRITTEN_BY}")
    weights = {key.removeprefix(STATE_PREFIX): value for key, value in state["state_dict"].items()
               if key.startswith(STATE_PREFIX)}
    where = location if checkpoint_store.is_url(location) else Path(location)
    return Checkpoint(where, RunConfig.from_dict(state["harness_config"]),
                      state.get("mlflow_run_id") or None, int(state.get("global_step", 0)), weights)
