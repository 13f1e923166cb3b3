"""Causal multi-head attention with GPT-NeoX rotary embeddings, shared by both model kinds.

It takes Q, K and V already projected (B, T, d): the dense block projects them with a linear
layer, the MemoryFormer block with a memory layer. It has no output projection of its own;
the dense block adds one, MemoryFormer has none (SPEC section 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.config import ModelConfig


class Rotary(nn.Module):
    """Rotary position embedding on the first `rotary_pct` of each head's dims (Pythia: 25%).

    Rotate-half layout as in GPT-NeoX; the rotated width is rounded down to an even number.
    """

    def __init__(self, head_dim: int, rotary_pct: float, base: float, max_len: int):
        super().__init__()
        self.dims = int(head_dim * rotary_pct) // 2 * 2
        inv_freq = 1.0 / base ** (torch.arange(0, self.dims, 2).float() / max(self.dims, 1))
        angles = torch.outer(torch.arange(max_len).float(), inv_freq)  # (T, dims/2)
        angles = torch.cat([angles, angles], dim=-1)  # (T, dims)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, T, hs) -> (B, H, T, hs), position t rotated by t * inv_freq."""
        if self.dims == 0:
            return x
        seq = x.size(-2)
        rot, keep = x[..., : self.dims], x[..., self.dims :]
        cos, sin = self.cos[:seq].to(x.dtype), self.sin[:seq].to(x.dtype)
        half = self.dims // 2
        rotated_half = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
        return torch.cat([rot * cos + rotated_half * sin, keep], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.rotary = Rotary(config.head_dim, config.rotary_pct, config.rotary_base,
                             config.context_length)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v (B, T, d) -> (B, T, d): softmax(QK^T / sqrt(hs)) V per head, causal."""
        batch, seq, width = q.shape
        q, k, v = (t.view(batch, seq, self.n_head, self.head_dim).transpose(1, 2)
                   for t in (q, k, v))  # (B, H, T, hs)
        q, k = self.rotary(q), self.rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hs)
        return y.transpose(1, 2).reshape(batch, seq, width)
