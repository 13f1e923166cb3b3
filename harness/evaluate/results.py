"""What one task's evaluation produced, its MLflow metric keys, and the table the CLI prints."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

METRIC_PREFIX = "eval"
# Shown first, in this order; any other metric follows alphabetically.
MAIN_METRICS = ("acc", "acc_norm", "ppl", "nll", "bpb")


@dataclass(frozen=True)
class TaskResult:
    task: str  # as requested, e.g. "mc:next-line", "ppl:bible", "piqa"
    n: int  # examples (multiple choice) or scored tokens (perplexity)
    metrics: dict[str, float]  # "acc", "acc_stderr", "ppl", ...; never "n"
    version: str = ""  # the task builder's version, or lm-eval's task version
    source: str = ""  # which text the task was built from, in words
    digest: str = ""  # of the examples or tokens: equal digests = the same test set
    extra: dict[str, str] = field(default_factory=dict)  # other tags worth keeping

    def metric_dict(self) -> dict[str, float]:
        """MLflow metrics: eval/<task>/<metric>, plus eval/<task>/n."""
        prefix = f"{METRIC_PREFIX}/{metric_task_name(self.task)}"
        out = {f"{prefix}/{key}": value for key, value in self.metrics.items()}
        out[f"{prefix}/n"] = float(self.n)
        return out

    def tag_dict(self) -> dict[str, str]:
        prefix = f"{METRIC_PREFIX}/{metric_task_name(self.task)}"
        tags = {"version": self.version, "source": self.source, "digest": self.digest,
                **self.extra}
        return {f"{prefix}/{key}": value for key, value in tags.items() if value}


def metric_task_name(task: str) -> str:
    """A task name as it appears in metric keys: ':' becomes '.', because MLflow refuses colons
    in metric names on Windows clients ("ppl:bible" -> "eval/ppl.bible/ppl")."""
    return task.replace(":", ".")


def format_results(results: Mapping[str, TaskResult]) -> str:
    """A plain-text table: task, n, then each metric with its stderr (lm-eval's layout)."""
    rows = [("task", "version", "metric", "value", "stderr", "n")]
    for name, result in results.items():
        first = True
        for metric in _ordered_metrics(result.metrics):
            stderr = result.metrics.get(f"{metric}_stderr", math.nan)
            rows.append((name if first else "", result.version if first else "", metric,
                         _number(result.metrics[metric]),
                         "" if math.isnan(stderr) else f"± {_number(stderr)}",
                         str(result.n) if first else ""))
            first = False  # task, version and n once per block, as lm-eval prints them
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [cell.ljust(w) if i < 3 else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ordered_metrics(metrics: Mapping[str, float]) -> list[str]:
    names = [m for m in metrics if not m.endswith("_stderr")]
    return sorted(names, key=lambda m: (MAIN_METRICS.index(m) if m in MAIN_METRICS
                                        else len(MAIN_METRICS), m))


def _number(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
