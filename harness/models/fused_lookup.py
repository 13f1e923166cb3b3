"""The fused CPU path of MemoryLayer: a C++ kernel built on first use, with the same math.

`lookup(h, tables, temperature, weighting)` returns what MemoryLayer's reference path computes
from the hash values h (..., K, b): sum_k p(h_k) tables[k, bucket(h_k)], as one autograd op whose
backward gives the gradient of h (through p) and of the tables (only the rows read are non-zero).
The kernel (csrc/memory_lookup.cpp) is compiled once per Python environment (about 30 s) with
torch's extension builder into torch's extension cache (TORCH_EXTENSIONS_DIR); `build_folder()`
says where, `is_built()` whether a build is there already. Where it cannot build (no C++
compiler, no ninja), `available()` says why and MemoryLayer falls back to the reference path,
warning once.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType

import torch
from torch.autograd.function import once_differentiable

SOURCE = Path(__file__).parent / "csrc" / "memory_lookup.cpp"
MAX_BUCKET_BITS = 30  # rows are int32 in the kernel
INPUT_DTYPES = (torch.float32, torch.bfloat16)
TABLE_DTYPES = (torch.float32, torch.bfloat16, torch.int8)  # bf16, int8: not trained
DISABLE_ENV = "HARNESS_FUSED_LOOKUP"  # set to 0 to force the reference path everywhere

log = logging.getLogger(__name__)


@functools.cache
def _build() -> ModuleType | str:
    """The compiled extension, or the reason it is unavailable (cached for the process)."""
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return f"disabled by {DISABLE_ENV}=0"
    from torch.utils import cpp_extension  # heavy import, only when the kernel is first needed

    log.info("building the fused memory-layer kernel (once per Python environment)")
    flags = ["-O3", "-march=native", "-mprefer-vector-width=512", "-fopenmp",
             # lets the compiler vectorize the dot products' sums (no effect on comparisons)
             "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]
    try:
        with warnings.catch_warnings(record=True) as caught:
            # Built from the source text, not its path, and named per Python environment: the
            # installed package and a source checkout share one build, and two environments
            # (a dev venv and tox's) keep one each instead of rebuilding each other's.
            module = cpp_extension.load_inline(
                name=_module_name(),
                cpp_sources=[SOURCE.read_text()], extra_cflags=flags,
                extra_ldflags=["-fopenmp", "-lmvec"], verbose=False)
        for warning in caught:
            log.info("kernel build: %s", warning.message)
        return module
    except Exception as error:  # any build failure: compiler, ninja, linker, headers
        lines = str(error).strip().splitlines() or [type(error).__name__]
        errors = [line for line in lines if "error" in line.lower()]  # the compiler's first
        return f"the C++ build failed: {(errors[1:2] or errors or lines)[0].strip()[:300]}"


def _module_name() -> str:
    return f"harness_memory_lookup_{_environment_digest()}"


def build_folder() -> Path:
    """Where this environment's build of the kernel lives (or will)."""
    from torch.utils import cpp_extension

    return Path(cpp_extension._get_build_directory(_module_name(), verbose=False))


def is_built() -> bool:
    """Whether this environment has a compiled kernel (loading it then takes under a second).
    A changed source is rebuilt on load all the same; this only says whether a wait is likely."""
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return True  # nothing will be built
    return (build_folder() / f"{_module_name()}.so").exists()


def _environment_digest() -> str:
    """Eight hex digits naming this interpreter and torch installation."""
    key = f"{sys.prefix}|{Path(torch.__file__).parent}|{torch.__version__}"
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def available() -> tuple[bool, str]:
    """(True, "") when the kernel is built and loaded, else (False, why not)."""
    built = _build()
    return (True, "") if isinstance(built, ModuleType) else (False, built)


@functools.cache
def warn_unavailable(reason: str) -> None:
    """Say once per process (and per reason) that layers run on the reference path."""
    warnings.warn(f"MemoryLayer: fused kernel unavailable ({reason}); using the reference "
                  "path (same results, slower)", RuntimeWarning, stacklevel=3)


def supports(h: torch.Tensor, tables: torch.Tensor) -> bool:
    """Whether the kernel computes this call exactly as the reference path would."""
    trains_tables = tables.requires_grad and torch.is_grad_enabled()
    return (h.device.type == "cpu" and tables.device.type == "cpu"
            and h.dtype in INPUT_DTYPES and tables.dtype in TABLE_DTYPES
            and not (trains_tables and tables.dtype != torch.float32)
            and h.size(-1) <= MAX_BUCKET_BITS
            and not torch.jit.is_tracing())  # FLOP counts trace the reference ops


def lookup(h: torch.Tensor, tables: torch.Tensor, temperature: float, weighting: str,
           scale: torch.Tensor | None = None) -> torch.Tensor:
    """h (..., K, b), tables (K, 2**b, H) -> (..., H) in h's dtype.

    int8 tables hold round(value / scale) with one scale per row, `scale` (K, 2**b).
    """
    kernel = _build()
    assert isinstance(kernel, ModuleType), kernel  # callers check available() first
    flat = h.reshape(-1, *h.shape[-2:]).float().contiguous()  # (N, K, b)
    scale = torch.empty(0) if scale is None else scale.float().contiguous()
    y = _Lookup.apply(flat, tables, scale, kernel, 2.0 / temperature,
                      weighting == "l1")  # (N, H)
    return y.to(h.dtype).view(*h.shape[:-2], tables.size(-1))


def bucket_codes(h: torch.Tensor) -> torch.Tensor | None:
    """h (..., K, b) -> int32 (..., K): each table's bucket, as MemoryLayer.hash_indices gives
    it; None where the kernel does not apply (not a float32 CPU tensor, b too large, no build).
    The kernel's hash computes the weights too; for counting it is still ~5x the torch ops."""
    if h.device.type != "cpu" or h.dtype != torch.float32 or h.size(-1) > MAX_BUCKET_BITS:
        return None
    kernel = _build()
    if not isinstance(kernel, ModuleType):
        return None
    rows, _ = kernel.hash_forward(h.reshape(-1, *h.shape[-2:]).contiguous(), 1.0, False)
    return rows.view(h.shape[:-1])


def read_bandwidth(nbytes: int, passes: int, repeats: int = 5) -> float:
    """Bytes/s one thread reads from an nbytes buffer it reads `passes` times (best of repeats):
    sized to a cache level, that level's read bandwidth. The bench's L2 floor divides by it."""
    kernel = _build()
    assert isinstance(kernel, ModuleType), kernel  # callers check available() first
    return kernel.read_bandwidth(nbytes, passes, repeats)


class _Lookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, tables, row_scale, kernel, scale, l1):  # h (N, K, b), tables (K, R, H)
        rows, p = kernel.hash_forward(h, scale, l1)  # (N, K) int32, (N, K)
        y = kernel.gather_forward(rows, p, tables.contiguous(), row_scale)  # (N, H)
        ctx.save_for_backward(h, tables, row_scale, rows, p)
        ctx.kernel, ctx.scale, ctx.l1 = kernel, scale, l1
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        h, tables, row_scale, rows, p = ctx.saved_tensors
        grad_y = grad_y.float().contiguous()  # (N, H)
        want_h, want_tables = ctx.needs_input_grad[:2]
        frozen = tables.float()  # bf16 or int8 tables: only the inputs' gradient
        if tables.dtype == torch.int8:
            frozen = frozen * row_scale.unsqueeze(-1)
        grad_p, grad_tables = ctx.kernel.gather_backward(
            grad_y, rows, p, frozen.contiguous(), want_h, want_tables)  # (N, K), (K, R, H)
        grad_h = ctx.kernel.hash_backward(h, grad_p, ctx.scale, ctx.l1) if want_h else None
        return grad_h, grad_tables if want_tables else None, None, None, None, None
