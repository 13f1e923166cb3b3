"""The run client: thin verbs over MLflow's MlflowClient, the one object that writes and reads runs.

Every value written is redacted first (a database URL in a tag must not carry its password).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.runs import records
from harness.tracking.stores import redact

EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow's own experiment tag
TRAINING_KIND = "custom_model_development"  # "Machine learning" in MLflow's UI


@contextlib.contextmanager
def quiet_downloads():
    """MLflow draws a progress bar per artifact downloaded; the harness fetches tiny ones."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def quiet_store_logs() -> None:
    """The store's INFO chatter off in this process ("Creating initial MLflow database tables",
    alembic's migrations): the harness says what matters in its own lines."""
    import mlflow  # noqa: F401  (it sets its loggers' levels when imported: import it first)

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class Tracker:
    """A tracking store with its artifact folder; thin verbs over MlflowClient."""

    uri: str
    artifact_root: Path | None = None  # for new experiments in a local store

    @cached_property
    def _client(self):
        from mlflow.tracking import MlflowClient

        if self.artifact_root is not None and self.uri.startswith("sqlite:///"):
            database = Path(self.uri.removeprefix("sqlite:///"))
            if not database.exists():
                # Made here, MLflow's "Default" experiment keeps its artifacts beside ours
                # (ARTIFACT_ROOT/0) instead of in ./mlruns/0 of whatever folder this runs in.
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                SqlAlchemyStore(self.uri, self.artifact_root.resolve().as_uri())
        return MlflowClient(self.uri)

    def experiments(self) -> list[tuple[str, str]]:
        """(name, id) of every experiment that holds runs, newest first (MLflow's Default
        experiment only where something was logged into it)."""
        found = self._client.search_experiments(order_by=["creation_time DESC"])
        return [(e.name, e.experiment_id) for e in found
                if e.name != "Default" or self._client.search_runs([e.experiment_id],
                                                                   max_results=1)]

    def experiment_id(self, name: str) -> str:
        found = self._client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        # A tracking server places artifacts itself (served artifacts, mlflow-artifacts:/...);
        # a local folder here would send every worker's artifacts to its own disk.
        if self.artifact_root is not None and not self.uri.startswith(("http://", "https://")):
            location = (self.artifact_root.resolve() / name).as_uri()
        # MLflow 3's UI opens an experiment of this kind on its runs table (training runs),
        # not on the GenAI views it picks for an experiment of unknown kind
        return self._client.create_experiment(name, artifact_location=location,
                                              tags={EXPERIMENT_KIND: TRAINING_KIND})

    def start_run(self, experiment: str, run_name: str, tags: dict[str, str],
                  parent_run_id: str | None = None) -> str:
        tags = {k: redact(str(v)) for k, v in tags.items()}
        if parent_run_id:
            tags[records.PARENT] = parent_run_id
        run = self._client.create_run(self.experiment_id(experiment), run_name=run_name, tags=tags)
        return run.info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, redact(str(v))) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 params a batch
            self._client.log_batch(run_id, params=items[start:start + 100])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        self.log_metric_steps(run_id, {step: metrics})

    def log_metric_steps(self, run_id: str, steps: dict[int, dict[str, float]]) -> None:
        """The metrics of several steps in as few writes as MLflow allows (1000 a batch)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step)
                 for step, metrics in steps.items() for k, v in metrics.items()]
        for start in range(0, len(items), 1000):
            self._client.log_batch(run_id, metrics=items[start:start + 1000])

    def set_experiment_tags(self, experiment: str, tags: dict[str, str]) -> None:
        experiment_id = self.experiment_id(experiment)
        for key, value in tags.items():
            self._client.set_experiment_tag(experiment_id, key, value)

    def experiment_tags(self, experiment_id: str) -> dict[str, str]:
        return dict(self._client.get_experiment(experiment_id).tags)

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self._client.set_tag(run_id, key, redact(str(value)))

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._client.log_text(run_id, redact(text), artifact_file)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self._client.log_artifact(run_id, str(path), artifact_path)

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str | None = None) -> None:
        """Every file under `folder`, kept in its layout, under `artifact_path` of the run."""
        self._client.log_artifacts(run_id, str(folder), artifact_path)

    def end_run(self, run_id: str, status: str) -> None:
        """status: FINISHED, FAILED or KILLED."""
        self._client.set_terminated(run_id, status)

    def reopen_run(self, run_id: str) -> None:
        """Mark a run RUNNING again: a resumed trial, or a study continued by another worker."""
        self._client.update_run(run_id, status="RUNNING")

    def discard_run(self, run_id: str, reason: str) -> None:
        """End a run that holds nothing of value KILLED with the reason, and delete it."""
        self.set_tags(run_id, {records.STOP_REASON: reason})
        self.end_run(run_id, "KILLED")
        self._client.delete_run(run_id)

    def find_runs(self, experiment: str, tags: dict[str, str]) -> list:
        """The experiment's active runs carrying every one of `tags`, oldest first."""
        found = self._client.get_experiment_by_name(experiment)
        if found is None:
            return []
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self._client.search_runs([found.experiment_id], filter_string=query,
                                       max_results=1000)
        return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))

    def logged_steps(self, run_id: str) -> dict[str, int]:
        """metric -> the last step it was logged at in this run."""
        keys = self._client.get_run(run_id).data.metrics
        return {key: max(m.step for m in self._client.get_metric_history(run_id, key))
                for key in keys}

    def run(self, run_id: str):
        return self._client.get_run(run_id)

    def runs(self, experiment: str) -> list:
        """Every active run of an experiment, whatever its status, newest first (MLflow's order)."""
        return self._client.search_runs([self.experiment_id(experiment)], max_results=1000)

    def artifacts(self, run_id: str, folder: str | None = None) -> list[str]:
        """The paths of a run's artifacts at the top level (or in `folder`)."""
        return [a.path for a in self._client.list_artifacts(run_id, folder)]

    def metric_entries(self, run_id: str, key: str) -> list:
        """A metric's history as MLflow records it: entries with step, value and timestamp."""
        return self._client.get_metric_history(run_id, key)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self._client.get_metric_history(run_id, key)]

    def find_run(self, run_id: str):
        """The run, or None when the store has no run with this id (get_run raises instead)."""
        from mlflow.exceptions import MlflowException

        try:
            return self._client.get_run(run_id)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def download_artifact(self, run_id: str, artifact_path: str, destination: Path) -> Path | None:
        """Copy one artifact of a run into `destination`; None when the run has no such file."""
        folder = artifact_path.rpartition("/")[0]
        listed = {a.path for a in self._client.list_artifacts(run_id, folder or None)}
        if artifact_path not in listed:
            return None
        destination.mkdir(parents=True, exist_ok=True)
        with quiet_downloads():
            return Path(self._client.download_artifacts(run_id, artifact_path, str(destination)))
