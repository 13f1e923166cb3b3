"""The timing pass: each cell's training step timed after the study, in one quiet process.

Throughput seen during training depends on whatever else the machine ran meanwhile (one
configuration read 5.1K to 14.3K tokens/s across reports). Here every cell of a finished study is
rebuilt from its run's config.yaml and its training step (forward, loss, backward, gradient
clipping, the run's own AdamW) is timed on real training batches, cells interleaved round by
round, so a slow spell of the machine falls on all of them alike. A cell's tokens/s is
batch x seq_len / its median step time over the rounds, with the slowest and fastest rounds as
its spread. Run it with nothing else running: `harness time STUDY`.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from harness.runs.config import RunConfig

ROUNDS, STEPS, WARMUP = 5, 8, 3


@dataclass(frozen=True)
class Timing:
    tokens_per_s: float  # from the median round
    low: float  # the slowest round
    high: float  # the fastest round
    rounds: int
    steps: int  # optimiser steps per round

    @property
    def spread(self) -> float:
        """fastest / slowest round (1.0: no spread)."""
        return self.high / self.low if self.low > 0 else float("inf")


def time_cells(configs: Mapping[str, RunConfig], rounds: int = ROUNDS, steps: int = STEPS,
               warmup: int = WARMUP, progress: Callable[[str], None] | None = None
               ) -> dict[str, Timing]:
    """Time each config's training step: `warmup` untimed steps, then `rounds` rounds of
    `steps` steps per cell, the cells taking turns within each round."""
    steppers = {name: _stepper(config) for name, config in configs.items()}
    for stepper in steppers.values():
        for _ in range(warmup):
            stepper.step()
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    for round_number in range(rounds):
        for name, stepper in steppers.items():
            start = time.perf_counter()
            for _ in range(steps):
                stepper.step()
            seconds[name].append(time.perf_counter() - start)
        if progress is not None:
            progress(f"round {round_number + 1} of {rounds}")
    out = {}
    for name, config in configs.items():
        tokens = config.data.batch_size * config.seq_len * steps
        rates = [tokens / s for s in seconds[name]]
        out[name] = Timing(statistics.median(rates), min(rates), max(rates), rounds, steps)
    return out


@dataclass
class _Stepper:
    """One run's model, optimiser and batches: `step()` is one optimiser step of train()."""

    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batches: list[torch.Tensor]
    precision: str
    grad_clip: float
    _next: int = 0

    def step(self) -> None:
        batch = self.batches[self._next % len(self.batches)]  # (B, T + 1)
        self._next += 1
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16"
                    else contextlib.nullcontext())
        with autocast:
            loss = self.module._loss(batch)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def _stepper(config: RunConfig, batches: int = 4) -> _Stepper:
    from harness.data.datamodule import TextDataModule
    from harness.train.kernel import prepare_kernel
    from harness.train.module import CausalLM

    prepare_kernel([config], None)
    data = TextDataModule(config.data, seq_len=config.seq_len, order_seed=config.train.seed)
    data.prepare()
    loader = iter(data.train_dataloader())
    taken = [next(loader) for _ in range(batches)]
    torch.manual_seed(config.train.seed)
    module = CausalLM(config)
    module.train()
    optimizers = module.configure_optimizers()
    optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
    return _Stepper(module, optimizer, taken, config.train.precision, config.optim.grad_clip)
