"""The records contract: every tag and metric name the harness writes to MLflow, and how readers
take them back. Training, evaluation and the study runner write with these names; the report and
`harness status` read with them. Plain strings and arithmetic only: the report imports this
module on a machine without the runs' code.

Metric families (`/` separates a family from its name):

    val/loss, val/ppl, train/loss, train/ppl, train/lr     the loss curves, by optimiser step
    perf/*     throughput and time (tokens_per_s, flops_per_token, train_flops_per_s, ...)
    size/*     parameters and bytes, logged once at step 0 (models/sizes.py)
    cost/*     analytic FLOPs and bytes from models/cost.py, logged once at step 0
    budget/*   training FLOPs, optimiser seconds and steps used so far
    mem/*      peak memory of the run
    data/*     token counts of the split
    buckets/LAYER/STAT, buckets/STAT    bucket usage of memory layers (train/buckets.py)
    eval/TASK/METRIC, eval/TASK/n       evaluation scores, at the checkpoint's step
    cells/STATE                          on a study's parent run: how many cells ended so
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Tags of every run. The provenance tags (git.*, host.*, version.*, torch.*) are in
# tracking/provenance.py.
ROLE = "harness.role"  # ROLE_STUDY on a study's parent run, ROLE_TRIAL on its trials
ROLE_STUDY = "study"
ROLE_TRIAL = "trial"
STUDY = "harness.study"
STUDY_UID = "harness.study_uid"  # which making of the study (it may be made again after a crash)
STORAGE = "harness.storage"  # the Optuna storage of the study, redacted
TRIAL = "harness.trial"  # the Optuna trial number
CELL = "harness.cell"  # the cell's label (cell_label)
CELL_PARAMS = "harness.cell_params"  # the cell's params as sorted JSON
GROUP = "harness.group"  # the cell less its seed (the report's cell): the UI groups seeds by it
CHECKPOINT = "harness.checkpoint"  # where the run's latest checkpoint is (path or URL)
RESUMED_FROM = "harness.resumed_from_step"
RESTART_REASON = "harness.restart_reason"  # why a retry restarted its cell from step 0
BUDGET = "harness.budget"  # the resource a run's length held fixed: BUDGET_KINDS
FAILURE_REASON = "failure_reason"  # on a FAILED run
STOP_REASON = "stop_reason"  # on a KILLED run
SEED = "seed"
PRESET = "preset"
KIND = "model.kind"
FLOPS_BUDGET = "train.flops_budget"  # a run's training-FLOPs budget (a param; a grid may vary it)
SECONDS_BUDGET = "train.seconds_budget"
CORPUS_DIGEST = "data.corpus_digest"
TOKENIZER_DIGEST = "data.tokenizer_digest"
PARENT = "mlflow.parentRunId"  # MLflow's own: nests a trial under its study in the UI
NOTE = "mlflow.note.content"  # MLflow's own: the run's description

# Artifacts.
BUCKETS_ARTIFACT = "buckets.npz"  # layer name -> (K, 2**b) int64 hit counts (train/callbacks.py)

# Metrics.
VAL_LOSS = "val/loss"
VAL_PPL = "val/ppl"
TRAIN_LOSS = "train/loss"
TRAIN_PPL = "train/ppl"
TRAIN_LR = "train/lr"
TOKENS_PER_S = "perf/tokens_per_s"  # optimiser steps only, warm-up steps excluded
FLOPS_PER_TOKEN = "perf/flops_per_token"  # forward, exact count (models/cost.py)
TRAIN_FLOPS_PER_S = "perf/train_flops_per_s"  # at models/cost.py's training convention
# the timing pass after a study (train/timing.py): each cell's median round and its spread
TIMED_TOKENS_PER_S = "perf/timed_tokens_per_s"
TIMED_LOW = "perf/timed_tokens_per_s_low"  # the slowest round
TIMED_HIGH = "perf/timed_tokens_per_s_high"  # the fastest round
TIMING = "harness.timing"  # tag: how the timing pass ran (rounds, steps, cells, threads, CPU)
STEP_SECONDS = "perf/step_seconds"  # optimiser steps, warm-up included
WALL_SECONDS = "perf/wall_s"  # the whole fit
TRIAL_SECONDS = "perf/trial_seconds"
TRIAL_OVERHEAD = "perf/trial_overhead_s"  # a trial's time outside optimiser steps
VALIDATION_SECONDS = "perf/validation_s"  # of that: validation passes (bucket counts included)
CHECKPOINT_SECONDS = "perf/checkpoint_s"  # of that: checkpoint writes
PEAK_BYTES = "mem/peak_bytes"
PARAMS = "size/params"
TABLE_PARAMS = "size/table_params"
OTHER_PARAMS = "size/other_params"
TABLE_BYTES = "size/table_bytes"
OTHER_BYTES = "size/other_bytes"
OPTIMIZER_STATE_BYTES = "size/optimizer_state_bytes"
NON_EMBEDDING_PARAMS = "size/non_embedding_params"  # the scaling-law count (Kaplan et al.)
TRAIN_TOKENS = "data/train_tokens"
VAL_TOKENS = "data/val_tokens"

# budget/*: cumulative at every validation step (so loss can be drawn against each resource)
# and at the end; `harness.budget` says which one was held fixed.
BUDGET_KINDS = ("steps", "tokens", "flops", "seconds")
BUDGET_FLOPS_USED = "budget/flops_used"  # training FLOPs at models/cost.py's convention
BUDGET_SECONDS_USED = "budget/seconds_used"  # optimiser-step wall time (no validation, no I/O)
BUDGET_STEPS = "budget/steps_reached"

# cost/*: what the report shows beside the exact count, from models/cost.py (see
# models/cost.py:recorded_costs for each formula).
COST_PAPER_FLOPS = "cost/paper_flops_per_token"  # the paper's approximation, per token
COST_BLOCK_FLOPS = "cost/block_flops_per_token"  # one block's share of the exact count
COST_BLOCK_FLOPS_NO_ATTN = "cost/block_flops_per_token_no_attention"
COST_Q_FLOPS = "cost/q_flops_per_token"  # the Q layer alone (Table 3), MemoryFormer only
COST_Q_TABLE_BYTES = "cost/q_table_bytes"  # MemoryFormer only
COST_FFN_TABLE_BYTES = "cost/ffn_table_bytes_per_block"  # the Memory Block's (Table 5)

BUCKET_STATS = ("unused_share", "entropy")
_BUCKET_LAYER = re.compile(r"^buckets/(?P<layer>.+)/(?P<stat>unused_share|entropy)$")
_EVAL = re.compile(r"^eval/(?P<task>.+)/(?P<metric>acc|acc_norm|ppl)$")


def bucket_metric(stat: str, layer: str | None = None) -> str:
    """buckets/LAYER/STAT for one memory layer, buckets/STAT for the mean over layers."""
    return f"buckets/{layer}/{stat}" if layer else f"buckets/{stat}"


def bucket_layer(metric: str) -> tuple[str, str] | None:
    """(layer, stat) of a per-layer bucket metric, else None."""
    match = _BUCKET_LAYER.match(metric)
    return (match["layer"], match["stat"]) if match else None


def eval_metric(task: str, metric: str) -> str:
    return f"eval/{task}/{metric}"


def eval_score(metric: str) -> tuple[str, str] | None:
    """(task, metric) of an evaluation score (acc, acc_norm or ppl), else None."""
    match = _EVAL.match(metric)
    return (match["task"], match["metric"]) if match else None


def cell_label(params: Mapping[str, Any], names: tuple[str, ...] | None = None,
               show=str) -> str:
    """`chunk_size=4,seed=0`: section prefixes dropped, a readable run name.

    `names`: which params, in order (default: all); `show` formats each value.
    """
    keys = tuple(params) if names is None else names
    return ",".join(f"{k.split('.')[-1]}={show(params.get(k))}" for k in keys)


@dataclass(frozen=True)
class Objective:
    """What a study can optimise, and where a finished run records it."""

    name: str
    metric: str
    direction: str  # the default: "minimize" or "maximize"
    description: str

    def read(self, metrics: Mapping[str, float]) -> float:
        return float(metrics[self.metric])


OBJECTIVES = {o.name: o for o in (
    Objective("val_loss", VAL_LOSS, "minimize", "final validation loss (val/loss)"),
    Objective("flops_per_token", FLOPS_PER_TOKEN, "minimize",
              "forward FLOPs per token, exact count"),
    Objective("table_bytes", TABLE_BYTES, "minimize", "hash-table bytes of the whole model"),
    Objective("tokens_per_s", TOKENS_PER_S, "maximize", "training throughput (perf/tokens_per_s)"),
)}
