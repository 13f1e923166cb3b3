"""Fencing: a worker that lost its trial stops before it writes again.

A worker paused or cut off longer than the heartbeat grace period has its trial taken for dead and
retried elsewhere, which continues the same MLflow run and checkpoint. When the paused worker
wakes, every write it is about to make (a checkpoint, a validation result, a batch of metrics)
first asks `Fence.check`, which raises `Fenced` once the trial is no longer its own; `train()`
then stops without touching the run or the checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import lightning.pytorch as pl

_log = logging.getLogger(__name__)


class Fenced(Exception):
    """This worker's trial is no longer its own: stop, writing nothing."""


class Fence:
    """`lost()` returns why the trial is no longer this worker's, or None while it is.

    Checked before every checkpoint and validation, and before other writes at most once every
    `recheck_seconds` of this process's own time: a pause (SIGSTOP, a partition) makes that
    time jump, so the first write after waking always asks again.

    A store that cannot be asked (a database blip) is not a lost trial: training goes on for up
    to `outage_seconds` (the grace period: no other worker can take the trial over sooner)
    since the last answer, asking again at every write. Once lost, a trial stays lost: every
    later check raises at once (the logger's last flush on the way out asks too).
    """

    def __init__(self, lost: Callable[[], str | None], recheck_seconds: float = 1.0,
                 outage_seconds: float = 30.0):
        self._lost = lost
        self.recheck_seconds = recheck_seconds
        self.outage_seconds = outage_seconds
        self._confirmed = time.monotonic()  # a trial is its worker's when it starts
        self._warned = False  # once per outage
        self._lost_because: str | None = None

    def check(self, always: bool = False) -> None:
        if self._lost_because is not None:
            raise Fenced(self._lost_because)
        since = time.monotonic() - self._confirmed
        if not always and since < self.recheck_seconds:
            return
        try:
            reason = self._lost()
        except Exception as error:  # SQLAlchemy and drivers raise many types
            if since > self.outage_seconds:
                self._lost_because = f"its trial could not be checked for {since:.0f} s ({error})"
                raise Fenced(self._lost_because) from None
            if not self._warned:
                _log.warning("could not check this worker still holds its trial (%s); going "
                             "on for up to %.0f s", str(error).splitlines()[0][:200],
                             self.outage_seconds)
                self._warned = True
            return
        if reason is not None:
            self._lost_because = reason
            raise Fenced(reason)
        self._confirmed = time.monotonic()
        self._warned = False


class FenceCheck(pl.Callback):
    """Asks the fence before each validation and at its end, before its checkpoint is written
    (ModelCheckpoint runs after every other callback's on_validation_end)."""

    def __init__(self, fence: Fence, every_n_steps: int):
        self.fence = fence
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.fence.check(always=trainer.global_step % self.every_n_steps == 0)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.fence.check(always=True)
