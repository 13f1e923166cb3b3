"""Scaling laws: L(C) = E + A * C**(-alpha) fitted per model family against a resource (training
FLOPs, seconds, non-embedding parameters), seed-bootstrap intervals, and where two families'
curves cross.

Pure functions of a frame (`scaling_frame`) so the report can be rebuilt from a table alone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, brentq, curve_fit

from harness.report.cells import FINISHED, trials
from harness.report.reader import (
    StudyRecords,
    metric_column,
    param_column,
    tag_column,
)
from harness.runs import records as contract  # `records` is scaling_frame's argument

# scaling_frame's columns
FAMILY, PRESET, SEED, RUN_ID = "family", "preset", "seed", "run_id"
LOSS = "val_loss"
FLOPS, SECONDS, PARAMS = "flops", "seconds", "params"
BUDGET = "budget"  # the run's nominal training-FLOPs budget (train.flops_budget); NaN without one
RESOURCES = {  # column -> its axis label
    FLOPS: "training FLOPs used",
    SECONDS: "optimizer wall-clock seconds used",
    PARAMS: "non-embedding parameters",
    BUDGET: "training-FLOPs budget",
}
MIN_POINTS = 4  # three free parameters: with three points the fit is exact and tells nothing
_ALPHA_MAX = 3.0
_TINY = 1e-12  # lower bound standing in for "> 0" (curve_fit's bounds are inclusive)
_GRID = 512  # log-spaced points searched for a sign change before brentq refines it


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class PowerLawFit:
    """L(C) = e + a * C**(-alpha), `a` in the resource's own units.

    A bootstrap fit adds 95% percentile intervals and its draws (one row (e, a, alpha) per
    resample, NaN where the refit failed, so two families' draws stay paired by index).
    """

    e: float
    a: float
    alpha: float
    n: int  # points fitted
    rms: float  # root mean square residual, in loss units
    e_ci: Interval | None = None
    a_ci: Interval | None = None
    alpha_ci: Interval | None = None
    n_boot: int = 0
    n_failed: int = 0
    draws: np.ndarray | None = field(default=None, repr=False, compare=False)

    def predict(self, c) -> np.ndarray:
        return _curve(np.asarray(c, dtype=float), self.e, self.a, self.alpha)


@dataclass(frozen=True)
class CrossingInterval:
    """The 95% percentile interval of the crossing over paired bootstrap draws."""

    low: float
    high: float
    share: float  # of the paired draws that both fitted, the share whose curves cross
    n: int  # paired draws that both fitted


def _curve(c: np.ndarray, e: float, a: float, alpha: float) -> np.ndarray:
    # in logs: a is C_ref**alpha times the scaled amplitude, and may be huge for large alpha
    return e + np.exp(math.log(a) - alpha * np.log(c))


def _scaled(x: np.ndarray, e: float, a: float, alpha: float) -> np.ndarray:
    return e + a * x ** (-alpha)


def fit_power_law(c: Sequence[float], loss: Sequence[float]) -> PowerLawFit:
    """Least-squares fit of L(C) = E + A * C**(-alpha), E >= 0, A > 0, 0 < alpha < 3.

    Fitted in x = C / C_ref (C_ref the geometric mean of C) so the amplitude is of order one
    whatever the resource's scale. Raises ValueError with fewer than four distinct positive C,
    RuntimeError when the optimiser does not converge.
    """
    c, loss = _clean(c, loss)
    c_ref = float(np.exp(np.log(c).mean()))
    x = c / c_ref
    p0 = _initial_guess(x, loss)
    with warnings.catch_warnings():
        # curve_fit warns when it cannot estimate the covariance; only the point estimate is
        # used (intervals come from the bootstrap), so that warning says nothing here
        warnings.simplefilter("ignore", OptimizeWarning)
        (e, a_scaled, alpha), _ = curve_fit(
            _scaled, x, loss, p0=p0, method="trf", maxfev=10_000,
            bounds=([0.0, _TINY, _TINY], [np.inf, np.inf, _ALPHA_MAX]))
    a = float(a_scaled * c_ref**alpha)
    residual = loss - _scaled(x, e, a_scaled, alpha)
    return PowerLawFit(e=float(e), a=a, alpha=float(alpha), n=len(c),
                       rms=float(np.sqrt(np.mean(residual**2))))


def _clean(c: Sequence[float], loss: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    c, loss = np.asarray(c, dtype=float), np.asarray(loss, dtype=float)
    keep = np.isfinite(c) & np.isfinite(loss) & (c > 0)
    c, loss = c[keep], loss[keep]
    if len(np.unique(c)) < MIN_POINTS:
        raise ValueError(f"a power law needs at least {MIN_POINTS} distinct resource values, "
                         f"got {len(np.unique(c))}")
    return c, loss


def _initial_guess(x: np.ndarray, loss: np.ndarray) -> list[float]:
    """E a little below the lowest loss; alpha and A from the log-log slope of loss - E."""
    spread = float(loss.max() - loss.min())
    e0 = max(0.0, float(loss.min()) - 0.1 * spread - 1e-6)
    slope, intercept = np.polyfit(np.log(x), np.log(loss - e0), 1)
    alpha0 = float(np.clip(-slope, 0.01, _ALPHA_MAX - 0.01))
    return [e0, float(np.exp(intercept)), alpha0]


def bootstrap_fit(frame: pd.DataFrame, resource: str, seeds_col: str = SEED,
                  n_boot: int = 1000, rng_seed: int = 0, loss_col: str = LOSS) -> PowerLawFit:
    """The fit of `loss_col` against `resource` over all rows, with 95% percentile intervals
    from resampling whole seeds with replacement: a draw takes, at every size/budget point,
    the runs of the drawn seeds (a seed drawn twice counts twice).

    Draws are made from the sorted seed labels with `rng_seed`, so two families with the same
    seeds and rng_seed resample the same seeds in the same draw (see crossing_interval). Failed
    refits are skipped and counted in n_failed. Raises as fit_power_law when the full data
    cannot be fitted.
    """
    data = frame.dropna(subset=[resource, loss_col])
    base = fit_power_law(data[resource], data[loss_col])
    by_seed = {s: g for s, g in data.groupby(seeds_col, sort=True)}
    seeds = list(by_seed)
    rng = np.random.default_rng(rng_seed)
    draws = np.full((n_boot, 3), np.nan)
    for i in range(n_boot):
        sample = pd.concat([by_seed[seeds[j]] for j in rng.integers(len(seeds), size=len(seeds))])
        draws[i] = _refit(sample[resource], sample[loss_col])
    ok = draws[np.isfinite(draws).all(axis=1)]
    e_ci, a_ci, alpha_ci = (_percentiles(ok[:, k]) for k in range(3))
    return PowerLawFit(e=base.e, a=base.a, alpha=base.alpha, n=base.n, rms=base.rms, e_ci=e_ci,
                       a_ci=a_ci, alpha_ci=alpha_ci, n_boot=n_boot, n_failed=n_boot - len(ok),
                       draws=draws)


def _refit(c: pd.Series, loss: pd.Series) -> tuple[float, float, float]:
    try:
        fit = fit_power_law(c, loss)
    except (ValueError, RuntimeError):  # too few points drawn, or no convergence
        return (math.nan, math.nan, math.nan)
    return (fit.e, fit.a, fit.alpha)


def _percentiles(values: np.ndarray, level: float = 95.0) -> Interval | None:
    if len(values) < 2:
        return None
    tail = (100.0 - level) / 2
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Interval(float(low), float(high))


def crossing(fit_a: PowerLawFit, fit_b: PowerLawFit, lo: float, hi: float) -> float | None:
    """The lowest C in [lo, hi] where the two fitted curves meet, None if they do not.

    Two such curves meet at most twice; a log-spaced grid finds the first sign change of their
    difference and brentq refines it in log C.
    """
    return _crossing((fit_a.e, fit_a.a, fit_a.alpha), (fit_b.e, fit_b.a, fit_b.alpha), lo, hi)


def _crossing(a: tuple[float, float, float], b: tuple[float, float, float], lo: float,
              hi: float) -> float | None:
    if not (0 < lo < hi):
        raise ValueError(f"crossing needs 0 < lo < hi, got lo={lo}, hi={hi}")

    def gap(log_c: float | np.ndarray) -> np.ndarray:
        c = np.exp(log_c)
        return _curve(c, *a) - _curve(c, *b)

    grid = np.linspace(math.log(lo), math.log(hi), _GRID)
    values = gap(grid)
    sign = np.sign(values)
    if (hit := np.flatnonzero(sign == 0)).size:
        return float(np.exp(grid[hit[0]]))
    change = np.flatnonzero(sign[:-1] != sign[1:])
    if not change.size:
        return None
    i = change[0]
    return float(np.exp(brentq(gap, grid[i], grid[i + 1], xtol=1e-12)))


def crossing_interval(boot_a: PowerLawFit, boot_b: PowerLawFit, lo: float, hi: float,
                      min_share: float = 0.5) -> CrossingInterval | None:
    """The crossing's 95% interval over paired draws (draw i of one family with draw i of the
    other), or None when the fits hold no draws, or no more than `min_share` of the pairs cross
    in [lo, hi] (then the crossing is not a stable feature of the data)."""
    if boot_a.draws is None or boot_b.draws is None:
        return None
    pairs = [(a, b) for a, b in zip(boot_a.draws, boot_b.draws, strict=False)
             if np.isfinite(a).all() and np.isfinite(b).all()]
    found = [c for a, b in pairs if (c := _crossing(tuple(a), tuple(b), lo, hi)) is not None]
    if not pairs or len(found) <= min_share * len(pairs):
        return None
    interval = _percentiles(np.log(found))  # percentiles are order statistics: same in logs
    if interval is None:
        return None
    return CrossingInterval(low=float(np.exp(interval.low)), high=float(np.exp(interval.high)),
                            share=len(found) / len(pairs), n=len(pairs))


def scaling_frame(records: StudyRecords, family_col: str = "kind") -> pd.DataFrame:
    """One row per finished trial run: run_id, family, preset, seed, val_loss, flops, seconds,
    params (non-embedding; all parameters where a run did not record that count). A missing
    value is NaN (or None), never an error.

    `family_col` "kind" is the model kind (the run's tag, else its config param); any other
    name is read as that column of the runs table, else as a param, else as a tag.
    """
    runs = trials(records.runs)
    runs = runs[runs["status"] == FINISHED]
    params = _number(runs, contract.NON_EMBEDDING_PARAMS)
    frame = pd.DataFrame({
        RUN_ID: runs["run_id"],
        FAMILY: _label_column(runs, family_col),
        PRESET: _label_column(runs, contract.PRESET),
        SEED: pd.to_numeric(_column(runs, tag_column(contract.SEED)), errors="coerce"),
        LOSS: _number(runs, contract.VAL_LOSS),
        FLOPS: _number(runs, contract.BUDGET_FLOPS_USED),
        SECONDS: _number(runs, contract.BUDGET_SECONDS_USED),
        PARAMS: params.fillna(_number(runs, contract.PARAMS)),
        BUDGET: pd.to_numeric(_column(runs, param_column(contract.FLOPS_BUDGET)), errors="coerce"),
    }, index=runs.index)
    return frame.reset_index(drop=True)


def frontier(frame: pd.DataFrame) -> pd.DataFrame:
    """The compute frontier: per family and nominal budget, the runs of the preset with the lowest
    mean loss over seeds, with their BUDGET column. A law of loss against compute describes the best
    size at each budget; pooling every size would fit models that one budget leaves at very
    different losses, so the curve would follow the mix of sizes, not compute."""
    data = frame.dropna(subset=[BUDGET, LOSS, FAMILY, PRESET])
    if data.empty:
        return data
    means = data.groupby([FAMILY, BUDGET, PRESET], sort=True)[LOSS].mean().reset_index()
    best = means.loc[means.groupby([FAMILY, BUDGET])[LOSS].idxmin(), [FAMILY, BUDGET, PRESET]]
    return data.merge(best, on=[FAMILY, BUDGET, PRESET]).sort_values([FAMILY, BUDGET, SEED])


def _label_column(runs: pd.DataFrame, family_col: str) -> pd.Series:
    if family_col == "kind":  # older runs carry the kind only as the config's param
        return _column(runs, tag_column(contract.KIND)).fillna(
            _column(runs, param_column(contract.KIND)))
    if family_col in runs.columns:
        return _column(runs, family_col)
    return _column(runs, param_column(family_col)).fillna(_column(runs, tag_column(family_col)))


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    column = runs.get(name)
    if column is None:
        return pd.Series(None, index=runs.index, dtype=object)
    return column.astype(object).where(column.notna(), None)


def _number(runs: pd.DataFrame, metric: str) -> pd.Series:
    column = runs.get(metric_column(metric))
    if column is None:
        return pd.Series(np.nan, index=runs.index, dtype=float)
    return pd.to_numeric(column, errors="coerce").astype(float)
