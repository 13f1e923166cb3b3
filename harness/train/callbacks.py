"""What every run measures besides the loss: throughput, wall time, peak memory, bucket usage.

Each callback logs through the trainer's logger at the step it measured, under its own prefix:
`perf/`, `mem/`, `buckets/`.
"""

from __future__ import annotations

import resource
import sys
import time

import lightning.pytorch as pl
import torch

from harness.faults import crash_point
from harness.metrics.memory import PeakMemoryMeter
from harness.train.buckets import BucketCounter


def _log(trainer: pl.Trainer, metrics: dict[str, float]) -> None:
    if trainer.logger is not None:
        trainer.logger.log_metrics(metrics, step=trainer.global_step)


class Throughput(pl.Callback):
    """Training tokens per second over optimiser steps only (no validation, no data loading),
    excluding the first `warmup_steps` of this process; and wall time of the whole fit.

    `flops_per_token` (forward, exact count) turns tokens/s into achieved training FLOP/s at
    3x forward: the backward of a linear layer costs two of its forwards (input and weight
    gradients), and so does a memory layer's (gradient of each read row's weight, dy . T[idx],
    and the scatter of p dy into the read rows).
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
        out = {"perf/step_seconds": self.step_seconds}
        if self.wall_seconds:
            out["perf/wall_s"] = self.wall_seconds
        if not self._seconds:
            return out
        rate = self._tokens / self._seconds
        out["perf/tokens_per_s"] = rate
        if self.flops_per_token:
            out["perf/flops_per_token"] = self.flops_per_token
            out["perf/train_flops_per_s"] = 3 * self.flops_per_token * rate
        return out


def peak_memory_bytes(device: torch.device) -> int:
    """Peak allocator bytes on CUDA; peak resident set size of this process on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


class PeakMemory(pl.Callback):
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
        peak = (self.meter.stop().peak_bytes if self.meter is not None
                else peak_memory_bytes(pl_module.device))
        _log(trainer, {"mem/peak_bytes": float(peak)})


class BucketUsageMonitor(pl.Callback):
    """Hit counts of every memory layer's buckets over each validation pass (Figure 4).

    Logs the share of never-hit buckets and the normalised hit entropy per layer and averaged;
    keeps the last pass's counts for the run's `buckets.npz` artifact.
    """

    def __init__(self) -> None:
        self.counter: BucketCounter | None = None

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
        metrics = {}
        for name, stats in summary.items():
            metrics[f"buckets/{name}/unused_share"] = stats.unused_share
            metrics[f"buckets/{name}/entropy"] = stats.entropy
        for key in ("unused_share", "entropy"):
            values = [getattr(stats, key) for stats in summary.values()]
            metrics[f"buckets/{key}"] = sum(values) / len(values)
        _log(trainer, metrics)


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
            trainer.save_checkpoint(self.location)
