"""Retrying cells: a dead worker is never a cell's result.

Every worker, each time round its loop, looks at the latest attempt of every cell. One that is
FAIL but not FINAL (its worker died: stale heartbeat, SIGKILL, preemption; or it was interrupted;
or it raised under the cap) gets a WAITING copy that keeps its cell, MLflow run and checkpoint,
however often that has happened. Two workers may both enqueue one; the second to start sees the
first and stands down (trial.is_surplus). Trials that raise are capped (trial.py) and their last
failure made FINAL, with its reason.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.ablate.attrs import CARRIED, DEATHS, REASON, RUN_ID
from harness.ablate.cells import Cell
from harness.runs import records
from harness.tracking.client import Tracker


def retry_unfinished(optuna_study: optuna.Study, current: list[Cell], tracker: Tracker,
                     grace: int) -> int:
    """Enqueue a retry of every cell whose latest attempt failed without being its result;
    `current` is `cells(optuna_study)` as the caller just read it."""
    retried = 0
    for cell in current:
        if cell.trial.state == TrialState.FAIL and not cell.done:
            retry(optuna_study, cell.trial, tracker, grace)
            retried += 1
    return retried


def retry(optuna_study: optuna.Study, trial: FrozenTrial, tracker: Tracker, grace: int) -> None:
    died = REASON not in trial.user_attrs  # a trial that raised or was interrupted says why
    attrs = {key: trial.user_attrs[key] for key in CARRIED if key in trial.user_attrs}
    if died:
        attrs[DEATHS] = attrs.get(DEATHS, 0) + 1
    system_attrs = {"failed_trial": trial.number, "retry_history": [], **trial.system_attrs}
    system_attrs["retry_history"] = [*system_attrs["retry_history"], trial.number]
    optuna_study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=attrs, system_attrs=system_attrs,
        intermediate_values=trial.intermediate_values))
    run_id = trial.user_attrs.get(RUN_ID)
    if died and run_id:  # nobody else can close it: its worker is gone
        run = tracker.find_run(run_id)
        if run is not None and run.info.status == "RUNNING":
            tracker.set_tags(run_id, {records.STOP_REASON: f"the worker of trial {trial.number} "
                                      f"died (no heartbeat for {grace} s); its cell is retried "
                                      "and continues this run"})
            tracker.end_run(run_id, "KILLED")
