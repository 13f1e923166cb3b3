"""The fused memory-layer kernel, built before training rather than inside its first step.

The first build in a Python environment compiles C++ for about 30 s. Inside the first forward
that time would count as an optimiser step and leave the user watching a bar that does not move;
built here it counts as setup, with a notice saying what is happening and where the build goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch

from harness.models import fused_lookup
from harness.runs.config import RunConfig


def uses_kernel(config: RunConfig) -> bool:
    """Whether this run's memory layers take the fused CPU kernel (kernel auto or fused, on CPU)."""
    model, train = config.model, config.train
    on_cpu = train.accelerator == "cpu" or (train.accelerator == "auto"
                                           and not torch.cuda.is_available())
    return model.kind == "memoryformer" and model.kernel != "reference" and on_cpu


def prepare_kernel(configs: Iterable[RunConfig],
                   announce: Callable[[str], None] | None = None) -> None:
    """Build (or load) the kernel if any of `configs` uses it; `announce` hears about a build.

    A kernel that cannot build is not an error here: the layers say so once and take the
    reference path (or, with kernel=fused, fail with the reason).
    """
    if not any(uses_kernel(config) for config in configs):
        return
    building = not fused_lookup.is_built()
    if building and announce is not None:
        announce("building the fused memory-layer kernel: about 30 s, once per Python "
                 f"environment (cache: {fused_lookup.build_folder()})")
    start = time.perf_counter()
    ready, reason = fused_lookup.available()
    if building and announce is not None:
        announce(f"kernel built in {time.perf_counter() - start:.0f} s" if ready
                 else f"kernel unavailable ({reason}); memory layers use the reference path")
