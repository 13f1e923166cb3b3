"""A Lightning logger that writes metrics into a run the harness created (see tracking.py).

The harness, not Lightning, owns the MLflow run: it creates it with its provenance, ends it with
the right status and reason, and a resumed run logs into the same run id.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from harness.tracking import Tracker


class TrackerLogger(Logger):
    def __init__(self, tracker: Tracker, run_id: str, experiment: str):
        super().__init__()
        self.tracker = tracker
        self.run_id = run_id
        self._experiment = experiment

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
        metrics = {k: float(v) for k, v in metrics.items() if k != "epoch"}
        if metrics:
            self.tracker.log_metrics(self.run_id, metrics, step or 0)
