"""Evaluation of trained checkpoints: held-out and out-of-domain perplexity, zero-shot multiple
choice (tasks built from held-out plays, BIG-bench JSON tasks), and an lm-evaluation-harness
adapter for the paper's suite. Importing this package loads nothing heavy; `evaluate` and the
rest are imported on first use.
"""

from typing import Any

__all__ = ["DEFAULT_TASKS", "PAPER_SUITE", "TaskResult", "evaluate", "fetch_bigbench",
           "format_results", "load_bigbench_task"]

_HOMES = {
    "evaluate": "harness.evaluate.run",
    "TaskResult": "harness.evaluate.results",
    "format_results": "harness.evaluate.results",
    "fetch_bigbench": "harness.evaluate.bigbench",
    "load_bigbench_task": "harness.evaluate.bigbench",
    "DEFAULT_TASKS": "harness.evaluate.tasks",
    "PAPER_SUITE": "harness.evaluate.tasks",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
