"""A Lightning logger that writes metrics into a run the harness created (see tracking.py).

The harness, not Lightning, owns the MLflow run: it creates it with its provenance, ends it with
the right status and reason, and a resumed run logs into the same run id.

A resumed run repeats the steps between its checkpoint and the moment its last worker died, and
those steps were already logged: `logged` (metric -> last step in the run) drops them, so a
run's history has one value per step however often it was resumed (and within one process,
where Lightning's hooks may report a step twice). A `fence` is asked before
every write (see fence.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from harness.faults import crash_point
from harness.tracking.client import Tracker
from harness.train.fence import Fence


class TrackerLogger(Logger):
    def __init__(self, tracker: Tracker, run_id: str, experiment: str,
                 logged: dict[str, int] | None = None, fence: Fence | None = None):
        super().__init__()
        self.tracker = tracker
        self.run_id = run_id
        self._experiment = experiment
        self.logged = dict(logged or {})
        self.fence = fence

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
        step = step or 0
        metrics = {k: float(v) for k, v in metrics.items()
                   if k != "epoch" and step > self.logged.get(k, -1)}
        if not metrics:
            return
        if self.fence is not None:
            self.fence.check()
        self.tracker.log_metrics(self.run_id, metrics, step)
        self.logged.update(dict.fromkeys(metrics, step))  # one value per step, first wins
        crash_point("log")

    @rank_zero_only
    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        """A local file into the run's artifacts (under `artifact_path`), fenced like metrics."""
        if self.fence is not None:
            self.fence.check()
        self.tracker.log_artifact(self.run_id, Path(path), artifact_path)
