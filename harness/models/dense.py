"""The dense baseline block: Pythia / GPT-NeoX with a parallel residual.

    Y = X + W_O Attention(W_QKV LayerNorm_1(X)) + MLP(LayerNorm_2(X)),  MLP = W_2 GELU(W_1 .)
"""

from __future__ import annotations

import torch
from torch import nn

from harness.models.attention_factory import build_attention
from harness.models.config import ModelConfig


class DenseBlock(nn.Module):
    def __init__(self, config: ModelConfig, index: int):
        super().__init__()
        d = config.d_model
        self.width = d
        self.norm_attn = nn.LayerNorm(d, eps=config.norm_eps)
        self.qkv = nn.Linear(d, 3 * d)
        self.attn = build_attention(config, index)
        self.proj = nn.Linear(d, d)
        self.norm_mlp = nn.LayerNorm(d, eps=config.norm_eps)
        self.mlp = nn.Sequential(nn.Linear(d, config.ffn_hidden), nn.GELU(),
                                 nn.Linear(config.ffn_hidden, d))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=config.init_std)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, d)."""
        q, k, v = self.qkv(self.norm_attn(x)).split(self.width, dim=-1)  # 3 x (B, T, d)
        return x + self.proj(self.attn(q, k, v)) + self.mlp(self.norm_mlp(x))
