"""From an evaluation target (an MLflow run id or a checkpoint path) to the trained model, and
from a checkpoint file to a ready Scorer (for lm-eval's CLI, which has no tracking store).

A harness checkpoint is a Lightning checkpoint whose extra keys `harness_config` (the resolved
RunConfig) and `mlflow_run_id` make it self-describing: the model is rebuilt from the config alone,
without Lightning and without the training code's classes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from harness.errors import ConfigError
from harness.evaluate.run_data import run_tokenizer
from harness.evaluate.scoring import Scorer
from harness.models import LanguageModel, build_model
from harness.runs import checkpoint_store, records
from harness.runs.checkpoint import CHECKPOINT, Checkpoint
from harness.runs.checkpoint import read_checkpoint as read_train_checkpoint
from harness.runs.workspace import Workspace
from harness.tracking.client import Tracker
from harness.tracking.stores import redact

ARTIFACT = f"checkpoint/{CHECKPOINT}"  # where train.log_checkpoint=true stores it in MLflow
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]+$")  # MLflow run ids are 32 hex digits; allow any plain id
ALLOWED_TARGETS = ("allowed: an MLflow run id whose checkpoint is under HOME/checkpoints/RUN_ID/ "
                   "or stored as a 'checkpoint' artifact, or the path of a checkpoint written by "
                   "`harness train` (.harness/checkpoints/RUN_ID/last.ckpt)")


def resolve_target(target: str, workspace: Workspace, tracker: Tracker | None) -> Path | str:
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
    local = checkpoint_store.join(str(workspace.checkpoints), target, CHECKPOINT)
    if checkpoint_store.exists(local):
        return local if checkpoint_store.is_url(local) else Path(local)
    run = tracker.find_run(target) if tracker is not None else None
    if tracker is None or run is None:
        store = f" in {redact(tracker.uri)}" if tracker is not None else ""
        raise ConfigError("target", f"{target!r} is neither a checkpoint file nor a run{store}; "
                          f"{ALLOWED_TARGETS}")
    recorded = run.data.tags.get(records.CHECKPOINT)  # where the run wrote it (--checkpoint-dir)
    if recorded and checkpoint_store.exists(recorded):
        return recorded
    cache = workspace.cache / "checkpoints" / target
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


def load_scorer(path: Path | str, batch_size: int = 32, device: str | None = None
                ) -> tuple[Scorer, dict[str, Any]]:
    """A Scorer over a checkpoint file, and the model's info for lm-eval's results."""
    checkpoint = read_checkpoint(path)
    device = default_device(device)
    config = checkpoint.config
    tokenizer = run_tokenizer(config.data, config.model.vocab_size)
    model = load_model(checkpoint, torch.device(device))
    return (Scorer(model, tokenizer, config.seq_len, batch_size, device),
            model_info(checkpoint))


def default_device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def model_info(checkpoint: Checkpoint) -> dict[str, Any]:
    """What lm-eval records of the model: its run, preset, kind, step and checkpoint."""
    config = checkpoint.config
    return {"harness_run_id": checkpoint.run_id, "harness_preset": config.preset,
            "harness_kind": config.model.kind, "harness_step": checkpoint.step,
            "harness_checkpoint": str(checkpoint.path)}
