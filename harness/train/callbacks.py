"""What every run measures besides the loss: throughput, wall time, peak memory, bucket usage.

Each callback logs through the trainer's logger at the step it measured, under its own prefix:
`perf/`, `mem/`, `buckets/` (names from harness.runs.records).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from harness.faults import crash_point
from harness.metrics.memory import PeakMemoryMeter, lifetime_peak_bytes
from harness.models.cost import TRAINING_FLOPS_FACTOR
from harness.runs import records
from harness.train.buckets import BucketCounter

BUCKETS_ARTIFACT = records.BUCKETS_ARTIFACT


def _log(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    if trainer.logger is not None:
        trainer.logger.log_metrics(metrics, step=trainer.global_step)


class Throughput(pl.Callback):
    """Training tokens per second over optimiser steps only (no validation, no data loading),
    excluding the first `warmup_steps` of this process; and wall time of the whole fit.

    `flops_per_token` (forward, exact count) turns tokens/s into achieved training FLOP/s at
    models/cost.py's convention, TRAINING_FLOPS_FACTOR forwards per training step.
    """

    def __init__(self, warmup_steps: int, log_every: int, flops_per_token: float | None = None):
        self.warmup_steps = warmup_steps
        self.log_every = log_every
        self.flops_per_token = flops_per_token
        self._steps = 0  # in this process: a resumed run warms up again
        self._tokens = 0
        self._seconds = 0.0  # after warm-up: what tokens/s divides by
        self.step_seconds = 0.0  # every step, warm-up included: what a run spends training
        self.wall_seconds = 0.0
        self._batch_start = 0.0
        self._fit_start = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()  # CUDA runs ahead of the host: time the real work
        self._steps += 1
        seconds = time.perf_counter() - self._batch_start
        self.step_seconds += seconds
        if self._steps > self.warmup_steps:
            self._seconds += seconds
            self._tokens += batch[:, 1:].numel()
        if trainer.global_step % self.log_every == 0:
            _log(trainer, self.metrics())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wall_seconds = time.perf_counter() - self._fit_start
        _log(trainer, self.metrics())

    def metrics(self) -> dict[str, float]:
        out = {records.STEP_SECONDS: self.step_seconds}
        if self.wall_seconds:
            out[records.WALL_SECONDS] = self.wall_seconds
        if not self._seconds:
            return out
        rate = self._tokens / self._seconds
        out[records.TOKENS_PER_S] = rate
        if self.flops_per_token:
            out[records.FLOPS_PER_TOKEN] = self.flops_per_token
            out[records.TRAIN_FLOPS_PER_S] = TRAINING_FLOPS_FACTOR * self.flops_per_token * rate
        return out


class ValidationClock(pl.Callback):
    """Seconds inside validation passes (their forwards and bucket counts; the checkpoint
    written after each is the checkpoint writer's time), summed over this process."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds += time.perf_counter() - self._start


class PeakMemoryMonitor(pl.Callback):
    """Peak memory since this fit started: CUDA allocator peak, or the process's resident-set
    high-water mark, reset at fit start (Linux), so a worker that ran an earlier, larger trial
    does not carry that trial's peak forward."""

    def __init__(self) -> None:
        self.meter: PeakMemoryMeter | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.meter = PeakMemoryMeter(pl_module.device)
        self.meter.start()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_peak(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_peak(trainer, pl_module)

    def _log_peak(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # no fit started (a bare validate): the process's lifetime peak
        peak = (self.meter.stop().peak_bytes if self.meter is not None
                else lifetime_peak_bytes(pl_module.device))
        _log(trainer, {records.PEAK_BYTES: float(peak)})


class BucketUsageMonitor(pl.Callback):
    """Hit counts of every memory layer's buckets over each validation pass (Figure 4).

    Logs the share of never-hit buckets and the normalised hit entropy per layer and averaged;
    writes the last pass's counts as the run's `buckets.npz` artifact (one (K, 2**b) int64 array
    per layer name) when the fit ends, and again after a validation run on its own (the one
    `train()` adds when the fit ended between validations), so it holds the final counts.
    """

    def __init__(self) -> None:
        self.counter: BucketCounter | None = None
        self._counted = False  # a real (not sanity-check) pass has filled the counts

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.counter is None:
            self.counter = BucketCounter(pl_module.model)
        self.counter.reset()
        self.counter.attach()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.counter is not None
        self.counter.detach()
        summary = self.counter.summary()
        if not summary or trainer.sanity_checking:
            return
        self._counted = True
        metrics = {}
        for name, stats in summary.items():
            for stat in records.BUCKET_STATS:
                metrics[records.bucket_metric(stat, name)] = getattr(stats, stat)
        for stat in records.BUCKET_STATS:
            values = [getattr(stats, stat) for stats in summary.values()]
            metrics[records.bucket_metric(stat)] = sum(values) / len(values)
        _log(trainer, metrics)
        if trainer.state.fn == "validate":
            self._log_counts(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._log_counts(trainer)

    def _log_counts(self, trainer: pl.Trainer) -> None:
        log_artifact = getattr(trainer.logger, "log_artifact", None)
        if not self._counted or log_artifact is None:
            return
        assert self.counter is not None
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / BUCKETS_ARTIFACT
            np.savez_compressed(path, **{name: counts.numpy()
                                         for name, counts in self.counter.counts.items()})
            log_artifact(path)


class CrashPoints(pl.Callback):
    """The `step` and `validation` crash points of the fault tests (see faults.py)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        crash_point("step")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        crash_point("validation")


class SaveAfterValidation(pl.Callback):
    """The run's one checkpoint, rewritten after each validation of a fit, so it holds that
    validation: a run resumed from it neither skips nor repeats one. Runs after every other
    callback (it is given last), so the fence has been asked and a pruned trial saves nothing.
    """

    def __init__(self, location: str):
        self.location = location

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            trainer.save_checkpoint(self.location, weights_only=False)
