"""Cells whose seeds disagree on throughput by more than SPREAD_LIMIT (max over min): a trial
slowed by other work on a shared machine, not a property of the cell. Their mean ± se is shown,
flagged, in the table, the text and the throughput figure, never averaged without a word.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from harness.report.cells import FINISHED

SPREAD_LIMIT = 1.5


@dataclass(frozen=True)
class Spread:
    cell: str
    low: float  # tokens/s of the slowest seed
    high: float  # of the fastest
    seeds: int

    @property
    def ratio(self) -> float:
        return self.high / self.low

    def sentence(self) -> str:
        return (f"{self.cell}: its {self.seeds} seeds' tokens/s differ {self.ratio:.1f}x "
                f"({_k(self.low)} to {_k(self.high)}; flagged above {SPREAD_LIMIT:g}x), most "
                "likely a trial slowed by other work on the machine, so its mean is not a speed "
                "measurement")


def throughput_spreads(runs: pd.DataFrame, key: str = "tokens_per_s") -> dict[str, Spread]:
    """cell -> its spread, for the cells above the limit (runs: `cells.per_run`)."""
    done = runs[(runs["status"] == FINISHED) & runs[key].notna() & (runs[key] > 0)]
    out = {}
    for cell, group in done.groupby("cell", sort=False):
        values = group[key].astype(float)
        if len(values) >= 2 and values.max() > SPREAD_LIMIT * values.min():
            out[cell] = Spread(str(cell), float(values.min()), float(values.max()), len(values))
    return out


def _k(value: float) -> str:
    return f"{value / 1e3:.1f}K" if value >= 1e3 else f"{value:.0f}"
