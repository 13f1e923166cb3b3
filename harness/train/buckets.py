"""Bucket usage of the memory layers (the paper's Figure 4): how evenly the hash fills each table.

Counts are gathered over validation batches by the layers' hash hooks (from the hash values the
forward computed anyway), so training pays nothing for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from harness.models import MemoryLayer, fused_lookup

INT32_CODE_BITS = 31  # bucket codes of up to this many bits are exact in int32


@dataclass(frozen=True)
class BucketUsage:
    unused_share: float  # share of all buckets (all tables) never selected
    entropy: float  # hit entropy / log(2**b), mean over tables: 1 = uniform, 0 = one bucket


def usage(counts: torch.Tensor) -> BucketUsage:
    """counts (K, 2**b) hits per bucket of each table -> summary statistics."""
    counts = counts.double()
    total = counts.sum(-1, keepdim=True).clamp_min(1)  # (K, 1)
    p = counts / total
    entropy = -(p * p.clamp_min(1e-300).log()).sum(-1) / math.log(counts.size(-1))  # (K,)
    return BucketUsage(unused_share=(counts == 0).double().mean().item(),
                       entropy=entropy.mean().item())


def bucket_rows(layer: MemoryLayer, h: torch.Tensor) -> torch.Tensor:
    """The flat table rows (..., K) `layer` selects for hash values h (..., K, b): its bucket
    indices + row_offsets.

    The fused kernel's hash gives the codes where it applies; elsewhere the sign bits are summed
    in int32 where the codes fit: on the CPU, the layer's int64 sum takes several times as long
    as its whole fused lookup.
    """
    codes = fused_lookup.bucket_codes(h) if layer.kernel != "reference" else None
    if codes is not None:
        return codes.long() + layer.row_offsets
    if layer.bucket_bits > INT32_CODE_BITS:
        return layer.hash_indices(h) + layer.row_offsets
    bits = (h >= 0).to(torch.int32)  # sign(0) counts as +1, as in the layer
    codes = (bits * layer.bit_values.to(torch.int32)).sum(-1, dtype=torch.int32)  # (..., K)
    return codes.long() + layer.row_offsets


class BucketCounter:
    """Counts the buckets every MemoryLayer of a model selects while it is attached."""

    def __init__(self, model: nn.Module):
        self.layers = {name: m for name, m in model.named_modules() if isinstance(m, MemoryLayer)}
        self.counts = {name: torch.zeros(m.num_tables, 2**m.bucket_bits, dtype=torch.int64)
                       for name, m in self.layers.items()}
        self._hooks: list = []

    def attach(self) -> None:
        for name, layer in self.layers.items():
            self._hooks.append(layer.register_hash_hook(self._hook(name)))

    def detach(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def reset(self) -> None:
        for counts in self.counts.values():
            counts.zero_()

    def _hook(self, name: str):
        def count(layer: MemoryLayer, h: torch.Tensor) -> None:
            with torch.no_grad():
                rows = bucket_rows(layer, h)
                hits = torch.bincount(rows.flatten().cpu(), minlength=self.counts[name].numel())
                self.counts[name] += hits.view_as(self.counts[name])
        return count

    def summary(self) -> dict[str, BucketUsage]:
        return {name: usage(counts) for name, counts in self.counts.items()}
