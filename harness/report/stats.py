"""How sure a comparison is: paired differences over seeds with their effect size, interval and
smallest detectable effect; Holm's adjustment over a report's comparisons; the linear trend of a
quantity along an ordered knob; and the Pareto front of a trade-off."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from harness.report.cells import FINISHED

ALPHA = 0.05  # two-sided significance level of every verdict
POWER = 0.8  # for the smallest detectable effect
LOG_SPAN = 8.0  # a positive knob spanning this factor or more (learning rates) is read in log2


@dataclass(frozen=True)
class Paired:
    """B minus A over the seeds both cells finished: seed s trains A and B on the same data order
    and initial draw, so differencing per seed removes the seed's share of the noise."""

    a: str
    b: str
    seeds: tuple[int, ...]
    mean: float  # mean of (b - a): the effect, in the key's unit (nats/token for val_loss)
    se: float  # standard error of that mean; NaN with one seed
    t: float  # mean / se, with n - 1 degrees of freedom; NaN with one seed or no spread
    p: float | None  # two-sided, from scipy; None when scipy is absent, n < 2 or no spread
    d_z: float = math.nan  # standardised effect: mean / sd of the differences
    ci_low: float = math.nan  # 95% t interval of the mean difference; NaN with one seed
    ci_high: float = math.nan
    mde: float = math.nan  # smallest |mean| detectable at ALPHA with POWER at this n

    @property
    def n(self) -> int:
        return len(self.seeds)


@dataclass(frozen=True)
class Trend:
    """OLS slope of `key` on the knob over every finished (cell, seed) run."""

    axis: str
    key: str
    scale: str  # "linear": slope per unit of the knob; "log2": per doubling
    slope: float
    se: float  # NaN below three runs
    ci_low: float
    ci_high: float
    p: float | None  # two-sided t test with n - 2 df; None where undefined
    n: int  # runs in the fit
    # "linear": the grid's smallest step, the unit the text states the slope in (0.001 of a
    # learning rate, not a whole unit); "log2": 1, a doubling
    unit: float = 1.0


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
    sd = float(diff.std(ddof=1)) if n > 1 else math.nan
    se = sd / math.sqrt(n)
    t = mean / se if n > 1 and se > 0 else math.nan  # no spread: no t statistic
    low, high = interval(mean, se, n - 1)
    return Paired(a, b, tuple(int(s) for s in seeds), mean, se, t, _p_value(t, n - 1),
                  d_z=mean / sd if sd > 0 else math.nan, ci_low=low, ci_high=high,
                  mde=detectable(se, n - 1))


def interval(estimate: float, se: float, df: int) -> tuple[float, float]:
    """The 95% t interval; NaN without degrees of freedom or an error estimate."""
    quantile = _t_quantile(1 - ALPHA / 2, df)
    if math.isnan(quantile) or math.isnan(se):
        return math.nan, math.nan
    return estimate - quantile * se, estimate + quantile * se


def detectable(se: float, df: int) -> float:
    """Smallest true effect a two-sided test at ALPHA finds with probability POWER:
    (t_{1 - alpha/2, df} + t_{power, df}) * se, the usual approximation for a t test."""
    if math.isnan(se) or df < 1:
        return math.nan
    return (_t_quantile(1 - ALPHA / 2, df) + _t_quantile(POWER, df)) * se


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni step-down adjusted p values, in the input's order: the i-th smallest of m
    is multiplied by m - i (i from 0), made monotone and capped at 1. None and NaN entries are
    passed through and do not count towards m."""
    valid = [i for i, p in enumerate(p_values) if p is not None and not math.isnan(p)]
    order = sorted(valid, key=lambda i: p_values[i])  # stable: ties keep the input's order
    adjusted: list[float | None] = list(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def knob_scale(values: Sequence[float]) -> str:
    """"log2" for a positive knob spanning LOG_SPAN-fold or more (learning rates), else
    "linear": such knobs are swept in doublings, and their effect is closer to linear in log."""
    values = np.asarray(values, dtype=float)
    if len(values) and values.min() > 0 and values.max() / values.min() >= LOG_SPAN:
        return "log2"
    return "linear"


def trend(runs: pd.DataFrame, axis: str, key: str = "val_loss") -> Trend | None:
    """Linear trend of `key` along the numeric knob `axis`; None with fewer than two distinct
    knob values among the finished runs. A (cell, seed) run twice (a retry) counts once."""
    done = runs[(runs["status"] == FINISHED) & runs[key].notna()]
    done = done[[is_number(v) for v in done[axis]]]
    points = done.groupby(["cell", "seed"], sort=True, dropna=False).agg(
        x=(axis, "first"), y=(key, "mean"))
    x, y = points["x"].to_numpy(dtype=float), points["y"].to_numpy(dtype=float)
    if len(np.unique(x)) < 2:
        return None
    scale = knob_scale(x)
    if scale == "log2":
        return _ols(axis, key, scale, np.log2(x), y)
    return replace(_ols(axis, key, scale, x, y), unit=float(np.diff(np.unique(x)).min()))


def _ols(axis: str, key: str, scale: str, x: np.ndarray, y: np.ndarray) -> Trend:
    n = len(x)
    dx = x - x.mean()
    sxx = float(dx @ dx)
    slope = float(dx @ (y - y.mean())) / sxx
    residual = y - y.mean() - slope * dx
    se = math.sqrt(float(residual @ residual) / (n - 2) / sxx) if n > 2 else math.nan
    t = slope / se if n > 2 and se > 0 else math.nan  # an exact fit: no t statistic
    low, high = interval(slope, se, n - 2)
    return Trend(axis, key, scale, slope, se, low, high, _p_value(t, n - 2), n)


def is_number(value) -> bool:
    """A knob value to regress on: a real number, not a bool (JSON gives both)."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool) and not math.isnan(value)


def _t_quantile(q: float, df: int) -> float:
    if df < 1:
        return math.nan
    stats = _scipy_stats()
    return math.nan if stats is None else float(stats.t.ppf(q, df))


def _p_value(t: float, df: int) -> float | None:
    if df < 1 or math.isnan(t):
        return None
    stats = _scipy_stats()
    return None if stats is None else float(2 * stats.t.sf(abs(t), df))


def _scipy_stats():
    """scipy.stats, imported on first use (it is slow to import); None where it is absent."""
    try:
        from scipy import stats
    except ImportError:
        return None
    return stats


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
