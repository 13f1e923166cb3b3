"""A study's cells and where each stands, from the Optuna trials alone.

A cell is one grid point with its seed (or one sampled point of a search). Its first trial starts
a lineage; every retry (its worker died, it raised under the cap) is a new trial of that lineage,
and the latest one says where the cell stands.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.ablate.attrs import FINAL, SURPLUS
from harness.ablate.study_file import Study


def lineage_of(trial: FrozenTrial) -> int:
    """The number of the first trial of this trial's cell (Optuna's retry attribute)."""
    return trial.system_attrs.get("failed_trial", trial.number)


def is_finished(trial: FrozenTrial) -> bool:
    """COMPLETE, PRUNED, or a FAIL that is the cell's result (a dead worker never is)."""
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get(FINAL))


@dataclass(frozen=True)
class Cell:
    """The latest attempt at one cell (grid) or one sampled point (search)."""

    lineage: int  # number of the first trial of this cell; retries keep it
    trial: FrozenTrial

    @property
    def done(self) -> bool:
        return is_finished(self.trial)

    @property
    def failed(self) -> bool:
        return self.done and self.trial.state == TrialState.FAIL


def cells(study: optuna.Study) -> list[Cell]:
    """One entry per cell attempted so far; a retry replaces the trial it retries."""
    latest: dict[int, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(SURPLUS):
            continue
        lineage = lineage_of(trial)
        if lineage not in latest or trial.number > latest[lineage].number:
            latest[lineage] = trial
    return [Cell(lineage, trial) for lineage, trial in sorted(latest.items())]


def total_cells(study: Study) -> int:
    return len(study.cells()) if study.is_grid else study.search.n_trials  # type: ignore[union-attr]
