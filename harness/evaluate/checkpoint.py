"""From an evaluation target (an MLflow run id or a checkpoint path) to the trained model.

A harness checkpoint is a Lightning checkpoint whose extra keys `harness_config` (the resolved
RunConfig) and `mlflow_run_id` make it self-describing: the model is rebuilt from the config alone,
without Lightning and without the training code's classes.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from harness.errors import ConfigError
from harness.models import LanguageModel, build_model
from harness.tracking import Tracker, redact
from harness.train import checkpoint_store
from harness.train.checkpoint import CHECKPOINT, Checkpoint
from harness.train.checkpoint import read_checkpoint as read_train_checkpoint

ARTIFACT = f"checkpoint/{CHECKPOINT}"  # where train.log_checkpoint=true stores it in MLflow
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]+$")  # MLflow run ids are 32 hex digits; allow any plain id
ALLOWED_TARGETS = ("allowed: an MLflow run id whose checkpoint is under HOME/checkpoints/RUN_ID/ "
                   "or stored as a 'checkpoint' artifact, or the path of a checkpoint written by "
                   "`harness train` (.harness/checkpoints/RUN_ID/last.ckpt)")


def resolve_target(target: str, home: Path, tracker: Tracker | None) -> Path | str:
    """The checkpoint file a target names; ConfigError('target', ...) when there is none.

    `tracker` (may be None when nothing is logged) finds a run whose checkpoint lives only in the
    tracking store or at the location its `harness.checkpoint` tag names (a shared path or an
    fsspec URL); an artifact is downloaded under HOME/cache/checkpoints/RUN_ID/.
    """
    path = Path(target).expanduser()
    if path.is_file():
        return path
    if path.is_dir() and (path / CHECKPOINT).is_file():
        return path / CHECKPOINT
    if not _RUN_ID.match(target):
        raise ConfigError("target", f"{target!r} is not a file; {ALLOWED_TARGETS}")
    local = home / "checkpoints" / target / CHECKPOINT
    if local.is_file():
        return local
    run = tracker.find_run(target) if tracker is not None else None
    if tracker is None or run is None:
        store = f" in {redact(tracker.uri)}" if tracker is not None else ""
        raise ConfigError("target", f"{target!r} is neither a checkpoint file nor a run{store}; "
                          f"{ALLOWED_TARGETS}")
    recorded = run.data.tags.get("harness.checkpoint")  # where the run wrote it (--checkpoint-dir)
    if recorded and checkpoint_store.exists(recorded):
        return recorded
    cache = home / "cache" / "checkpoints" / target
    downloaded = tracker.download_artifact(target, ARTIFACT, cache)
    if downloaded is None:
        raise ConfigError("target", f"run {target} has no checkpoint: none at {local} and no "
                          f"'{ARTIFACT}' artifact; {ALLOWED_TARGETS} (train with "
                          "train.log_checkpoint=true to store it with the run)")
    return downloaded


def read_checkpoint(path: Path | str) -> Checkpoint:
    """The checkpoint at `path`, with errors naming the `target` field."""
    return read_train_checkpoint(path, field_name="target")


def load_model(checkpoint: Checkpoint, device: torch.device) -> LanguageModel:
    """The trained LanguageModel in eval mode; every weight and hash buffer must match."""
    model = build_model(checkpoint.config.model)
    missing, unexpected = model.load_state_dict(checkpoint.state_dict, strict=False)
    if missing or unexpected:
        names = ", ".join([*missing, *unexpected][:5])
        raise ConfigError("target", f"{checkpoint.path} does not match its own config "
                          f"({len(missing)} missing, {len(unexpected)} unexpected: {names})")
    return model.to(device).eval()
