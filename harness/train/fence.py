"""Fencing: a worker that lost its trial stops before it writes again.

A worker paused or cut off longer than the heartbeat grace period has its trial taken for dead and
retried elsewhere, which continues the same MLflow run and checkpoint. When the paused worker
wakes, every write it is about to make (a checkpoint, a validation result, a batch of metrics)
first asks `Fence.check`, which raises `Fenced` once the trial is no longer its own; `train()`
then stops without touching the run or the checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import lightning.pytorch as pl


class Fenced(Exception):
    """This worker's trial is no longer its own: stop, writing nothing."""


class Fence:
    """`lost()` returns why the trial is no longer this worker's, or None while it is.

    Checked before every checkpoint and validation, and before other writes at most once every
    `recheck_seconds` of this process's own time: a pause (SIGSTOP, a partition) makes that
    time jump, so the first write after waking always asks again.
    """

    def __init__(self, lost: Callable[[], str | None], recheck_seconds: float = 1.0):
        self._lost = lost
        self.recheck_seconds = recheck_seconds
        self._confirmed = float("-inf")

    def check(self, always: bool = False) -> None:
        if not always and time.monotonic() - self._confirmed < self.recheck_seconds:
            return
        reason = self._lost()
        if reason is not None:
            raise Fenced(reason)
        self._confirmed = time.monotonic()


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
