"""Hashed n-gram embedding: the sparse-capacity control for a dense baseline.

A MemoryFormer holds far more parameters than a dense model of its shape, nearly all in hash
tables of which each token reads a few rows. This module gives a dense model the same kind of
capacity without MemoryFormer's layers: each position t >= n-1 hashes the n token ids
x[t-n+1..t] to one row of an (R, d) table, added to the token embedding. Positions t < n-1
have no full n-gram and read the reserved row 0. The hash is fixed (no seed, no state):

    h = x[t-n+1];  h = (h * BASE + x[t-n+1+i]) mod PRIME  for i = 1..n-1
    row = ((h * MIX) mod PRIME) mod (R - 1) + 1

PRIME = 2^31 - 1 keeps every product below 2^62, so int64 never overflows.
"""

from __future__ import annotations

import torch
from torch import nn

PRIME = 2**31 - 1
BASE = 1_000_003  # a prime above the vocabularies here: x0 * BASE + x1 differs per bigram
MIX = 1_597_334_677  # odd multiplier that spreads h before the reduction to R - 1 rows
RESERVED_ROW = 0  # must be 0: the mask of the first positions multiplies it in


def hash_ngrams(tokens: torch.Tensor, order: int, rows: int) -> torch.Tensor:
    """tokens (..., T) int64 -> rows (..., T) in [1, rows), the hash of the n-gram ending at t.

    Vectorised over positions; the only loop is over the order. For t < order - 1 the window
    wraps round (`roll`), so those rows are meaningless: NgramEmbedding masks them to row 0.
    """
    h = tokens.roll(order - 1, -1)  # x[t-n+1] at t
    for i in range(order - 2, -1, -1):
        h = (h * BASE + tokens.roll(i, -1)) % PRIME
    return (h * MIX) % PRIME % (rows - 1) + 1


class NgramEmbedding(nn.Module):
    """(B, T) token ids -> (B, T, d): the hashed n-gram rows (the caller adds them)."""

    def __init__(self, order: int, rows: int, d_model: int, context_length: int,
                 init_std: float = 0.02):
        super().__init__()
        if order < 1 or rows < 2:
            raise ValueError(f"order: {order}, rows: {rows} are not allowed; allowed: order >= 1 "
                             "and rows >= 2 (row 0 is reserved)")
        self.order = order
        self.rows = rows
        # named like MemoryLayer's so that size accounting counts it as table values
        self.tables = nn.Parameter(torch.empty(rows, d_model))
        nn.init.normal_(self.tables, std=init_std)
        # 1 where position t has a full n-gram, else 0 (-> RESERVED_ROW); a constant, so the
        # forward pays one multiply per token for it and nothing per sequence
        full = (torch.arange(context_length) >= order - 1).long()  # (context_length,)
        self.register_buffer("full", full, persistent=False)

    def row_indices(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., T) -> (..., T) in [0, rows): RESERVED_ROW where t < order - 1."""
        return hash_ngrams(tokens, self.order, self.rows) * self.full[: tokens.size(-1)]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(self.row_indices(tokens), self.tables)

    def extra_repr(self) -> str:
        return f"order={self.order}, rows={self.rows}, d_model={self.tables.size(1)}"
