"""cosFormer attention (Qin et al. 2022): ReLU features with a cos re-weighting, linear in T.

    s(i, j) = relu(q_i)^T relu(k_j) cos(pi/2 (i - j) / M)
    out_i = sum_{j<=i} s(i, j) v_j / max(sum_{j<=i} s(i, j), eps)

cos(a_i - a_j) = cos a_i cos a_j + sin a_i sin a_j with a_i = pi/2 i / M splits the weight into
a feature of i and one of j: phi(x)_i = [relu(x_i) cos a_i, relu(x_i) sin a_i] (2 hs values), so
s(i, j) = phi(q)_i^T phi(k)_j and the causal sums are running sums over j
(`attention.causal_linear_attention`). M = context_length: the longest distance i - j is M - 1,
so every weight lies in (0, 1] and decays with distance (the paper's locality bias).
The sums run chunk by chunk (`attention.causal_linear_attention`), cos and sin being per-position
factors of the features, so the chunks change nothing in the maths.
eps = 1e-6 as in the paper's code (a query whose features are all zero gets a zero output).
"""

from __future__ import annotations

import math

import torch

from harness.models.attention import CausalAttention, causal_linear_attention
from harness.models.config import ModelConfig

EPS = 1e-6


class CosformerAttention(CausalAttention):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        angles = math.pi / 2 * torch.arange(config.context_length).float()
        angles = (angles / config.context_length)[:, None]  # (T, 1): a_i
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, T, hs) -> phi(x) (B, H, T, 2 hs)."""
        seq, positive = x.size(-2), torch.relu(x)
        cos, sin = self.cos[:seq].to(x.dtype), self.sin[:seq].to(x.dtype)
        return torch.cat([positive * cos, positive * sin], dim=-1)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return causal_linear_attention(self.features(q), self.features(k), v, EPS, self.chunk)
