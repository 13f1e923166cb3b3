"""The report's section on the timing pass (`harness time`): per cell, the median round's training
tokens/s that the tables show, with the slowest and fastest rounds around it, and how the pass ran
(rounds, steps, cells, threads, CPU: the harness.timing tag)."""

from __future__ import annotations

import math

import pandas as pd

from harness.report.reader import tag_column
from harness.runs import records


def timing_lines(raw: pd.DataFrame, runs: pd.DataFrame) -> list[str]:
    """raw: the study's runs as read; runs: `cells.per_run` (columns cell, timed, tokens_per_s,
    timed_low, timed_high). Empty where no cell was timed."""
    timed = runs[runs["timed"].fillna(False).astype(bool)]
    if timed.empty:
        return []
    how = sorted(set(raw.get(tag_column(records.TIMING), pd.Series(dtype=object)).dropna()))
    lines = ["Training tokens/s in the tables come from the timing pass, one value per cell: "
             "the median of its rounds, with the slowest and fastest round"
             + (f" ({'; '.join(how)})" if how else "") + ":"]
    for cell, part in timed.groupby("cell", sort=False):
        first = part.iloc[0]
        low, high = first["timed_low"], first["timed_high"]
        spread = (f"; fastest / slowest {high / low:.2f}x"
                  if low > 0 and math.isfinite(high / low) else "")
        lines.append(f"- {cell}: {_k(first['tokens_per_s'])} (slowest {_k(low)}, fastest "
                     f"{_k(high)}{spread})")
    return lines


def _k(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value / 1e3:.2f}K"
