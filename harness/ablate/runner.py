"""`run_study`: one worker of a study. Any number of them, on any machines, share one storage.

A worker claims cells until none is left, then waits for the cells other workers hold, so a cell
whose worker died (its heartbeat goes stale) is retried by whoever is still running; it returns
when every cell is finished. Rerunning the same command therefore continues a study.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.ablate.storage import PARENT_RUN, Heartbeat, open_storage, open_study, wait_for_attr
from harness.ablate.study_file import Study
from harness.ablate.trial import CELL, INTERRUPTED, REASON, RUN_ID, SURPLUS, TrialRunner
from harness.tracking import HOME, Tracker, check_tracking_uri, provenance, redact

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class Settings:
    """How to run a study (not what it is): changing these never changes its cells."""

    storage: str
    tracking_uri: str
    home: Path = HOME
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    poll_seconds: float = 2.0
    progress: bool = True
    runtime_overrides: tuple[str, ...] = ()  # e.g. train.devices=2 on a multi-GPU machine


@dataclass(frozen=True)
class Cell:
    """The latest attempt at one cell (grid) or one sampled point (search)."""

    lineage: int  # number of the first trial of this cell; retries keep it
    trial: FrozenTrial

    @property
    def done(self) -> bool:
        return self.trial.state in FINISHED


def cells(study: optuna.Study) -> list[Cell]:
    """One entry per cell attempted so far; a retry replaces the trial it retries."""
    latest: dict[int, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(SURPLUS):
            continue
        lineage = trial.system_attrs.get("failed_trial", trial.number)
        if lineage not in latest or trial.number > latest[lineage].number:
            latest[lineage] = trial
    return [Cell(lineage, trial) for lineage, trial in sorted(latest.items())]


def total_cells(study: Study) -> int:
    return len(study.cells()) if study.is_grid else study.search.n_trials  # type: ignore[union-attr]


@dataclass(frozen=True)
class Prepared:
    """A study opened in its storage, with its MLflow parent run: ready for workers."""

    study: Study
    optuna_study: optuna.Study
    tracker: Tracker
    parent_run_id: str


def prepare_study(study: Study, settings: Settings) -> Prepared:
    """Open (or create) the study and its parent run; raises ConfigError on bad stores."""
    check_tracking_uri(settings.tracking_uri)
    storage = open_storage(settings.storage, settings.heartbeat)
    optuna_study, created = open_study(study, storage)
    tracker = Tracker(settings.tracking_uri, artifact_root=settings.home / "artifacts")
    parent = _parent_run(optuna_study, created, tracker, study, settings)
    return Prepared(study, optuna_study, tracker, parent)


def run_study(study: Study, settings: Settings, prepared: Prepared | None = None) -> list[Cell]:
    """Work on the study until every cell is finished; returns the cells."""
    prepared = prepared or prepare_study(study, settings)
    optuna_study, tracker, parent = prepared.optuna_study, prepared.tracker, prepared.parent_run_id
    runner = TrialRunner(study, tracker, settings.home, parent, settings.runtime_overrides)
    total = total_cells(study)
    bar = _progress_bar(study.name, total, settings.progress)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our one-line summaries instead
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banner per trial
    _requeue_interrupted(optuna_study)
    surplus_streak = 0
    try:
        while True:
            _fail_stale_trials(optuna_study)
            current = cells(optuna_study)
            done = sum(c.done for c in current)
            if bar is not None:
                bar.n = done
                bar.refresh()
            if done >= total:
                break
            waiting = any(c.trial.state == TrialState.WAITING for c in current)
            if waiting or len(current) < total:
                optuna_study.optimize(runner, n_trials=1, catch=(Exception,),
                                      callbacks=[_summary(settings.progress, bar)])
                last = optuna_study.trials[-1]
                surplus_streak = surplus_streak + 1 if last.user_attrs.get(SURPLUS) else 0
                if surplus_streak > 2 * total:  # a sampler that cannot reach the missing cells
                    raise RuntimeError(f"study {study.name}: the sampler keeps proposing cells "
                                       f"that are already held; {done}/{total} finished")
            else:
                time.sleep(settings.poll_seconds)  # the rest is running in other workers
    except KeyboardInterrupt:
        tracker.set_tags(parent, {"stop_reason": "interrupted; rerun to continue the study"})
        tracker.end_run(parent, "KILLED")
        raise
    finally:
        if bar is not None:
            bar.close()
    finished = cells(optuna_study)
    _close_parent(tracker, parent, finished)
    return finished


def _requeue_interrupted(optuna_study: optuna.Study) -> None:
    """An interrupted trial is not a failed cell: queue it again, to resume its checkpoint."""
    with warnings.catch_warnings():  # experimental since Optuna 2.8 (see storage.py)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=None, inherit_intermediate_values=True)
        for cell in cells(optuna_study):
            if cell.trial.state == TrialState.FAIL and cell.trial.user_attrs.get(INTERRUPTED):
                retry(optuna_study, cell.trial)


def _fail_stale_trials(optuna_study: optuna.Study) -> None:
    """Fail trials whose worker died (stale heartbeat); the retry callback requeues their cell."""
    with warnings.catch_warnings():
        # Experimental since Optuna 2.9 yet the documented way to do this outside optimize().
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(optuna_study)


def _parent_run(optuna_study: optuna.Study, created: bool, tracker: Tracker, study: Study,
                settings: Settings) -> str:
    """The study's MLflow parent run: made by the worker that created the study."""
    if not created:
        parent = wait_for_attr(optuna_study, PARENT_RUN)
        tracker.client.update_run(parent, status="RUNNING")
        return parent
    tags = {**provenance(), "harness.study": study.name, "harness.role": "study",
            "harness.storage": redact(settings.storage), "mlflow.note.content": study.description}
    parent = tracker.start_run(study.name, study.name, tags)
    definition = asdict(study)
    tracker.log_params(parent, {
        "study.preset": study.preset, "study.steps": study.steps,
        "study.val_every": study.val_every, "study.seeds": list(study.seeds),
        "study.axes": json.dumps(definition["axes"]), "study.search": json.dumps(
            definition["search"]), "study.objectives": ",".join(
            f"{o.metric}:{o.direction}" for o in study.objectives),
        "study.pruner": study.pruner, "study.cells": total_cells(study),
        **{f"study.set.{k}": v for k, v in study.overrides},
    })
    tracker.log_text(parent, json.dumps(definition, indent=2, default=str), "study.json")
    optuna_study.set_user_attr(PARENT_RUN, parent)
    return parent


def _close_parent(tracker: Tracker, parent: str, finished: list[Cell]) -> None:
    states = Counter(c.trial.state.name for c in finished)
    tracker.log_metrics(parent, {f"cells/{state.lower()}": n for state, n in states.items()},
                        step=0)
    tracker.end_run(parent, "FINISHED")


def _progress_bar(name: str, total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="cell", file=sys.stderr, dynamic_ncols=True)


def _summary(enabled: bool, bar):
    """One line per trial this worker finished."""

    def report(study: optuna.Study, trial: FrozenTrial) -> None:
        if not enabled or trial.user_attrs.get(SURPLUS):
            return
        cell = trial.user_attrs.get(CELL, "?")
        if trial.state == TrialState.COMPLETE:
            values = ", ".join(f"{v:.4g}" for v in trial.values)
            outcome = f"done: {values}"
        elif trial.state == TrialState.PRUNED:
            outcome = "pruned"
        else:
            outcome = f"FAILED: {trial.user_attrs.get(REASON, 'unknown error')}"
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        line = (f"trial {trial.number} [{cell}] {outcome} ({seconds:.0f} s, "
                f"run {trial.user_attrs.get(RUN_ID, '-')})")
        (bar.write if bar is not None else print)(line)

    return report
