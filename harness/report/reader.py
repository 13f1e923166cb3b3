"""The report's one contact with MLflow: a study's runs and their loss histories, as pandas.

Everything after this module is a pure function of the two frames it returns, so a report can be
rebuilt (and tested) from a table alone.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from harness.runs import records
from harness.tracking.client import quiet_downloads

# the curves a report draws, and the resources spent by each step (loss against FLOPs, seconds)
HISTORY_KEYS = (records.VAL_LOSS, records.TRAIN_LOSS, records.BUDGET_FLOPS_USED,
                records.BUDGET_SECONDS_USED)
# mlflow.search_runs' column prefixes: records.py names a metric, tag or param without them
METRICS, PARAMS, TAGS = "metrics.", "params.", "tags."
_PAGE = 1000


@dataclass(frozen=True)
class StudyRecords:
    runs: pd.DataFrame  # one row per run (parent and trials), columns as mlflow.search_runs
    history: pd.DataFrame  # run_id, key, step, value: HISTORY_KEYS of every trial run
    # run_id -> layer -> (K, 2**b) bucket hit counts of the trial's last validation pass
    buckets: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)


def metric_column(name: str) -> str:
    return METRICS + name


def param_column(name: str) -> str:
    return PARAMS + name


def tag_column(name: str) -> str:
    return TAGS + name


def metric_names(columns: Iterable[str]) -> list[str]:
    """The metric names among a runs table's columns, their prefix removed."""
    return [c.removeprefix(METRICS) for c in columns if c.startswith(METRICS)]


def read_study(study: str, tracking_uri: str) -> StudyRecords:
    """Every run of the study's experiment, with the loss histories of its trials.

    Raises ConfigError when the store has no such study.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    names = study_names(client)
    experiment = client.get_experiment_by_name(study)
    if study not in names or experiment is None:
        what = (f"no study {study!r} in this tracking store" if experiment is None
                else f"{study!r} holds single runs (`harness train`), not a study")
        raise ConfigError("study", f"{what}; allowed: "
                          + (", ".join(names) or "none yet (run `harness ablate` first)"))
    runs = runs_frame(_all_runs(client, experiment.experiment_id))
    history = _histories(client, runs)
    return StudyRecords(runs, history, _bucket_counts(client, runs))


def study_names(client) -> list[str]:
    """The experiments that hold a study: those with a study's parent run (`harness train`'s
    experiments hold single runs and have nothing to report)."""
    experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    parents = client.search_runs(list(experiments), max_results=_PAGE,
                                 filter_string=f"tags.`{records.ROLE}` = '{records.ROLE_STUDY}'")
    return sorted({experiments[run.info.experiment_id] for run in parents})


def _all_runs(client, experiment_id: str) -> list:
    found, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=_PAGE, page_token=token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def runs_frame(runs: list) -> pd.DataFrame:
    """Runs laid out as `mlflow.search_runs` lays them out (info, metrics.*, params.*, tags.*).

    `mlflow.search_runs` itself reads only the process-wide tracking URI, and setting that also
    writes MLFLOW_TRACKING_URI into the environment; a client with an explicit URI leaves both
    alone.
    """
    rows = []
    for run in runs:
        info = run.info
        row = {"run_id": info.run_id, "experiment_id": info.experiment_id,
               "status": info.status, "artifact_uri": info.artifact_uri,
               "start_time": pd.to_datetime(info.start_time, unit="ms", utc=True),
               "end_time": pd.to_datetime(info.end_time, unit="ms", utc=True)}
        row.update({metric_column(k): v for k, v in run.data.metrics.items()})
        row.update({param_column(k): v for k, v in run.data.params.items()})
        row.update({tag_column(k): v for k, v in run.data.tags.items()})
        rows.append(row)
    frame = pd.DataFrame(rows)
    metrics = [c for c in frame.columns if c.startswith(METRICS)]
    frame[metrics] = frame[metrics].astype(float)
    return frame


def _bucket_counts(client, runs: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """Each MemoryFormer trial's buckets.npz (train/callbacks.py), where it logged one."""
    counts = {}
    role = runs.get(tag_column(records.ROLE), pd.Series(index=runs.index, dtype=object))
    with tempfile.TemporaryDirectory() as scratch, quiet_downloads():
        for run_id in runs.loc[role == records.ROLE_TRIAL, "run_id"]:
            if not any(item.path == records.BUCKETS_ARTIFACT
                       for item in client.list_artifacts(run_id)):
                continue
            path = Path(client.download_artifacts(run_id, records.BUCKETS_ARTIFACT, scratch))
            with np.load(path) as stored:
                counts[run_id] = {layer: stored[layer] for layer in stored.files}
            path.unlink()
    return counts


def _histories(client, runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    role = runs.get(tag_column(records.ROLE), pd.Series(index=runs.index, dtype=object))
    for run_id in runs.loc[role == records.ROLE_TRIAL, "run_id"]:
        for key in HISTORY_KEYS:
            for m in client.get_metric_history(run_id, key):
                rows.append((run_id, key, m.step, m.value, m.timestamp))
    history = pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "timestamp"])
    # a resumed run may log a step twice: keep the latest value
    history = history.sort_values("timestamp").drop_duplicates(["run_id", "key", "step"],
                                                                keep="last")
    return history.drop(columns="timestamp").sort_values(["run_id", "key", "step"]).reset_index(
        drop=True)
