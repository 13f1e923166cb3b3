"""Crash points for the harness's own fault tests.

`HARNESS_CRASH_AT=POINT:N` makes the process SIGKILL itself the N-th time it reaches `POINT`
(a name from POINTS), so a test can kill a worker at an exact moment of a study's life (during
creation, mid-step, between writing a checkpoint and renaming it into place) instead of at a
random time. Unset, which is always the case outside those tests, a point costs one lookup.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "HARNESS_CRASH_AT"
POINTS = (
    "study.created",  # the Optuna study exists, nothing else
    "study.defined",  # ... with its definition, before the MLflow parent run
    "parent.created",  # the parent run exists, the study does not name it yet
    "trial.started",  # a trial is RUNNING, it has no MLflow run yet
    "run.started",  # its MLflow run exists, the trial does not name it yet
    "step",  # after an optimiser step
    "validation",  # inside a validation pass
    "checkpoint.write",  # the checkpoint is written to a temporary file, not yet in place
    "log",  # a batch of metrics was logged
    "trial.finished",  # training ended, the trial is not COMPLETE yet
)
_reached: dict[str, int] = {}


def crash_point(point: str) -> None:
    spec = os.environ.get(VARIABLE)
    if not spec:
        return
    name, _, count = spec.partition(":")
    if name != point:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
