"""Causal multi-head attention with GPT-NeoX rotary embeddings, shared by both model kinds.

It takes Q, K and V already projected (B, T, d): the dense block projects them with a linear
layer, the MemoryFormer block with a memory layer. It has no output projection of its own;
the dense block adds one, MemoryFormer has none (SPEC section 3).

`CausalAttention` splits the heads and applies rotary to Q and K, then hands them to its
subclass's `attend`: softmax here (the paper's), Linformer, cosFormer and Performer in their own
modules (Table 2). Every kind keeps Pythia's rotary, applied before its own computation, so the
kinds differ only in how a query mixes the values of the positions up to its own.
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


class CausalAttention(nn.Module):
    """Heads and rotary around `attend`, which each attention kind defines."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.rotary = Rotary(config.head_dim, config.rotary_pct, config.rotary_base,
                             config.context_length)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v (B, T, d) -> (B, T, d), causal: output t reads inputs 0..t only."""
        batch, seq, width = q.shape
        q, k, v = (t.view(batch, seq, self.n_head, self.head_dim).transpose(1, 2)
                   for t in (q, k, v))  # (B, H, T, hs)
        q, k = self.rotary(q), self.rotary(k)
        y = self.attend(q, k, v)  # (B, H, T, hs)
        return y.transpose(1, 2).reshape(batch, seq, width)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k, v (B, H, T, hs), rotary applied -> (B, H, T, hs)."""
        raise NotImplementedError


class SoftmaxAttention(CausalAttention):
    """softmax(QK^T / sqrt(hs)) V per head, the paper's attention (Eq. 13)."""

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hs)


def causal_linear_attention(phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor,
                            eps: float) -> torch.Tensor:
    """Kernelised causal attention by prefix sums, linear in T (cosFormer, Performer).

    out_t = phi(q_t)^T S_t / max(phi(q_t)^T z_t, eps), S_t = sum_{j<=t} phi(k_j) v_j^T and
    z_t = sum_{j<=t} phi(k_j): the prefix (cumsum over positions) is what keeps it causal.

    phi_q, phi_k (B, H, T, f) non-negative features; v (B, H, T, hs) -> (B, H, T, hs).
    """
    states = torch.einsum("bhtf,bhte->bhtfe", phi_k, v).cumsum(2)  # S_t: (B, H, T, f, hs)
    numerator = torch.einsum("bhtf,bhtfe->bhte", phi_q, states)  # (B, H, T, hs)
    denominator = torch.einsum("bhtf,bhtf->bht", phi_q, phi_k.cumsum(2))  # (B, H, T)
    return numerator / denominator.clamp_min(eps).unsqueeze(-1)
