"""LightningModule for causal language modelling with either model kind."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from harness.models import LanguageModel, build_model
from harness.runs import records
from harness.runs.config import RunConfig


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run stops and is marked FAILED."""


class CausalLM(pl.LightningModule):
    def __init__(self, config: RunConfig):
        super().__init__()
        self.config = config
        self.model: LanguageModel = build_model(config.model)
        self.run_id: str | None = None  # the MLflow run, kept in every checkpoint for resume
        self._val_loss_sum = torch.zeros(())
        self._val_tokens = 0

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        """batch (B, T + 1) token ids -> mean next-token cross-entropy over B * T tokens."""
        inputs, targets = batch[:, :-1], batch[:, 1:]
        logits = self.model(inputs)  # (B, T, vocab)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"training loss is {loss.item()} at step {self.global_step}")
        self.log(records.TRAIN_LOSS, loss, prog_bar=True, logger=False)
        step = self.global_step + 1  # this batch completes optimiser step `step`
        if step % self.config.train.log_every == 0 or step == self.config.train.max_steps:
            lr = self.optimizers().param_groups[0]["lr"]
            self._record({records.TRAIN_LOSS: loss.item(),
                          records.TRAIN_PPL: math.exp(min(loss.item(), 50)), records.TRAIN_LR: lr},
                         step)
        return loss

    def _record(self, metrics: dict[str, float], step: int) -> None:
        """Log at `step` = optimiser steps completed, the one step axis of every metric."""
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=step)

    def on_validation_epoch_start(self) -> None:
        self._val_loss_sum = torch.zeros((), dtype=torch.float64)
        self._val_tokens = 0

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        tokens = batch[:, 1:].numel()
        self._val_loss_sum += self._loss(batch).double().cpu() * tokens
        self._val_tokens += tokens

    def on_validation_epoch_end(self) -> None:
        if not self._val_tokens:
            return
        loss = (self._val_loss_sum / self._val_tokens).item()  # token-weighted over the split
        self.log(records.VAL_LOSS, loss, prog_bar=True, logger=False)
        self._record({records.VAL_LOSS: loss, records.VAL_PPL: math.exp(min(loss, 50.0))},
                     self.global_step)

    def configure_optimizers(self):
        optim, steps = self.config.optim, self.config.train.max_steps
        decay, no_decay = [], []
        for module in self.model.modules():
            for name, param in module.named_parameters(recurse=False):
                keep = isinstance(module, nn.LayerNorm) or name == "bias"
                (no_decay if keep else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": optim.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=self.config.peak_lr, betas=(optim.beta1, optim.beta2), eps=optim.eps,
            # One fused pass per step instead of a dozen foreach passes over every value:
            # MemoryFormer's tables make the optimizer step a third of a nano model's step time.
            fused=optim.fused and all(p.device.type in ("cpu", "cuda")
                                      for p in self.model.parameters()),
            foreach=None if optim.fused else True,
        )
        if self.config.train.seconds_budget is not None:
            return optimizer  # the schedule follows the clock: train/budget.py sets the LR
        warmup = max(1, round(optim.warmup_fraction * steps))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, warmup, steps, optim.min_lr_ratio))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None) -> None:
        # Under bf16-mixed, Lightning's precision plugin refuses to clip for a fused optimizer:
        # with fp16 the gradients would still carry the loss scale. bf16 has no scaler, so the
        # gradients are the true ones; clip them as Lightning would (by norm, over the
        # optimizer's parameters in its order). fp32 runs keep Lightning's own path.
        if self.config.train.precision != "bf16" or not gradient_clip_val:
            super().configure_gradient_clipping(optimizer, gradient_clip_val,
                                                gradient_clip_algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["harness_config"] = self.config.to_dict()
        checkpoint["mlflow_run_id"] = self.run_id


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to min_ratio at `total` (Pythia's schedule)."""
    if step < warmup:
        return (step + 1) / warmup
    return _cosine(min(1.0, (step - warmup) / max(1, total - warmup)), min_ratio)


def lr_factor_at(progress: float, warmup_fraction: float, min_ratio: float) -> float:
    """The same schedule over a share of a budget in [0, 1] (a seconds budget, train/budget.py):
    linear warm-up to 1 over the first `warmup_fraction`, then cosine decay to `min_ratio`."""
    if progress < warmup_fraction:
        return progress / warmup_fraction
    return _cosine(min(1.0, (progress - warmup_fraction) / max(1e-12, 1 - warmup_fraction)),
                   min_ratio)


def _cosine(progress: float, min_ratio: float) -> float:
    """Cosine decay from 1 at progress 0 to min_ratio at 1."""
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
