"""Chance levels of the multiple-choice accuracies a report shows, and whether a cell's accuracy
is above its task's chance.

Chance is 1 / number of choices of the task. It comes from the run's own `eval/<task>/chance`
metric where the harness logged one (harness/evaluate/multiple_choice.py averages 1 / choices,
times the gold answers, over the examples), else from CHOICES: the choices per example of the
tasks the harness runs, as their builders define them. A task in neither has no chance line.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.report.reader import metric_names
from harness.runs import records

CHOICES = {  # task (as in metric keys) -> choices per example
    "mc.next-line": 4, "mc.speaker": 4,  # harness/evaluate/play_tasks.py CHOICES
    "piqa": 2, "winogrande": 2, "wsc": 2,  # lm-evaluation-harness: two options or yes/no
    "arc_easy": 4, "arc_challenge": 4, "logiqa": 4,  # four options (a few ARC items have 3 or 5)
}
# the paper's six-task average (Tables 1, 2, 6): piqa, winogrande, wsc at 1/2, both ARCs and
# LogiQA at 1/4
PAPER_SUITE_CHANCE = (3 * 0.5 + 3 * 0.25) / 6
ACCURACIES = ("acc", "acc_norm")
MEAN_KEY = "eval_mean_acc"
MARGIN = 2.0  # standard errors above chance an accuracy must be to count as above it


def chance_key(key: str) -> str:
    """The per-run column of a quantity's chance level (not an eval.* key, so never shown)."""
    return f"chance.{key}"


def is_accuracy(key: str) -> bool:
    return key == MEAN_KEY or (key.startswith("eval.") and key.rsplit(".", 1)[-1] in ACCURACIES)


def chance_columns(runs: pd.DataFrame, metric) -> pd.DataFrame:
    """chance.<key> of every accuracy quantity of every run, NaN where unknown. metric: column
    name -> numeric Series of the runs (quantities._reader)."""
    out = pd.DataFrame(index=runs.index)
    tasks = sorted({score[0] for name in metric_names(runs.columns)
                    if (score := records.eval_score(name)) and score[1] in ACCURACIES})
    for task in tasks:
        known = 1 / CHOICES[task] if task in CHOICES else math.nan
        level = metric(records.eval_metric(task, "chance")).fillna(known)
        for name in ACCURACIES:
            out[chance_key(f"eval.{task}.{name}")] = level
    acc = [chance_key(f"eval.{task}.acc") for task in tasks]
    # the mean accuracy's chance: the mean of its tasks' (unknown if any task's is)
    out[chance_key(MEAN_KEY)] = out[acc].mean(axis=1, skipna=False) if acc else np.nan
    return out


def source_text() -> str:
    return ("chance = 1 / number of choices per example: from the runs' eval/<task>/chance "
            "metric, else the task's builder (4 for mc:next-line and mc:speaker, "
            "harness/evaluate/play_tasks.py; 2 for piqa, winogrande and wsc and 4 for arc_easy, "
            "arc_challenge and logiqa, as lm-evaluation-harness poses them)")


def above_chance(mean: float, se: float, chance: float) -> bool | None:
    """Whether an accuracy is above chance by MARGIN standard errors over seeds (with one seed,
    or none of spread, by its mean alone); None where either is unknown."""
    if not all(map(math.isfinite, (mean, chance))):
        return None
    spread = se if math.isfinite(se) else 0.0
    return bool(mean - MARGIN * spread > chance)

