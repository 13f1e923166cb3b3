"""What a person watching a run sees: one bar of optimiser steps, the loss and the last validation.

Lightning's own bar shows an epoch bar and a bar per validation pass; language-model training has
no epochs, so the harness turns it off and draws this one instead. A study draws it under the
study's bar of cells (`position=1`, cleared when the trial ends).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import lightning.pytorch as pl

from harness.runs import records


@dataclass(frozen=True)
class BarStyle:
    desc: str = "train"
    position: int = 0  # 1: under a study's bar of cells
    leave: bool = True  # keep the finished bar on screen


TRAIN_BAR = BarStyle()  # `harness train`'s bar


class StepBar(pl.Callback):
    """A tqdm bar over optimiser steps: total = max_steps, or open-ended under a seconds budget."""

    def __init__(self, style: BarStyle, total: int | None):
        self.style, self.total = style, total
        self._bar = None
        self._val: float | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        from tqdm import tqdm

        self._bar = tqdm(total=self.total, initial=trainer.global_step, desc=self.style.desc,
                         unit="step", position=self.style.position, leave=self.style.leave,
                         file=sys.stderr, dynamic_ncols=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._bar is None:
            return
        self._bar.update(trainer.global_step - self._bar.n)
        self._show(trainer, refresh=False)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        val = trainer.callback_metrics.get(records.VAL_LOSS)
        if val is not None and not trainer.sanity_checking:
            self._val = float(val)
            if self._bar is not None:
                self._show(trainer, refresh=True)  # the last validation comes after the last step

    def _show(self, trainer: pl.Trainer, refresh: bool) -> None:
        loss = trainer.callback_metrics.get(records.TRAIN_LOSS)
        postfix = {} if loss is None else {"loss": f"{float(loss):.3f}"}
        if self._val is not None:
            postfix["val"] = f"{self._val:.3f}"
        self._bar.set_postfix(postfix, refresh=refresh)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.close()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
