"""One Optuna trial = one training run, a child of the study's MLflow parent run.

The trial and its run point at each other: the trial's user attrs hold the run id and its
checkpoint (attrs.py); the run's tags hold the study, the trial number and the cell. A retry
inherits those attrs from the attempt it retries and resumes its checkpoint in its run, on any
machine that can read the checkpoint location.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import optuna
from optuna.trial import TrialState

from harness.ablate.attrs import (
    CELL,
    CHECKPOINT,
    CHECKPOINT_STEP,
    FINAL,
    INTERRUPTED,
    RAISES,
    REASON,
    RUN_ID,
    SURPLUS,
)
from harness.ablate.cells import lineage_of
from harness.ablate.study_file import Study
from harness.faults import crash_point
from harness.runs import checkpoint_store, records
from harness.runs.config import with_values
from harness.runs.workspace import Workspace
from harness.tracking.client import Tracker
from harness.train.fence import Fence, Fenced
from harness.train.progress import BarStyle
from harness.train.run import (
    Recording,
    RunStopped,
    Supervisor,
    TrainingFailed,
    TrainResult,
    end_with_reason,
    train,
)

_log = logging.getLogger(__name__)
MAX_RAISES = 3  # attempts of a cell that raise (not NaN: that repeats) before it is FAIL for good
# A trial that starts while the tracking server restarts waits for it, as long as MLflow's own
# client retries a request (7 retries, backoff factor 2: about 4 minutes).
TRACKING_PATIENCE = 240.0


class PrunedRun(RunStopped):
    status = "KILLED"


class ReportToPruner(pl.Callback):
    """Reports val/loss at every validation, at the optimiser step, and stops a pruned trial.

    Optuna's stock Lightning callback reports per epoch; LM training has one long epoch.
    """

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get(records.VAL_LOSS)
        if trainer.sanity_checking or loss is None:
            return
        step = trainer.global_step
        self.trial.report(float(loss), step)
        if self.trial.should_prune():
            raise PrunedRun(f"pruned at step {step} (val/loss {float(loss):.4f})")


class TrialSupervisor(Supervisor):
    """Records the run and its checkpoints on the trial, so a retry can resume them; fences the
    run off once the trial is no longer this worker's."""

    def __init__(self, trial: optuna.Trial, tracker: Tracker, grace: int):
        self.trial = trial
        self.tracker = tracker
        self.fence = Fence(lambda: lost(trial), outage_seconds=grace)

    def started(self, run_id: str, checkpoint: str) -> None:
        self.trial.set_user_attr(RUN_ID, run_id)
        self.trial.set_user_attr(CHECKPOINT, checkpoint)
        self.tracker.set_tags(run_id, {records.TRIAL: str(self.trial.number)})

    def checkpointed(self, step: int) -> None:  # a retry elsewhere knows one was written
        try:
            self.trial.set_user_attr(CHECKPOINT_STEP, step)
        except optuna.exceptions.UpdateFinishedTrialError:
            raise Fenced(f"trial {self.trial.number} was finished by another worker") from None
        except Exception as error:  # a database blip: the next checkpoint records it
            _log.warning("checkpoint step %d not recorded on trial %d (%s)", step,
                         self.trial.number, str(error).splitlines()[0][:200])


@dataclass
class TrialRunner:
    """The objective Optuna calls: builds the cell's config, trains, returns the objectives."""

    study: Study
    tracker: Tracker
    workspace: Workspace  # its checkpoints: where every worker of the study can read them
    parent_run_id: str
    runtime: dict[str, Any] = field(default_factory=dict)  # {"train.devices": 2}: per machine
    grace: int = 30  # heartbeat grace period: how long a store outage can be ridden out
    lost: list[tuple[int, str]] = field(default_factory=list)  # trials this worker was fenced off
    progress: bool = False  # a bar of the trial's steps under the study's bar of cells

    def __call__(self, trial: optuna.Trial) -> list[float]:
        params = self.suggest(trial)
        inherited = dict(trial.user_attrs)  # a retry carries the dead trial's attrs
        crash_point("trial.started")
        if is_surplus(trial, grid=self.study.is_grid):
            trial.set_user_attr(SURPLUS, True)
            raise optuna.TrialPruned("this cell is already held by an earlier trial")
        label = records.cell_label(params)
        trial.set_user_attr(CELL, label)
        try:
            return self._run(trial, params, label, inherited)
        except optuna.TrialPruned:
            raise
        except Fenced as lost:  # the trial is FAIL already: nothing of it may be touched
            self.lost.append((trial.number, str(lost)))
            raise
        except KeyboardInterrupt:
            trial.set_user_attr(INTERRUPTED, True)
            trial.set_user_attr(REASON, "interrupted (Ctrl-C or SIGTERM)")
            raise
        except Exception as error:  # TrainingFailed (NaN) and anything else
            self._record_failure(trial, error, inherited)
            raise

    def _record_failure(self, trial: optuna.Trial, error: Exception,
                        inherited: dict[str, Any]) -> None:
        raises = int(inherited.get(RAISES, 0)) + 1
        reason = f"{type(error).__name__}: {error}"[:1000]
        final = isinstance(error, TrainingFailed) or raises >= MAX_RAISES
        if not final:
            reason += f" (attempt {raises} of {MAX_RAISES}; retried)"
        trial.set_user_attr(RAISES, raises)
        trial.set_user_attr(REASON, reason)
        run_id = trial.user_attrs.get(RUN_ID)
        if final:
            trial.set_user_attr(FINAL, True)
            if run_id:  # the cell's result: its run says why, whatever ended it
                end_with_reason(self.tracker, run_id, reason)

    def _run(self, trial: optuna.Trial, params: dict[str, Any], label: str,
             inherited: dict[str, Any]) -> list[float]:
        config = with_values(self.study.run_config(params), self.runtime)
        resume, continue_run = self._starting_point(trial, inherited)
        tags = {records.STUDY: self.study.name, records.TRIAL: str(trial.number),
                records.CELL: label, records.CELL_PARAMS: json.dumps(params, sort_keys=True),
                records.GROUP: records.cell_label(params, tuple(k for k in params
                                                                if k != records.SEED)),
                records.ROLE: records.ROLE_TRIAL}
        recording = Recording(tracking_uri=self.tracker.uri, experiment=self.study.name,
                              run_name=label, parent_run_id=self.parent_run_id, tags=tags,
                              patience=TRACKING_PATIENCE)
        callbacks = [ReportToPruner(trial)] if self.study.pruner != "none" else []
        start = time.perf_counter()
        try:
            result = train(config, workspace=self.workspace, recording=recording, resume=resume,
                           continue_run=continue_run, callbacks=callbacks,
                           supervisor=TrialSupervisor(trial, self.tracker, self.grace),
                           progress_bar=BarStyle(label, position=1, leave=False)
                           if self.progress else None)
        except PrunedRun as stop:
            raise optuna.TrialPruned(str(stop)) from None
        if self.study.evaluate:  # logged as eval/* metrics on the trial's own run
            from harness.evaluate import evaluate

            evaluate(result.run_id, list(self.study.evaluate), tracking_uri=self.tracker.uri,
                     workspace=self.workspace)
        recorded = self._log_trial_time(result, time.perf_counter() - start)
        crash_point("trial.finished")
        metrics = {**recorded, **result.metrics}
        return [records.OBJECTIVES[o.metric].read(metrics) for o in self.study.objectives]

    def _log_trial_time(self, result: TrainResult, seconds: float) -> dict[str, float]:
        """The trial's whole time, once (a resumed trial keeps its first); the run's metrics."""
        recorded = self.tracker.run(result.run_id).data.metrics
        if records.TRIAL_SECONDS not in recorded:
            self.tracker.log_metrics(result.run_id, {
                records.TRIAL_SECONDS: seconds,
                records.TRIAL_OVERHEAD: seconds - result.metrics.get(records.STEP_SECONDS, 0.0),
            }, step=result.steps)
        return recorded

    def _starting_point(self, trial: optuna.Trial,
                        inherited: dict[str, Any]) -> tuple[str | None, str | None]:
        """(checkpoint to resume, run to restart from step 0): the earlier attempt's run and
        checkpoint where they exist; the run's tag says why a retry starts from step 0."""
        run_id = inherited.get(RUN_ID) or self._unrecorded_run(trial)
        if run_id is None:
            return None, None
        checkpoint, step = inherited.get(CHECKPOINT), inherited.get(CHECKPOINT_STEP)
        if checkpoint is None or step is None:
            why = "its worker died before the first checkpoint"
        else:
            try:
                if checkpoint_store.exists(checkpoint):
                    return checkpoint, None
                why = (f"the checkpoint of step {step} at {checkpoint} is not readable from "
                       f"this machine ({socket.gethostname()}): no such file; give every worker "
                       "one --checkpoint-dir that all of them can read")
            except Exception as error:  # an fsspec store that cannot be reached
                why = (f"the checkpoint of step {step} at {checkpoint} cannot be reached from "
                       f"{socket.gethostname()} ({type(error).__name__}: {str(error)[:200]})")
        self.tracker.set_tags(run_id, {records.RESTART_REASON: f"{why}; trial "
                                       f"{trial.number} restarts the cell from step 0"})
        return None, run_id

    def _unrecorded_run(self, trial: optuna.Trial) -> str | None:
        """The run an earlier attempt created but died before recording on its trial."""
        mine = trial.study._storage.get_trial(trial._trial_id)  # optuna.Trial hides system attrs
        for number in mine.system_attrs.get("retry_history", []):
            runs = self.tracker.find_runs(self.study.name, {
                records.ROLE: records.ROLE_TRIAL, records.TRIAL: str(number),
                records.PARENT: self.parent_run_id})
            if runs:
                return runs[0].info.run_id
        return None

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        if self.study.is_grid:
            space = self.study.grid_space()
            return {name: trial.suggest_categorical(name, values) for name, values in space.items()}
        assert self.study.search is not None
        params: dict[str, Any] = {}
        for p in self.study.search.params:
            if p.choices is not None:
                params[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            elif isinstance(p.low, int) and isinstance(p.high, int) and not p.log:
                params[p.name] = trial.suggest_int(p.name, p.low, p.high, step=int(p.step or 1))
            else:
                params[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log,
                                                     step=p.step)
        params["seed"] = self.study.seeds[0]  # tuning: one run per sampled point
        return params


def lost(trial: optuna.Trial) -> str | None:
    """Why `trial` is no longer this worker's, or None: the fence of its training run."""
    state = trial.study._storage.get_trial(trial._trial_id).state
    if state == TrialState.RUNNING:
        return None
    return (f"trial {trial.number} is {state.name}: this worker was silent longer than the "
            "grace period (paused or cut off) and another worker continues its cell")


def is_surplus(trial: optuna.Trial, grid: bool) -> bool:
    """Whether another trial already holds this trial's cell.

    A retry stands down when another attempt at its cell is under way, done, or queued before
    it (two workers may both retry one dead trial). In a grid, the sampler gives trial n cell n
    while it can, then a random unclaimed cell; two workers racing for the last cell, or a
    finished grid, give a duplicate of an earlier trial's grid point.
    """
    trials = [t for t in trial.study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS)]
    me = next(t for t in trials if t.number == trial.number)
    if "failed_trial" in me.system_attrs:
        lineage = lineage_of(me)
        return any(
            t.number != me.number and lineage_of(t) == lineage and (
                t.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
                or (t.state == TrialState.WAITING and t.number < me.number)
                or (t.state == TrialState.FAIL and t.user_attrs.get(FINAL)))
            for t in trials)
    if not grid:
        return False
    return any(t.number < me.number and t.system_attrs.get("grid_id") == me.system_attrs.get(
        "grid_id") for t in trials)
