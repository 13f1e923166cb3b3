"""Standard errors of the means the evaluation reports."""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_stderr(values: Sequence[float]) -> float:
    """Sample standard error of the mean, sqrt(s^2 / n) with s^2 on n - 1 degrees of freedom: what
    lm-evaluation-harness reports for acc. NaN below two values (no spread to estimate)."""
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n)


def block_mean_stderr(values: Sequence[float], block: int) -> float:
    """Standard error of the mean of correlated values by batch means: the stderr of the means of
    consecutive blocks of `block` values (a trailing partial block is left out).

    Per-token losses of running text are correlated (a hard passage is hard for many tokens), so
    the per-token formula would understate the error; block means of a context's length are close
    to independent.
    """
    if block < 1:
        raise ValueError(f"block must be >= 1, not {block}")
    means = [sum(values[i:i + block]) / block for i in range(0, len(values) - block + 1, block)]
    return mean_stderr(means)
