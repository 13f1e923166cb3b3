"""What a report shows of one run: each quantity, its unit, and how it comes from the run's record.

Most are MLflow metrics as logged. The derived ones use only recorded params (the report never
imports the model code), with the formulas written out here:

- `flops_paper`: the paper's approximation per token (SPEC section 5), n_layer x (block + 2 s d)
  + d V, where block = 6 K d for a MemoryFormer (its six d-wide memory layers at K d each) and
  (4 + 2 r) d^2 for a dense block (12 d^2 at Pythia's MLP ratio r = 4); 2 s d is QK^T and AV per
  token, d V the LM head. Exact counting gives K (4 d + (tau + e) K) for the memory layers, since
  the FFN's middle width is (tau + e) K, not d, and its second layer has K tables, not 2K.
- `q_flops`, `q_table_bytes`: the Q layer alone, as the paper's Table 3 counts it: K d weighted
  sums per token (Eq. 11), K 2^b d table values.
- `ffn_table_bytes`: the Memory Block's tables per block (Table 5): the recorded tables of a block
  less its three d-wide Q, K, V layers.
- `block_flops`, `block_flops_no_attn`: one block's share of the exact count per token (the LM
  head d V removed), with and without attention's 2 s d (Table 1 at our scale).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

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
    derived: bool = False  # computed from `metric` and params, not read as is


STANDARD = (
    Quantity("val_ppl", "val ppl", metric="val/loss", derived=True),
    Quantity("flops_exact", "FLOPs/token (exact)", si=True, metric="perf/flops_per_token"),
    Quantity("flops_paper", "FLOPs/token (paper approx.)", si=True, derived=True),
    Quantity("params", "params", si=True, metric="size/params"),
    Quantity("table_bytes", "table MB", scale=MB, metric="size/table_bytes"),
    Quantity("other_bytes", "other params MB", scale=MB, metric="size/other_bytes"),
    Quantity("tokens_per_s", "train tokens/s", si=True, metric="perf/tokens_per_s"),
    Quantity("peak_bytes", "peak mem MB", scale=MB, metric="mem/peak_bytes"),
)
EXTRA = (  # shown beside a paper column that needs them
    Quantity("val_loss", "val loss (nats/token)", metric="val/loss"),
    Quantity("q_flops", "Q-layer FLOPs/token", si=True, kinds=MEMORY, derived=True),
    Quantity("q_table_bytes", "Q-layer table MB", scale=MB, kinds=MEMORY, derived=True),
    Quantity("ffn_table_bytes", "Memory Block table MB (per block)", scale=MB, kinds=MEMORY,
             derived=True),
    Quantity("block_flops", "block FLOPs/token", si=True, derived=True),
    Quantity("block_flops_no_attn", "block FLOPs/token w/o attention", si=True, derived=True),
    Quantity("eval_mean_acc", "mean eval acc", metric="eval/*/acc", derived=True),
    Quantity("bucket_entropy", "bucket entropy (1 = uniform)", kinds=MEMORY,
              metric="buckets/entropy"),
    Quantity("bucket_unused", "unused bucket share", kinds=MEMORY, metric="buckets/unused_share"),
    Quantity("train_flops_per_s", "train FLOP/s", si=True, metric="perf/train_flops_per_s"),
    Quantity("trial_seconds", "trial s", metric="perf/trial_seconds"),
)
_EVAL = re.compile(r"^metrics\.eval/(?P<task>.+)/(?P<metric>acc|acc_norm|ppl)$")


def _eval_quantity(task: str, metric: str) -> Quantity:
    return Quantity(f"eval.{task}.{metric}", f"{task} {metric}", metric=f"eval/{task}/{metric}")


def eval_quantities(columns: Iterable[str]) -> tuple[Quantity, ...]:
    """One quantity per evaluation metric in a runs table (metrics.eval/<task>/acc, ...)."""
    return tuple(_eval_quantity(m["task"], m["metric"])
                 for m in map(_EVAL.match, sorted(columns)) if m)


def catalogue(keys: Iterable[str]) -> dict[str, Quantity]:
    """Every quantity by key: the fixed ones, and the evaluation metrics among `keys` (columns
    of a per-run frame, where they read `eval.<task>.<metric>`)."""
    evals = [_eval_quantity(*k.removeprefix("eval.").rsplit(".", 1))
             for k in keys if k.startswith("eval.")]
    return {q.key: q for q in (*STANDARD, *EXTRA, *evals)}


def derive(runs: pd.DataFrame, kinds: pd.Series) -> pd.DataFrame:
    """Every quantity of every run (rows as in `runs`), NaN where absent or not applicable."""
    metric = _reader(runs, "metrics.")
    param = _reader(runs, "params.")
    out = pd.DataFrame(index=runs.index)
    for q in (*STANDARD, *EXTRA, *eval_quantities(runs.columns)):
        if not q.derived:
            out[q.key] = metric(q.metric)
    out["val_ppl"] = np.exp(out["val_loss"])
    d, layers, s, vocab = (param("model.d_model"), param("model.n_layer"),
                           param("data.resolved_seq_len"), param("model.vocab_size"))
    k, bits = param("model.resolved_num_tables"), param("model.resolved_bucket_bits")
    memory = kinds == "memoryformer"
    block = np.where(memory, 6 * k * d, (4 + 2 * param("model.mlp_ratio")) * d * d)
    out["flops_paper"] = layers * (block + 2 * s * d) + d * vocab
    out["block_flops"] = (out["flops_exact"] - d * vocab) / layers
    out["block_flops_no_attn"] = out["block_flops"] - 2 * s * d
    bytes_per_value = out["table_bytes"] / metric("size/table_params")
    out["q_flops"] = (k * d).where(memory)
    out["q_table_bytes"] = (k * 2.0**bits * d * bytes_per_value).where(memory)
    out["ffn_table_bytes"] = (out["table_bytes"] / layers - 3 * out["q_table_bytes"]).where(memory)
    accuracies = [c for c in runs.columns if (m := _EVAL.match(c)) and m["metric"] == "acc"]
    out["eval_mean_acc"] = runs[accuracies].mean(axis=1) if accuracies else np.nan
    for q in (*STANDARD, *EXTRA):  # "n/a", not a missing value, on dense
        if set(q.kinds) != set(BOTH):
            out[q.key] = out[q.key].where(kinds.isin(q.kinds))
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
