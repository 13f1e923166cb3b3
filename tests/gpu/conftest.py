"""The GPU checks: every test here needs CUDA and is skipped without it.

Run them where a GPU is lent with benchmarks/gpu_check.sh (which also times `harness bench
--device cuda`); on the project's CPU machine and in CI they report as skipped.
"""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA: run benchmarks/gpu_check.sh on a GPU machine")
    for item in items:
        if "tests/gpu/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith("gpu/"):
            item.add_marker(skip)
