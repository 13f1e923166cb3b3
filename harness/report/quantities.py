"""What a report shows of one run: each quantity, its unit, and how it comes from the run's record.

Most are MLflow metrics as logged, under the names harness.runs.records gives them. Two are
computed: `val_ppl` (exp of val/loss) and `eval_mean_acc` (the mean of the eval/TASK/acc scores).

The analytic costs below are logged by training at step 0 as cost/* metrics (COSTS; models/cost.py
`recorded_costs`) and read as logged. Runs recorded before those metrics existed lack them; for
those, `legacy_costs` applies the same formulas to the recorded params and size/perf metrics (the
report never imports the model code):

- `flops_paper`: the paper's approximation per token, n_layer x (block + 2 s d) + d V, where
  block = 6 K d for a MemoryFormer (its six d-wide memory layers at K d each) and (4 + 2 r) d^2
  for a dense block (12 d^2 at Pythia's MLP ratio r = 4); 2 s d is QK^T and AV per token, d V the
  LM head. Exact counting gives K (4 d + (tau + e) K) for the memory layers, since the FFN's
  middle width is (tau + e) K, not d, and its second layer has K tables, not 2K.
- `q_flops`, `q_table_bytes`: the Q layer alone, as the paper's Table 3 counts it: K d weighted
  sums per token (Eq. 11), K 2^b d table values.
- `ffn_table_bytes`: the Memory Block's tables per block (Table 5): the recorded tables of a block
  less its three d-wide Q, K, V layers.
- `block_flops`, `block_flops_no_attn`: one block's share of the exact count per token (the LM
  head d V removed), with and without attention's 2 s d (Table 1 at our scale).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.report.chance import chance_columns
from harness.report.reader import METRICS, PARAMS, metric_column, metric_names
from harness.runs import records

BOTH = ("dense", "memoryformer")
MEMORY = ("memoryformer",)
MB = 1e6  # the paper's MB (16.8 MB = 64 x 256 x 512 fp16 values)


@dataclass(frozen=True)
class Quantity:
    key: str  # column of the per-run and per-cell frames
    header: str  # table header, with its unit
    si: bool = False  # show with a K/M/G prefix instead of plain decimals
    scale: float = 1.0  # shown = value / scale (bytes -> MB)
    kinds: tuple[str, ...] = BOTH  # model kinds it applies to; others show "n/a"
    metric: str = ""  # the MLflow metric it comes from
    derived: bool = False  # not `metric` as is: computed, or a cost/* metric (COSTS)
    whole: bool = False  # a count: shown without decimals


STANDARD = (
    Quantity("val_ppl", "val ppl", metric=records.VAL_LOSS, derived=True),
    Quantity("flops_exact", "FLOPs/token (exact)", si=True, metric=records.FLOPS_PER_TOKEN),
    Quantity("flops_paper", "FLOPs/token (paper approx.)", si=True, derived=True),
    Quantity("params", "params", si=True, metric=records.PARAMS),
    Quantity("table_bytes", "table MB", scale=MB, metric=records.TABLE_BYTES),
    Quantity("other_bytes", "other params MB", scale=MB, metric=records.OTHER_BYTES),
    Quantity("tokens_per_s", "train tokens/s", si=True, metric=records.TOKENS_PER_S),
    Quantity("peak_bytes", "peak mem MB", scale=MB, metric=records.PEAK_BYTES),
)
EXTRA = (  # shown beside a paper column that needs them
    Quantity("val_loss", "val loss (nats/token)", metric=records.VAL_LOSS),
    Quantity("q_flops", "Q-layer FLOPs/token", si=True, kinds=MEMORY, derived=True),
    Quantity("q_table_bytes", "Q-layer table MB", scale=MB, kinds=MEMORY, derived=True),
    Quantity("ffn_table_bytes", "Memory Block table MB (per block)", scale=MB, kinds=MEMORY,
             derived=True),
    Quantity("block_flops", "block FLOPs/token", si=True, derived=True),
    Quantity("block_flops_no_attn", "block FLOPs/token w/o attention", si=True, derived=True),
    Quantity("eval_mean_acc", "mean eval acc", metric=records.eval_metric("*", "acc"),
             derived=True),
    Quantity("bucket_entropy", "bucket entropy (1 = uniform)", kinds=MEMORY,
             metric=records.bucket_metric("entropy")),
    Quantity("bucket_unused", "unused bucket share", kinds=MEMORY,
             metric=records.bucket_metric("unused_share")),
    Quantity("train_flops_per_s", "train FLOP/s", si=True, metric=records.TRAIN_FLOPS_PER_S),
    # beside a timed tokens_per_s only: what training saw, other work on the machine included
    Quantity("train_tokens_per_s", "tokens/s seen in training", si=True, derived=True),
    Quantity("trial_seconds", "trial s", metric=records.TRIAL_SECONDS),
    # the resource a budget holds fixed (RESOURCE_KEYS), as each run spent it
    Quantity("steps", "steps", metric=records.BUDGET_STEPS, whole=True),
    Quantity("train_flops", "training FLOPs", si=True, metric=records.BUDGET_FLOPS_USED),
    Quantity("train_seconds", "optimiser s", metric=records.BUDGET_SECONDS_USED),
)
# the quantity that shows each budget kind (records.BUDGET_KINDS): tokens are steps x batch
RESOURCE_KEYS = {"steps": "steps", "tokens": "steps", "flops": "train_flops",
                 "seconds": "train_seconds"}
# the cost/* metric each analytic quantity is logged as (Quantity.metric stays empty for them, so
# a footnote about an absent one names no metric: older runs derive it from params)
COSTS = {
    "flops_paper": records.COST_PAPER_FLOPS,
    "block_flops": records.COST_BLOCK_FLOPS,
    "block_flops_no_attn": records.COST_BLOCK_FLOPS_NO_ATTN,
    "q_flops": records.COST_Q_FLOPS,
    "q_table_bytes": records.COST_Q_TABLE_BYTES,
    "ffn_table_bytes": records.COST_FFN_TABLE_BYTES,
}


def _eval_quantity(task: str, metric: str) -> Quantity:
    return Quantity(f"eval.{task}.{metric}", f"{task} {metric}",
                    metric=records.eval_metric(task, metric))


def eval_quantities(columns: Iterable[str]) -> tuple[Quantity, ...]:
    """One quantity per evaluation metric in a runs table (metrics.eval/<task>/acc, ...)."""
    return tuple(_eval_quantity(*score)
                 for score in map(records.eval_score, metric_names(sorted(columns))) if score)


def catalogue(keys: Iterable[str]) -> dict[str, Quantity]:
    """Every quantity by key: the fixed ones, and the evaluation metrics among `keys` (columns
    of a per-run frame, where they read `eval.<task>.<metric>`)."""
    evals = [_eval_quantity(*k.removeprefix("eval.").rsplit(".", 1))
             for k in keys if k.startswith("eval.")]
    return {q.key: q for q in (*STANDARD, *EXTRA, *evals)}


def derive(runs: pd.DataFrame, kinds: pd.Series) -> pd.DataFrame:
    """Every quantity of every run (rows as in `runs`), NaN where absent or not applicable."""
    metric = _reader(runs, METRICS)
    out = pd.DataFrame(index=runs.index)
    for q in (*STANDARD, *EXTRA, *eval_quantities(runs.columns)):
        if not q.derived:
            out[q.key] = metric(q.metric)
    out["val_ppl"] = np.exp(out["val_loss"])
    # a timing pass (`harness time`) replaces what training saw, which is kept beside it
    timed = metric(records.TIMED_TOKENS_PER_S)
    out["train_tokens_per_s"] = out["tokens_per_s"].where(timed.notna())
    out["tokens_per_s"] = timed.fillna(out["tokens_per_s"])
    out["timed"] = timed.notna()
    out["timed_low"] = metric(records.TIMED_LOW)  # the pass's slowest and fastest rounds
    out["timed_high"] = metric(records.TIMED_HIGH)
    legacy = legacy_costs(runs, kinds)
    for key, name in COSTS.items():  # as logged; from params where a run predates cost/*
        out[key] = metric(name).fillna(legacy[key])
    accuracies = [metric_column(name) for name in metric_names(runs.columns)
                  if (score := records.eval_score(name)) and score[1] == "acc"]
    out["eval_mean_acc"] = runs[accuracies].mean(axis=1) if accuracies else np.nan
    out = pd.concat([out, chance_columns(runs, metric)], axis=1)
    for q in (*STANDARD, *EXTRA):  # "n/a", not a missing value, on dense
        if set(q.kinds) != set(BOTH):
            out[q.key] = out[q.key].where(kinds.isin(q.kinds))
    return out


def legacy_costs(runs: pd.DataFrame, kinds: pd.Series) -> pd.DataFrame:
    """The fallback for older records: the COSTS quantities computed from a run's params and its
    size/perf metrics, for runs logged before training recorded them as cost/* metrics.

    The formulas are models/cost.py's `recorded_costs` (see the module docstring); keep them in
    step, since a report mixes runs of both ages.
    """
    metric, param = _reader(runs, METRICS), _reader(runs, PARAMS)
    d, layers, s, vocab = (param("model.d_model"), param("model.n_layer"),
                           param("data.resolved_seq_len"), param("model.vocab_size"))
    k, bits = param("model.resolved_num_tables"), param("model.resolved_bucket_bits")
    memory = kinds == "memoryformer"
    block = np.where(memory, 6 * k * d, (4 + 2 * param("model.mlp_ratio")) * d * d)
    table_bytes = metric(records.TABLE_BYTES)
    out = pd.DataFrame(index=runs.index)
    out["flops_paper"] = layers * (block + 2 * s * d) + d * vocab
    out["block_flops"] = (metric(records.FLOPS_PER_TOKEN) - d * vocab) / layers
    out["block_flops_no_attn"] = out["block_flops"] - 2 * s * d
    bytes_per_value = table_bytes / metric(records.TABLE_PARAMS)
    out["q_flops"] = (k * d).where(memory)
    out["q_table_bytes"] = (k * 2.0**bits * d * bytes_per_value).where(memory)
    out["ffn_table_bytes"] = (table_bytes / layers - 3 * out["q_table_bytes"]).where(memory)
    return out


def _reader(runs: pd.DataFrame, prefix: str):
    """column name -> numeric Series (NaN when the column or value is absent).

    MLflow returns params as strings ("None" for an unset field): numbers are parsed, the rest
    becomes NaN.
    """

    def read(name: str) -> pd.Series:
        column = runs.get(prefix + name)
        if column is None:
            return pd.Series(np.nan, index=runs.index, dtype=float)
        return pd.to_numeric(column, errors="coerce").astype(float)

    return read
