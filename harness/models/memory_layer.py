"""MemoryLayer: the paper's hash-table replacement for `nn.Linear` (Ding et al. 2024, Eq. 2-12).

Torch only, so the layer can be copied out of the harness (with fused_lookup.py and csrc/ for
the fast path). Called exactly like `nn.Linear(in_features, out_features)`:
input (..., in_features) -> output (..., out_features).

For each of K tables, a chunk z of the input picks one of 2**b rows by the signs of its values
(a locality-sensitive hash), and the row is scaled by a differentiable weight p(z):

    bucket(z) = sum_j [h_j >= 0] 2**j            Eq. 2-4, element 0 is the least significant bit
    p(z)      = prod_j sigmoid(2 |h_j| / t)      Eq. 8-10 in closed form (see bucket_weights)
    y         = sum_k p(z_k) T_k[bucket(z_k)]    Eq. 11

where h = z when bucket_bits == chunk_size (the paper), else h = z @ H for fixed +-1 hyperplanes H.

Two paths compute the same thing. The reference path below is plain torch (an embedding_bag).
The fused path (harness.models.fused_lookup, a C++ kernel built on first use) does hash, weight
and gather in a few cache-blocked passes and is used on the CPU wherever it applies
(`kernel="auto"`); where it cannot build, layers warn once and use the reference path.
Under bf16 autocast (Lightning's `bf16-mixed`) the tables stay fp32 master weights and the fused
path takes the bf16 activations, returning bf16.

Speed in your own script: every backward allocates the tables' gradient afresh (K x 2**b x out
fp32 values: 34 MB at 512 x 512, 134 MB at 1024 x 1024), and glibc's default policy hands blocks
that large back to the kernel on free, so each step faults their pages in again. `harness`
training runs and `harness bench` call `harness.allocator.keep_freed_memory()` once per process;
a script that imports only this layer reaches the same speed by calling it once at start, or by
starting Python with GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824
(the same policy, set before the first allocation; README, Speed, has the measured gap). Nothing
else is needed: the kernel builds itself on first use.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from harness.models import fused_lookup

WEIGHTINGS = ("paper", "l1")
KERNELS = ("auto", "fused", "reference")  # auto: fused where it applies, else reference
# How tables are stored: fp32 (trainable, the default); bf16 or int8 with one scale per row
# (inference only: smaller rows to fetch, at a small accuracy cost; see store_tables).
TABLE_STORAGES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.int8}


class MemoryLayer(nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        chunk_size: int = 8,
        bucket_bits: int | None = None,
        num_tables: int | None = None,
        temperature: float = 1.0,
        weighting: str = "paper",
        bias: bool = False,
        seed: int = 0,
        init_std: float = 0.02,
        kernel: str = "auto",
    ):
        super().__init__()
        _check_int("in_features", in_features)
        _check_int("out_features", out_features)
        _check_int("chunk_size", chunk_size, top=in_features)
        bucket_bits = chunk_size if bucket_bits is None else bucket_bits
        num_tables = in_features // chunk_size if num_tables is None else num_tables
        _check_int("bucket_bits", bucket_bits, top=62)  # bucket indices are int64
        _check_int("num_tables", num_tables)
        if not temperature > 0:
            raise ValueError(f"temperature: {temperature!r} is not allowed; allowed: numbers > 0")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting: {weighting!r} is not allowed; "
                             f"allowed: {', '.join(WEIGHTINGS)}")
        if kernel not in KERNELS:
            raise ValueError(f"kernel: {kernel!r} is not allowed; allowed: {', '.join(KERNELS)}")
        self.in_features = in_features
        self.out_features = out_features
        self.chunk_size = chunk_size
        self.bucket_bits = bucket_bits
        self.num_tables = num_tables
        self.temperature = float(temperature)
        self.weighting = weighting
        self.init_std = init_std
        self.kernel = kernel
        self._hash_hooks: OrderedDict[int, Callable] = OrderedDict()

        self.tables = nn.Parameter(torch.empty(num_tables, 2**bucket_bits, out_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.register_buffer("table_scale", None)  # (K, 2**b) when the tables are int8

        # Fixed, seeded hashing state lives in persistent buffers: a reloaded layer hashes exactly
        # as the saved one did, whatever the RNG of the loading machine.
        device = self.tables.device
        generator = torch.Generator().manual_seed(seed)
        stream = _input_stream(in_features, num_tables * chunk_size, generator)
        self.register_buffer("input_index", None if stream is None else stream.to(device))
        planes = None
        if bucket_bits != chunk_size:
            planes = _hyperplanes(num_tables, chunk_size, bucket_bits, generator).to(device)
        self.register_buffer("hyperplanes", planes)
        # Derived constants: cheap to rebuild, so kept out of the state dict.
        bit_values = 2 ** torch.arange(bucket_bits, device=device)  # (b,)
        row_offsets = torch.arange(num_tables, device=device) * 2**bucket_bits  # (K,)
        self.register_buffer("bit_values", bit_values, persistent=False)
        self.register_buffer("row_offsets", row_offsets, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.tables, std=self.init_std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    @property
    def table_storage(self) -> str:
        return next(name for name, dtype in TABLE_STORAGES.items()
                    if dtype == self.tables.dtype)

    def table_values(self) -> torch.Tensor:
        """(K, 2**b, out): the tables as the layer reads them (int8 ones scaled back, in fp32)."""
        if self.table_scale is None:
            return self.tables
        return self.tables.float() * self.table_scale.unsqueeze(-1)

    @torch.no_grad()
    def store_tables(self, storage: str) -> None:
        """Store the tables as `fp32`, `bf16` or `int8` (round(value / scale), scale = row's
        max |value| / 127). bf16 and int8 freeze the tables: they are for inference."""
        if storage not in TABLE_STORAGES:
            raise ValueError(f"table storage: {storage!r} is not allowed; "
                             f"allowed: {', '.join(TABLE_STORAGES)}")
        values = self.table_values().float()  # (K, R, out)
        scale = None
        if storage == "int8":
            scale = values.abs().amax(-1) / 127  # (K, R)
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            values = torch.round(values / scale.unsqueeze(-1)).clamp_(-127, 127)
        self.tables = nn.Parameter(values.to(TABLE_STORAGES[storage]),
                                   requires_grad=storage == "fp32")
        self.table_scale = scale

    def chunks(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., K, c): chunk k is positions [k*c, (k+1)*c) of the stream."""
        if self.input_index is not None:
            x = x.index_select(-1, self.input_index)
        else:
            x = x[..., : self.num_tables * self.chunk_size]
        return x.unflatten(-1, (self.num_tables, self.chunk_size))

    def hash_values(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., K, b): the values whose signs select each table's row."""
        z = self.chunks(x)
        if self.hyperplanes is None:
            return z
        return torch.einsum("...kc,kcb->...kb", z, self.hyperplanes.to(z.dtype))

    def bucket_indices(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> LongTensor (..., K) in [0, 2**b). Not differentiable."""
        return self.hash_indices(self.hash_values(x))

    def bucket_weights(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., K): p(z) of Eq. 10, times ||z||_1 for `l1` weighting."""
        return self._weights(self.hash_values(x))

    def register_hash_hook(self, hook: Callable[[MemoryLayer, torch.Tensor], None]
                           ) -> RemovableHandle:
        """Call hook(layer, h) with each forward's hash values h (..., K, b), the ones that pick
        its rows: an observer (bucket counts) reads them without hashing the input again."""
        handle = RemovableHandle(self._hash_hooks)
        self._hash_hooks[handle.id] = hook
        return handle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hash_values(x)  # (..., K, b)
        for hook in self._hash_hooks.values():
            hook(self, h)
        y = self._fused(h) if self.kernel != "reference" else None
        if y is None:
            y = self.reference(h)
        if self.bias is not None:
            y = y + self.bias
        return y

    def reference(self, h: torch.Tensor) -> torch.Tensor:
        """Hash values (..., K, b) -> (..., out_features) in plain torch: the definition."""
        rows = (self.hash_indices(h) + self.row_offsets).reshape(-1, self.num_tables)  # (N, K)
        weights = self._weights(h).reshape(-1, self.num_tables)  # (N, K)
        # Each token is one bag of K rows of the flattened tables: a weighted gather-sum that reads
        # K * out_features values and writes gradient only into the rows it read (Eq. 12).
        # Tables stored in another dtype (bf16, int8 for inference) are read in the input's.
        flat_tables = self.table_values().view(-1, self.out_features).to(h.dtype)  # (K*2**b, out)
        y = F.embedding_bag(rows, flat_tables, per_sample_weights=weights.to(h.dtype),
                            mode="sum")
        return y.view(*h.shape[:-2], self.out_features)

    def _fused(self, h: torch.Tensor) -> torch.Tensor | None:
        """The fused kernel's output, or None where it does not apply (then: reference)."""
        if not fused_lookup.supports(h, self.tables):
            if self.kernel == "fused" and not torch.jit.is_tracing():
                raise RuntimeError("MemoryLayer(kernel='fused'): the fused kernel does not "
                                   f"apply to {h.dtype} inputs on {h.device} with "
                                   f"{self.tables.dtype} tables on {self.tables.device}")
            return None
        ready, reason = fused_lookup.available()
        if not ready:
            if self.kernel == "fused":
                raise RuntimeError(f"MemoryLayer(kernel='fused'): {reason}")
            fused_lookup.warn_unavailable(reason)
            return None
        return fused_lookup.lookup(h, self.tables, self.temperature, self.weighting,
                                   self.table_scale)

    def hash_indices(self, h: torch.Tensor) -> torch.Tensor:
        """Hash values (..., K, b) -> LongTensor (..., K): the bucket each table selects."""
        bits = (h >= 0).long()  # sign(0) counts as +1
        return (bits * self.bit_values).sum(-1)

    def _weights(self, h: torch.Tensor) -> torch.Tensor:
        # The softmax over all 2**b sign codes c at the selected code,
        #   exp(<h, sign h>/t) / sum_c exp(<h, c>/t),
        # factorises over bits into prod_j sigmoid(2|h_j|/t). Each factor lies in [1/2, 1], so
        # the product cannot underflow for any b < 62 and needs no log space.
        p = torch.sigmoid(2 * h.abs() / self.temperature).prod(-1)
        if self.weighting == "l1":
            p = p * h.abs().sum(-1)
        return p

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"chunk_size={self.chunk_size}, bucket_bits={self.bucket_bits}, "
                f"num_tables={self.num_tables}, temperature={self.temperature}, "
                f"weighting={self.weighting}, bias={self.bias is not None}, "
                f"kernel={self.kernel}, table_storage={self.table_storage}")


def store_all_tables(module: nn.Module, storage: str) -> int:
    """Store the tables of every MemoryLayer inside `module` as `storage` (see store_tables).

    Returns how many layers changed storage.
    """
    layers = [m for m in module.modules() if isinstance(m, MemoryLayer)]
    for layer in layers:
        layer.store_tables(storage)
    return len(layers)


def _input_stream(in_features: int, length: int, generator: torch.Generator) -> torch.Tensor | None:
    """Identity order, then seeded permutations of the inputs, cut to `length` (SPEC section 2).

    None when the identity prefix suffices (K * c <= in_features): a slice, no gather.
    """
    if length <= in_features:
        return None
    copies = math.ceil(length / in_features)
    parts = [torch.arange(in_features)]
    parts += [torch.randperm(in_features, generator=generator) for _ in range(copies - 1)]
    return torch.cat(parts)[:length]


def _hyperplanes(num_tables: int, chunk_size: int, bucket_bits: int,
                 generator: torch.Generator) -> torch.Tensor:
    """(K, c, b) of +-1: bit j of table k is the sign of a fixed +-1 combination (SimHash)."""
    signs = torch.randint(0, 2, (num_tables, chunk_size, bucket_bits), generator=generator)
    return (2 * signs - 1).to(torch.get_default_dtype())


def _check_int(name: str, value: int, top: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (
            top is not None and value > top):
        allowed = "integers >= 1" if top is None else f"integers 1..{top}"
        raise ValueError(f"{name}: {value!r} is not allowed; allowed: {allowed}")
