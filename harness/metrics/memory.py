"""Memory accounting: parameter bytes by kind, optimizer state, and measured peak step memory.

Byte counts come from a built model's tensors (`param_bytes`, `optimizer_state_bytes`) or from
a config alone (`training_state_bytes`, for presets too large to build). Peak memory is measured
around one training step: on CUDA the allocator's peak, on CPU the process's peak resident set.
"""

from __future__ import annotations

import ctypes
import functools
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from harness.models import MemoryLayer, ModelConfig, model_size
from harness.models.ngram import NgramEmbedding

ADAMW_STATES = 2  # exp_avg and exp_avg_sq, each the parameter's shape and dtype


@dataclass(frozen=True)
class ParamBytes:
    table_params: int  # MemoryLayer tables and an n-gram table (as models.sizes counts them)
    other_params: int  # everything else: embedding, norms, linear layers, LM head
    table_bytes: int
    other_bytes: int

    @property
    def total_params(self) -> int:
        return self.table_params + self.other_params

    @property
    def total_bytes(self) -> int:
        return self.table_bytes + self.other_bytes


def param_bytes(model: nn.Module) -> ParamBytes:
    """Parameter counts and bytes of a built model, hash tables apart from the rest."""
    tables = {id(m.tables) for m in model.modules()
              if isinstance(m, MemoryLayer | NgramEmbedding)}
    counts = {True: [0, 0], False: [0, 0]}  # is table -> [values, bytes]
    for p in model.parameters():
        entry = counts[id(p) in tables]
        entry[0] += p.numel()
        entry[1] += p.numel() * p.element_size()
    return ParamBytes(table_params=counts[True][0], other_params=counts[False][0],
                      table_bytes=counts[True][1], other_bytes=counts[False][1])


def adamw_state_bytes(params: int, bytes_per_value: int = 4) -> int:
    """AdamW's two moment estimates per parameter (fp32 by default)."""
    return ADAMW_STATES * params * bytes_per_value


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held in an optimizer's state tensors (after its first step; 0 before).

    For torch's AdamW this is adamw_state_bytes(params) plus one 4-byte `step` scalar per
    parameter tensor.
    """
    return sum(t.numel() * t.element_size() for state in optimizer.state.values()
               for t in state.values() if isinstance(t, torch.Tensor))


@dataclass(frozen=True)
class TrainingStateBytes:
    """Memory a step needs before activations, from the config: weights, gradients, AdamW."""

    params: int
    grads: int  # dense for the tables too: embedding_bag without sparse=True
    optimizer: int

    @property
    def total(self) -> int:
        return self.params + self.grads + self.optimizer


def training_state_bytes(config: ModelConfig) -> TrainingStateBytes:
    size = model_size(config)
    return TrainingStateBytes(params=size.total_bytes, grads=size.total_bytes,
                              optimizer=adamw_state_bytes(size.total_params))


@dataclass(frozen=True)
class PeakMemory:
    device: str
    # cuda_max_allocated: torch's allocator peak; vm_hwm: kernel's peak RSS, reset at start;
    # ru_maxrss: lifetime peak RSS, which misses a step that stays under an earlier peak
    method: str
    before_bytes: int
    peak_bytes: int

    @property
    def growth_bytes(self) -> int:
        """Peak during the step above the memory held when it started."""
        return max(self.peak_bytes - self.before_bytes, 0)


class PeakMemoryMeter:
    """start() before a step, stop() after it: the step's peak memory (for callbacks too).

    On CPU, start() first hands freed heap memory back to the OS (glibc's malloc_trim): memory
    the allocator kept from earlier work would otherwise be reused without raising the resident
    set, hiding the step's growth. Where that is unavailable the growth is a lower bound.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self._before = 0
        self._method = ""

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._method = "cuda_max_allocated"
            self._before = torch.cuda.memory_allocated(self.device)
            return
        _release_free_heap()
        self._method = "vm_hwm" if _reset_peak_rss() else "ru_maxrss"
        self._before = _rss_bytes() if self._method == "vm_hwm" else _max_rss_bytes()

    def stop(self) -> PeakMemory:
        if not self._method:
            raise RuntimeError("PeakMemoryMeter.stop() called before start()")
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        peak = (_proc_status_bytes("VmHWM") if self._method == "vm_hwm"
                else lifetime_peak_bytes(self.device))
        return PeakMemory(str(self.device), self._method, self._before, peak)


def lifetime_peak_bytes(device: torch.device | str = "cpu") -> int:
    """Peak without a start(): CUDA's allocator peak since its last reset, or this process's
    lifetime peak resident set on CPU (ru_maxrss)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return _max_rss_bytes()


def measure_peak(step: Callable[[], object], device: torch.device | str = "cpu") -> PeakMemory:
    """Run step() once (a forward + backward + optimizer step) and return its peak memory."""
    meter = PeakMemoryMeter(device)
    meter.start()
    step()
    return meter.stop()


def _release_free_heap() -> None:
    """glibc malloc_trim(0): return free heap pages to the OS; a no-op on other C libraries."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # symbols of the running process, libc included
    except (OSError, AttributeError):
        return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: "5" > /proc/self/clear_refs); False if absent."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"/proc/self/status has no {key}")


def _rss_bytes() -> int:
    return _proc_status_bytes("VmRSS")


def _max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, kB on Linux
