"""`run_study`: one worker of a study. Any number of them, on any machines, share one storage.

A worker claims cells until none is left, then waits for the cells other workers hold, so a cell
whose worker died (its heartbeat goes stale) is retried by whoever is still running; it returns
when every cell is finished. Rerunning the same command therefore continues a study, whatever
moment its last worker died at: a half-made study is made again (storage.open_study), a dead
attempt is retried (retry.py), a zombie worker is fenced off (train/fence.py).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.trial import FrozenTrial, TrialState

from harness.ablate.attrs import CELL, REASON, RUN_ID, SURPLUS
from harness.ablate.cells import Cell, cells, total_cells
from harness.ablate.protocol import Protocol, Sweep, next_values, sweeps_of
from harness.ablate.retry import retry_unfinished
from harness.ablate.storage import (
    PARENT_RUN,
    Definition,
    Heartbeat,
    discard_half_made,
    open_storage,
    open_study,
    read_definition,
)
from harness.ablate.study_file import Study
from harness.ablate.trial import TrialRunner
from harness.faults import crash_point
from harness.runs import records
from harness.runs.workspace import Workspace
from harness.tracking.client import Tracker
from harness.tracking.provenance import provenance
from harness.tracking.stores import check_tracking_uri, redact
from harness.tracking.ui import study_view_tags

STORE_ERRORS = (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError)
__all__ = ["Cell", "Prepared", "Settings", "cells", "prepare_study", "run_study", "total_cells"]


@dataclass(frozen=True)
class Settings:
    """How to run a study (not what it is): changing these never changes its cells."""

    storage: str
    tracking_uri: str
    workspace: Workspace = Workspace()
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    poll_seconds: float = 2.0
    progress: bool = True
    devices: int | None = None  # devices per trial (train.devices), e.g. 2 on a 2-GPU machine
    strategy: str | None = None  # Lightning strategy per trial (train.strategy), e.g. ddp
    checkpoint_dir: str | None = None  # a path or fsspec URL every worker can read

    @property
    def runtime_values(self) -> dict[str, Any]:
        """The per-machine train settings, applied to every cell's config as typed values."""
        values = {"train.devices": self.devices, "train.strategy": self.strategy}
        return {key: value for key, value in values.items() if value is not None}

    @property
    def trial_workspace(self) -> Workspace:
        """The workspace trials train in: checkpoints where every worker can read them."""
        if self.checkpoint_dir is None:
            return self.workspace
        return replace(self.workspace, checkpoint_root=self.checkpoint_dir)


@dataclass(frozen=True)
class Prepared:
    """A study opened in its storage, with its MLflow parent run: ready for workers."""

    study: Study
    optuna_study: optuna.Study
    tracker: Tracker
    parent_run_id: str


def prepare_study(study: Study, settings: Settings) -> Prepared:
    """Open (or create, or repair) the study and its parent run; ConfigError on bad stores."""
    check_tracking_uri(settings.tracking_uri)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our one-line summaries instead
    storage = open_storage(settings.storage, settings.heartbeat)
    tracker = Tracker(settings.tracking_uri, artifact_root=settings.workspace.artifacts)
    half_made: tuple[int, float] | None = None  # (study id, when this worker first saw it)
    while True:
        optuna_study, created = open_study(study, storage)
        if created:
            try:
                parent = _create_parent_run(optuna_study, tracker, study, settings)
            except KeyError:  # taken for dead and deleted while creating it: start over
                continue
            return Prepared(study, optuna_study, tracker, parent)
        parent = optuna_study.user_attrs.get(PARENT_RUN)
        if parent is not None:
            tracker.reopen_run(parent)
            return Prepared(study, optuna_study, tracker, parent)
        # Half made: its creator is still at work, or died. Give it the grace period.
        if half_made is None or half_made[0] != optuna_study._study_id:
            half_made = (optuna_study._study_id, time.monotonic())
        definition = read_definition(optuna_study)
        silent = time.monotonic() - half_made[1] > settings.heartbeat.grace
        if silent or (definition is not None and definition.creator_is_dead()):
            _discard(optuna_study, definition, tracker, study.name)
        else:
            time.sleep(0.5)


def _discard(optuna_study: optuna.Study, definition: Definition | None, tracker: Tracker,
             name: str) -> None:
    """Delete a half-made study and end the parent run its creator may have left behind."""
    discard_half_made(optuna_study)
    if definition is not None and definition.uid:
        for run in tracker.find_runs(name, {records.ROLE: records.ROLE_STUDY,
                                            records.STUDY_UID: definition.uid}):
            tracker.discard_run(run.info.run_id, "the worker creating this study died before "
                                "it was complete; the study was made again")


def run_study(study: Study, settings: Settings, prepared: Prepared | None = None) -> list[Cell]:
    """Work on the study until every cell is finished; returns the cells."""
    prepared = prepared or prepare_study(study, settings)
    runner = TrialRunner(study, prepared.tracker, settings.trial_workspace,
                         prepared.parent_run_id, settings.runtime_values,
                         settings.heartbeat.grace, progress=settings.progress)
    bar = _progress_bar(study.name, total_cells(study), settings.progress)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banner per trial
    try:
        _work(prepared, runner, settings, bar)
    except KeyboardInterrupt:
        _interrupted(prepared)
        raise
    finally:
        if bar is not None:
            bar.close()
    finished = cells(prepared.optuna_study)
    _close_parent(prepared.tracker, prepared.parent_run_id, finished)
    return finished


def run_protocol(protocol: Protocol, settings: Settings) -> list[tuple[Study, list[Cell]]]:
    """Every phase of a tune-then-compare study in order; (study, cells) of each phase run."""
    phases: list[tuple[Study, list[Cell]]] = []
    sweeps: list[Sweep] = []
    for arm in protocol.arms:
        finished: list[list[Cell]] = []
        values, round_ = protocol.values, 0
        while True:
            study = protocol.tune_study(arm, round_, values)
            finished.append(run_study(study, settings))
            phases.append((study, finished[-1]))
            arm_sweeps = sweeps_of(arm, protocol, finished)
            values = next_values(arm_sweeps, protocol.values)
            if not values or round_ >= protocol.extend:
                break
            round_ += 1
        sweeps += arm_sweeps
    for study in protocol.compare_studies(sweeps):
        study = replace(study, sweeps=tuple(sweeps))  # for the report (not in its digest)
        phases.append((study, run_study(study, settings)))
    return phases


def _work(prepared: Prepared, runner: TrialRunner, settings: Settings, bar) -> None:
    """Claim and run cells until every cell is done, waiting on those other workers hold."""
    optuna_study, total = prepared.optuna_study, total_cells(prepared.study)
    surplus_streak = 0
    outage: float | None = None  # when the storage stopped answering, if it has
    while True:
        try:
            current = _current_cells(optuna_study, prepared.tracker, settings)
        except STORE_ERRORS as error:  # a database blip: no worker can move on either
            outage = outage or time.monotonic()
            if time.monotonic() - outage > settings.heartbeat.grace:
                raise
            print(f"storage unreachable ({redact(str(error)).splitlines()[0][:160]}); "
                  "trying again", file=sys.stderr)
            time.sleep(settings.poll_seconds)
            continue
        outage = None
        done = sum(c.done for c in current)
        if bar is not None and done > bar.n:
            bar.update(done - bar.n)  # drawn once; close() draws the final 100% line
        if done >= total:
            return
        waiting = any(c.trial.state == TrialState.WAITING for c in current)
        if not waiting and len(current) >= total:
            time.sleep(settings.poll_seconds)  # the rest is running in other workers
            continue
        _one_trial(optuna_study, runner, _summary(settings.progress, bar))
        surplus_streak = surplus_streak + 1 if optuna_study.trials[-1].user_attrs.get(
            SURPLUS) else 0
        if surplus_streak > 2 * total:  # a sampler that cannot reach the missing cells
            raise RuntimeError(f"study {prepared.study.name}: the sampler keeps proposing "
                               f"cells that are already held; {done}/{total} finished")


def _current_cells(optuna_study: optuna.Study, tracker: Tracker,
                   settings: Settings) -> list[Cell]:
    """The study's cells, after failing dead workers' trials and queueing their retries."""
    _fail_stale_trials(optuna_study)
    current = cells(optuna_study)
    if retry_unfinished(optuna_study, current, tracker, settings.heartbeat.grace):
        current = cells(optuna_study)
    return current


def _interrupted(prepared: Prepared) -> None:
    """Ctrl-C: the parent run ends KILLED unless another worker is still at the study."""
    others = prepared.optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not others:
        prepared.tracker.set_tags(prepared.parent_run_id, {
            records.STOP_REASON: "interrupted; rerun to continue the study"})
        prepared.tracker.end_run(prepared.parent_run_id, "KILLED")


def _one_trial(optuna_study: optuna.Study, runner: TrialRunner, summary) -> None:
    lost_before = len(runner.lost)
    try:
        optuna_study.optimize(runner, n_trials=1, catch=(Exception,), callbacks=[summary])
    except Exception as error:
        if len(runner.lost) > lost_before:
            # Optuna cannot tell a trial another worker already failed: this one was fenced off.
            number, why = runner.lost[-1]
            print(f"trial {number} stopped, nothing written: {why}", file=sys.stderr)
            return
        store_error = _store_error(error)
        if store_error is None:
            raise
        # The trial's result could not be stored: it stays RUNNING, its heartbeat stops, and
        # it is retried from its final checkpoint once the storage answers again.
        why = redact(str(store_error)).splitlines()[0][:160]
        print(f"storage unreachable at the end of a trial ({why}); it will be retried",
              file=sys.stderr)


def _store_error(error: BaseException | None) -> BaseException | None:
    """The storage error behind `error` (Optuna may raise another while handling one)."""
    while error is not None:
        if isinstance(error, STORE_ERRORS):
            return error
        error = error.__cause__ or error.__context__
    return None


def _fail_stale_trials(optuna_study: optuna.Study) -> None:
    """Fail trials whose worker died (stale heartbeat); retry.py then requeues their cell."""
    with warnings.catch_warnings():
        # Experimental since Optuna 2.9 yet the documented way to do this outside optimize().
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(optuna_study)


def _create_parent_run(optuna_study: optuna.Study, tracker: Tracker, study: Study,
                       settings: Settings) -> str:
    """The study's MLflow parent run, made by the worker that created the study; KeyError when
    the study was deleted meanwhile (this worker was taken for dead), its run then discarded."""
    definition = read_definition(optuna_study)
    tags = {**provenance(), records.STUDY: study.name, records.ROLE: records.ROLE_STUDY,
            records.STORAGE: redact(settings.storage), records.NOTE: study.description,
            records.STUDY_UID: definition.uid if definition else ""}
    parent = tracker.start_run(study.name, study.name, tags)
    tracker.set_experiment_tags(study.name, study_view_tags(records.GROUP))
    crash_point("parent.created")
    spec = asdict(study)
    tracker.log_params(parent, {
        "study.preset": study.preset, "study.steps": study.steps, "study.budget": study.budget,
        "study.budget_amount": study.budget_amount if study.budget_amount else study.steps,
        "study.val_every": study.val_every, "study.seeds": list(study.seeds),
        "study.axes": json.dumps(spec["axes"]), "study.search": json.dumps(spec["search"]),
        **({"study.arms": json.dumps(spec["arms"], default=str)} if study.arms else {}),
        **({"study.sweeps": json.dumps(spec["sweeps"])} if study.sweeps else {}),
        "study.objectives": ",".join(f"{o.metric}:{o.direction}" for o in study.objectives),
        "study.pruner": study.pruner, "study.cells": total_cells(study),
        **{f"study.set.{k}": v for k, v in study.overrides},
    })
    tracker.log_text(parent, json.dumps(spec, indent=2, default=str), "study.json")
    try:
        optuna_study.set_user_attr(PARENT_RUN, parent)
    except KeyError:
        tracker.discard_run(parent, "this worker was taken for dead while creating the study")
        raise
    return parent


def unfinished_summary(finished: list[Cell]) -> str | None:
    """One line naming the cells that failed for good, or None when every cell finished."""
    failed = [c for c in finished if c.failed]
    if not failed:
        return None
    names = "; ".join(f"{c.trial.user_attrs.get(CELL, c.lineage)} "
                      f"({c.trial.user_attrs.get(REASON, 'no reason recorded')[:120]})"
                      for c in failed[:5])
    more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
    return f"{len(failed)} of {len(finished)} cells failed: {names}{more}"


def _close_parent(tracker: Tracker, parent: str, finished: list[Cell]) -> None:
    states = Counter(c.trial.state.name for c in finished)
    metrics = {f"cells/{state.lower()}": float(n) for state, n in states.items()}
    run = tracker.run(parent)
    if run.data.metrics != {**run.data.metrics, **metrics}:  # another worker logged them
        tracker.log_metrics(parent, metrics, step=0)
    summary = unfinished_summary(finished)
    if summary is None:
        tracker.end_run(parent, "FINISHED")
    else:
        tracker.set_tags(parent, {records.FAILURE_REASON: summary})
        tracker.end_run(parent, "FAILED")


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
        if bar is None:
            print(line, flush=True)
            return
        with bar.external_write_mode(file=sys.stdout):  # the bars cleared, then redrawn below
            print(line, flush=True)  # flushed inside: piped stdout would land after the redraw

    return report
