"""Budgets that hold a resource fixed: what a run of a given config spends per optimiser step, and
the step count a FLOPs budget implies.

Convention (models/cost.py): a training step costs TRAINING_FLOPS_FACTOR (3) times the exact
forward count, per token, times the tokens of one optimiser step (batch x seq_len x devices).
A FLOPs budget is therefore a step count known before step 0, rounded to the nearest step: the
FLOPs used are within half a step of the budget. A seconds budget is spent as the run goes
(train/budget.py); its max_steps is only a cap.
"""

from __future__ import annotations

import dataclasses
import math

from harness.models.cost import training_flops_per_token
from harness.runs.config import RunConfig

SECONDS_BUDGET_CAP = 10**9  # max_steps of a seconds-budget run: the clock stops it, not a count


def tokens_per_step(config: RunConfig) -> int:
    return config.data.batch_size * config.seq_len * config.train.devices


def flops_per_step(config: RunConfig) -> int:
    """Training FLOPs of one optimiser step of this config, at models/cost.py's convention."""
    return training_flops_per_token(config.model, config.seq_len) * tokens_per_step(config)


def resolve_budget(config: RunConfig) -> RunConfig:
    """`config` with the step count and validation interval its budget implies.

    Call it once the model is final (train() calls it after the tokenizer sets the vocabulary,
    which moves the LM head's share of the FLOPs).
    """
    train = config.train
    steps = train.max_steps
    if train.flops_budget is not None:
        steps = max(1, round(train.flops_budget / flops_per_step(config)))
    elif train.seconds_budget is not None:
        steps = max(steps, SECONDS_BUDGET_CAP)
    val_every = max(1, math.ceil(steps / train.validations)) if train.validations else \
        train.val_every
    if (steps, val_every) == (train.max_steps, train.val_every):
        return config
    return dataclasses.replace(config, train=dataclasses.replace(
        train, max_steps=steps, val_every=min(val_every, steps)))
