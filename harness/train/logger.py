"""A Lightning logger that writes metrics into a run the harness created (see tracking.py).

The harness, not Lightning, owns the MLflow run: it creates it with its provenance, ends it with
the right status and reason, and a resumed run logs into the same run id.

A resumed run repeats the steps between its checkpoint and the moment its last worker died, and
those steps were already logged: `logged` (metric -> last step in the run) drops them, so a
run's history has one value per step however often it was resumed (and within one process,
where Lightning's hooks may report a step twice). A `fence` is asked before
every write (see fence.py).

Each MLflow write is a database transaction (7 ms on SQLite), so metrics are held and written
in batches: by `FlushMetrics` after a step once `flush_seconds` have passed since the last write,
after each validation (before its checkpoint is written, so a checkpoint never holds a step whose
metrics are not in the run), and when the trainer finishes or fails. A worker killed between
writes loses only steps after its checkpoint, which the resumed run trains and logs again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from harness.faults import crash_point
from harness.tracking.client import Tracker
from harness.train.fence import Fence, Fenced

_log = logging.getLogger(__name__)


FLUSH_SECONDS = 5.0  # the longest a live run's curves lag behind its training


class TrackerLogger(Logger):
    def __init__(self, tracker: Tracker, run_id: str, experiment: str,
                 logged: dict[str, int] | None = None, fence: Fence | None = None,
                 flush_seconds: float = FLUSH_SECONDS):
        super().__init__()
        self.tracker = tracker
        self.run_id = run_id
        self._experiment = experiment
        self.logged = dict(logged or {})
        self.fence = fence
        self.flush_seconds = flush_seconds
        self._pending: dict[int, dict[str, float]] = {}  # step -> metrics not written yet
        self._written = time.monotonic()

    @property
    def name(self) -> str:
        return self._experiment

    @property
    def version(self) -> str:
        return self.run_id

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Params come from the RunConfig, logged once when the run is created."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Held until the next write (see flush)."""
        step = step or 0
        metrics = {k: float(v) for k, v in metrics.items()
                   if k != "epoch" and step > self.logged.get(k, -1)}
        if not metrics:
            return
        self._pending.setdefault(step, {}).update(metrics)
        self.logged.update(dict.fromkeys(metrics, step))  # one value per step, first wins

    @rank_zero_only
    def flush(self, due_only: bool = False) -> None:
        """Write the held metrics as one batch, fenced; with `due_only`, only once
        `flush_seconds` have passed since the last write."""
        if not self._pending or (due_only
                                 and time.monotonic() - self._written < self.flush_seconds):
            return
        if self.fence is not None:
            self.fence.check()
        steps, self._pending = self._pending, {}
        self.tracker.log_metric_steps(self.run_id, steps)
        self._written = time.monotonic()
        crash_point("log")

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """The trainer is done ("success") or failing: the held metrics are written either way
        (a pruned trial keeps its last validation), except into a run this worker lost."""
        if status == "success":
            self.flush()
            return
        try:
            self.flush()
        except Fenced:
            self._pending = {}  # another worker owns the run now: write nothing
        except Exception as error:  # the failure that ended training stays the one reported
            _log.warning("metrics of steps %s not logged (%s: %s)", sorted(self._pending),
                         type(error).__name__, str(error)[:200])

    @rank_zero_only
    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        """A local file into the run's artifacts (under `artifact_path`), fenced like metrics."""
        if self.fence is not None:
            self.fence.check()
        self.tracker.log_artifact(self.run_id, Path(path), artifact_path)


class FlushMetrics(pl.Callback):
    """Writes the logger's held metrics once every earlier callback has logged its own: after
    an optimiser step when a write is due, after each validation (before the checkpoint that
    follows it) and the fit. Given after every callback that logs, before SaveAfterValidation."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _flush(trainer, due_only=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _flush(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        _flush(trainer)


def _flush(trainer: pl.Trainer, due_only: bool = False) -> None:
    if isinstance(trainer.logger, TrackerLogger):
        trainer.logger.flush(due_only)
