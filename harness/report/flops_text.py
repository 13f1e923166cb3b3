"""The report's FLOPs paragraph: what the two FLOPs columns count, and how far the paper's
6 K d per block sits from the exact count, worked out from each MemoryFormer cell's own tau, e,
K and d (a study of chunk size or expansion bits changes it), never a fixed number.

Exact per token, per block: Q, K, V cost K d each; the Memory Block's first layer K (tau + e) K
(its output is (tau + e) K wide) and its second K d, so K (4 d + (tau + e) K) against the
paper's 6 K d (six d-wide layers). README.md "Counting compute" and harness/models/cost.py give
the convention.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.report.cells import FINISHED
from harness.report.reader import param_column

KNOBS = (("tau", "model.chunk_size"), ("e", "model.expansion_bits"),
         ("K", "model.resolved_num_tables"), ("d", "model.d_model"))


def flops_paragraph(raw: pd.DataFrame, runs: pd.DataFrame, cells: pd.DataFrame) -> str:
    """raw: the runs table with params; runs: `cells.per_run`; cells: `cells.aggregate` with
    flops_exact and flops_paper."""
    kinds = set(cells.loc[cells["flops_exact.mean"].notna(), "kind"].dropna())
    parts = ["FLOPs/token (exact) is the harness's forward count of matrix multiply-adds per "
             "token (one multiply-add = 1 FLOP, as fvcore and the paper count): linear layers, "
             "the memory layers' weighted row sums (Eq. 11), attention's QK^T and AV over the "
             "full context, and the LM head."]
    if cells.get("flops_paper.mean", pd.Series(dtype=float)).notna().any():
        parts.append("FLOPs/token (paper approx.) applies the paper's formula to each run's "
                     "recorded params: n_layer x (block + 2 s d) + d V, with block = 6 K d for a "
                     "MemoryFormer and (4 + 2 r) d^2 for a dense model.")
    if "dense" in kinds:
        parts.append("For a dense block that formula is the exact count of its matrix products "
                     "(12 d^2 at MLP ratio r = 4).")
    if "memoryformer" in kinds:
        parts.append(_memory_sentence(raw, runs))
        parts.append(_example(cells))
    return " ".join(p for p in parts if p)


def _memory_sentence(raw: pd.DataFrame, runs: pd.DataFrame) -> str:
    settings = memory_settings(raw, runs)
    head = ("The approximation treats all six memory layers of a block as d wide; exactly, Q, K "
            "and V cost 3 K d, the Memory Block's first layer K (tau + e) K and its second K d, "
            "so a block's memory layers cost K (4 d + (tau + e) K)")
    if not settings:
        return head + ("; these runs do not record tau, e, K and d, so it is not worked out "
                       "here.")
    worked = []
    for tau, e, k, d in settings:
        factor = 4 + (tau + e) * k / d
        gap = 1 - factor / 6
        where = "below" if gap >= 0 else "above"
        worked.append(f"at tau = {tau:g}, e = {e:g}, K = {k:g}, d = {d:g} that is {factor:.4g} "
                      f"K d, {abs(gap):.1%} {where} 6 K d")
    return head + ": " + "; ".join(worked) + "."


def memory_settings(raw: pd.DataFrame, runs: pd.DataFrame) -> list[tuple[float, ...]]:
    """The distinct (tau, e, K, d) of the finished MemoryFormer runs; [] when any is
    unrecorded."""
    done = runs.loc[(runs["status"] == FINISHED) & (runs["kind"] == "memoryformer"), "run_id"]
    rows = raw[raw["run_id"].isin(done)]
    columns = [param_column(name) for _, name in KNOBS]
    if rows.empty or not set(columns) <= set(rows.columns):
        return []
    values = rows[columns].apply(pd.to_numeric, errors="coerce")
    if values.isna().any().any():
        return []
    return sorted({tuple(float(v) for v in row) for row in values.itertuples(index=False)})


def _example(cells: pd.DataFrame) -> str:
    memory = cells[(cells["kind"] == "memoryformer") & cells["flops_exact.mean"].notna()
                   & cells["flops_paper.mean"].notna()]
    if memory.empty:
        return ""
    row = memory.iloc[0]
    exact, approx = row["flops_exact.mean"], row["flops_paper.mean"]
    if not (math.isfinite(exact) and approx):
        return ""
    return (f"Whole model, for {row['cell']}: exact {exact:,.0f} against approximately "
            f"{approx:,.0f} FLOPs per token ({exact / approx:.3f}x); attention and the LM head, "
            "counted alike in both, dilute the gap at short contexts.")
