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
from harness.models.cost import chunk_layout


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
        self.chunk = config.attention_chunk  # the linear attentions' chunk length

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
                            eps: float, chunk: int) -> torch.Tensor:
    """Kernelised causal attention in chunkwise-parallel form, linear in T (cosFormer, Performer).

    out_t = phi(q_t)^T S_t / max(phi(q_t)^T z_t, eps), S_t = sum_{j<=t} phi(k_j) v_j^T and
    z_t = sum_{j<=t} phi(k_j). The sequence is cut into chunks of `chunk` positions: inside a
    chunk the masked (chunk, chunk) scores phi(q)^T phi(k) weight the values directly (quadratic,
    but only in the chunk); across chunks each chunk's sum of phi(k_j) [v_j, 1]^T is added up
    (a prefix sum over chunks) and read by the queries of the chunks after it. So the state is
    held once per chunk, (B, H, T / chunk, f, hs + 1), not once per position, and every step is
    a batched matrix product. A column of ones beside v makes z_t the state's last column.
    The padding to a whole number of chunks is zero features, which add nothing to any sum.

    phi_q, phi_k (B, H, T, f) non-negative features; v (B, H, T, hs) -> (B, H, T, hs).
    """
    batch, heads, seq, f = phi_q.shape
    size, pad = chunk_layout(seq, chunk)
    ones = F.pad(v, (0, 1), value=1.0)  # (B, H, T, hs + 1): the last column sums the weights
    if pad:
        phi_q, phi_k, ones = (F.pad(x, (0, 0, 0, pad)) for x in (phi_q, phi_k, ones))
    q = phi_q.reshape(batch, heads, -1, size, f)  # (B, H, n, C, f): n chunks of C
    k = phi_k.reshape(batch, heads, -1, size, f)
    values = ones.reshape(batch, heads, -1, size, ones.size(-1))  # (B, H, n, C, hs + 1)
    scores = torch.einsum("bhncf,bhnmf->bhncm", q, k).tril()  # (B, H, n, C, C), j <= t only
    within = torch.einsum("bhncm,bhnme->bhnce", scores, values)
    # state before chunk n: the chunks 0..n-1 summed (the last chunk's own sum is never read)
    sums = torch.einsum("bhncf,bhnce->bhnfe", k[:, :, :-1], values[:, :, :-1])
    before = sums_before(sums)  # (B, H, n, f, hs + 1), zero before chunk 0
    across = torch.einsum("bhncf,bhnfe->bhnce", q, before)
    out = (within + across).flatten(2, 3)[:, :, :seq]  # (B, H, T, hs + 1)
    return out[..., :-1] / out[..., -1:].clamp_min(eps)


def sums_before(sums: torch.Tensor) -> torch.Tensor:
    """Per-chunk sums (B, H, n-1, ...) of chunks 0..n-2 -> the sum of the chunks before each
    chunk, (B, H, n, ...), zero before chunk 0: the state carried from chunk to chunk.

    A loop of adds over the chunks: torch's cumsum along this middle dimension, with its
    backward, ran 4-7x slower on the (B, H, n, f, hs) states of a 2048-4096 context here.
    """
    total = sums.new_zeros(sums.shape[:2] + sums.shape[3:])
    carried = [total]
    for chunk in sums.unbind(2):
        total = chunk if total is carried[0] else total + chunk  # no add to the zero state
        carried.append(total)
    return torch.stack(carried, dim=2)
