"""How sure a comparison is: paired differences over seeds, and the Pareto front of a trade-off."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.report.cells import FINISHED


@dataclass(frozen=True)
class Paired:
    """B minus A over the seeds both cells finished: seed s trains A and B on the same data order
    and initial draw, so differencing per seed removes the seed's share of the noise."""

    a: str
    b: str
    seeds: tuple[int, ...]
    mean: float  # mean of (b - a)
    se: float  # standard error of that mean; NaN with one seed
    t: float  # mean / se, with n - 1 degrees of freedom; NaN with one seed
    p: float | None  # two-sided, from scipy; None when scipy is absent or n < 2

    @property
    def n(self) -> int:
        return len(self.seeds)


def paired(runs: pd.DataFrame, a: str, b: str, key: str = "val_loss") -> Paired | None:
    """Paired comparison of `key` between cells a and b; None when they share no finished seed."""
    done = runs[(runs["status"] == FINISHED) & runs[key].notna()]
    left = done[done["cell"] == a].groupby("seed")[key].mean()
    right = done[done["cell"] == b].groupby("seed")[key].mean()
    seeds = sorted(set(left.index) & set(right.index))
    if not seeds:
        return None
    diff = (right[seeds] - left[seeds]).to_numpy(dtype=float)
    n = len(diff)
    mean = float(diff.mean())
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    t = mean / se if n > 1 and se > 0 else math.nan  # no spread: no t statistic
    return Paired(a, b, tuple(int(s) for s in seeds), mean, se, t, _p_value(t, n - 1))


def _p_value(t: float, df: int) -> float | None:
    if df < 1 or math.isnan(t):
        return None
    try:
        from scipy import stats
    except ImportError:  # scipy comes with mlflow, but the report must not need it
        return None
    return float(2 * stats.t.sf(abs(t), df))


def pareto_front(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mask of points no other point beats on both x and y (both minimised); NaN never on it."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    valid = ~(np.isnan(x) | np.isnan(y))
    front = np.zeros(len(x), dtype=bool)
    for i in np.flatnonzero(valid):
        no_worse = valid & (x <= x[i]) & (y <= y[i])
        better = (x < x[i]) | (y < y[i])
        front[i] = not np.any(no_worse & better)
    return front
