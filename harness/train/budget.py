"""What a run has spent, and a seconds budget spent as the run goes.

Every run logs, at each validation and at the end, the training FLOPs it has used (runs/budget.py's
convention: whole optimiser steps x FLOPs per step), the seconds of optimiser steps it has used
(forward, backward and optimiser step; data loading, validation, checkpoints and logging are
not counted) and the steps reached, so a report can draw loss against any of them.

A seconds budget stops the run after the step that spends it, so it overshoots by less than one
step. Its learning-rate schedule follows the clock, not a step count: warm-up and cosine decay run
over the share of the budget spent, each step's rate set from the share it will have spent when it
ends at the pace so far, so the last step is taken at the floor (the first, at the start: 0).
"""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
import torch

from harness.runs import records
from harness.runs.budget import flops_per_step
from harness.runs.config import RunConfig
from harness.train.module import lr_factor_at


class BudgetClock(pl.Callback):
    def __init__(self, config: RunConfig):
        self.flops_per_step = flops_per_step(config)
        self.budget = config.train.seconds_budget
        self.peak_lr = config.peak_lr
        self.warmup_fraction = config.optim.warmup_fraction
        self.min_ratio = config.optim.min_lr_ratio
        self.seconds = 0.0  # optimiser-step seconds of the whole run, a resumed one included
        self._start = 0.0

    def state_dict(self) -> dict[str, Any]:  # kept in every checkpoint: a resumed run goes on
        return {"seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.seconds = float(state_dict.get("seconds", 0.0))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.budget is not None:
            self._set_lr(trainer.optimizers[0], trainer.global_step)
        self._start = time.perf_counter()

    def _set_lr(self, optimizer: torch.optim.Optimizer, steps_done: int) -> None:
        """The rate of the coming step: the schedule at the share of the budget spent when it
        ends, at the mean pace of the steps so far (the first step: at the start)."""
        pace = self.seconds / steps_done if steps_done else 0.0
        progress = min(1.0, (self.seconds + pace) / self.budget)
        factor = lr_factor_at(progress, self.warmup_fraction, self.min_ratio)
        for group in optimizer.param_groups:
            group["lr"] = self.peak_lr * factor

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _synchronize(pl_module)
        self.seconds += time.perf_counter() - self._start
        if self.budget is not None and self.seconds >= self.budget:
            trainer.should_stop = True  # after this step: the budget is spent

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log(trainer)

    def used(self, steps: int) -> dict[str, float]:
        return {records.BUDGET_FLOPS_USED: float(steps * self.flops_per_step),
                records.BUDGET_SECONDS_USED: self.seconds,
                records.BUDGET_STEPS: float(steps)}

    def _log(self, trainer: pl.Trainer) -> None:
        if trainer.logger is not None:
            trainer.logger.log_metrics(self.used(trainer.global_step), step=trainer.global_step)


def _synchronize(pl_module: pl.LightningModule) -> None:
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize()  # CUDA runs ahead of the host: time the real work
