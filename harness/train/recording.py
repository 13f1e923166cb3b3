"""The MLflow side of a training run: what it is recorded as, how it starts and how it ends.

`train()` owns the run: it creates it with its provenance, params, config and sizes, and ends it
FINISHED, FAILED (with `failure_reason`) or KILLED (with `stop_reason`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import fsspec

from harness.metrics.memory import adamw_state_bytes
from harness.models.cost import recorded_costs
from harness.models.sizes import model_size
from harness.runs import checkpoint_store, records
from harness.runs.checkpoint import CHECKPOINT
from harness.runs.config import RunConfig
from harness.tracking.client import Tracker
from harness.tracking.provenance import provenance
from harness.train.fence import Fence


class TrainingFailed(RuntimeError):
    """The run started but could not finish; its MLflow run is marked FAILED with the reason."""

    def __init__(self, run_id: str, reason: str):
        super().__init__(reason)
        self.run_id = run_id


class RunStopped(Exception):
    """Raised by a callback to end a run early on purpose (e.g. a pruner): not a failure.

    The run is ended with `status` and the message as its stop reason.
    """

    status = "KILLED"


@dataclass(frozen=True)
class Recording:
    """Where a run is recorded and as what (not what it trains)."""

    tracking_uri: str | None = None  # None: MLFLOW_TRACKING_URI, else the workspace's store
    experiment: str = "train"
    run_name: str | None = None  # None: PRESET-sSEED
    parent_run_id: str | None = None  # a study's parent run: the run is nested under it
    tags: Mapping[str, str] = field(default_factory=dict)
    # Seconds to wait for a tracking server that does not answer before giving up (0: fail at
    # once, before anything else; a study's trial waits out a server restart).
    patience: float = 0.0


class Supervisor:
    """Whoever owns a run besides `train()` (the study runner): hears where the run and its
    checkpoints are, and may fence the run off. This base class hears nothing and never fences.
    """

    fence: Fence | None = None  # asked before every write; `Fenced` leaves the run as it is

    def started(self, run_id: str, checkpoint: str) -> None:
        """The MLflow run exists, before step 0; `checkpoint`: where it will be written."""

    def checkpointed(self, step: int) -> None:
        """A checkpoint of `step` is in place."""


def start_run(tracker: Tracker, config: RunConfig, datamodule, recording: Recording) -> str:
    """Create the run with its tags, params, config and step-0 sizes and costs."""
    tags = {
        **provenance(),
        records.SEED: str(config.train.seed),
        records.PRESET: config.preset,
        records.KIND: config.model.kind,
        records.CORPUS_DIGEST: datamodule.corpus_digest,
        records.TOKENIZER_DIGEST: datamodule.tokenizer_digest,
        records.BUDGET: config.budget,
        **recording.tags,
    }
    name = recording.run_name or f"{config.preset}-s{config.train.seed}"
    run_id = tracker.start_run(recording.experiment, name, tags, recording.parent_run_id)
    tracker.log_params(run_id, config.flat_params())
    tracker.log_text(run_id, config.to_yaml(), "config.yaml")
    tracker.log_metrics(run_id, {**_sizes(config), **_costs(config),
                                 records.TRAIN_TOKENS: datamodule.train_tokens,
                                 records.VAL_TOKENS: datamodule.val_tokens}, step=0)
    return run_id


def _sizes(config: RunConfig) -> dict[str, float]:
    size = model_size(config.model)
    return {
        records.PARAMS: size.total_params,
        records.TABLE_PARAMS: size.table_params,
        records.OTHER_PARAMS: size.other_params,
        records.TABLE_BYTES: size.table_bytes,
        records.OTHER_BYTES: size.other_bytes,
        records.OPTIMIZER_STATE_BYTES: adamw_state_bytes(size.total_params),
    }


def _costs(config: RunConfig) -> dict[str, float]:
    """What the report shows beside the exact count, from models/cost.py (records.COST_*)."""
    return {f"cost/{key}": value
            for key, value in recorded_costs(config.model, config.seq_len).items()}


def log_checkpoint(tracker: Tracker, run_id: str, checkpoint_dir: str) -> None:
    """The final checkpoint and its config as the run's `checkpoint/` artifacts."""
    with tempfile.TemporaryDirectory() as scratch:
        for name in (CHECKPOINT, "config.yaml"):
            local = Path(scratch) / name
            with fsspec.open(checkpoint_store.join(checkpoint_dir, name), "rb") as source:
                local.write_bytes(source.read())
            tracker.log_artifact(run_id, local, "checkpoint")


def end_with_reason(tracker: Tracker, run_id: str, reason: str, status: str = "FAILED") -> None:
    """End a run that did not finish: FAILED with `failure_reason`, KILLED with `stop_reason`."""
    key = records.FAILURE_REASON if status == "FAILED" else records.STOP_REASON
    tracker.set_tags(run_id, {key: reason})
    tracker.end_run(run_id, status)
