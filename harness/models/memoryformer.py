"""The MemoryFormer block (paper Eq. 13): every fully-connected layer is a MemoryLayer.

    Xn = LayerNorm(X)
    Q, K, V = MemoryLayer_QKV(Xn)                # one shared hash of Xn
    Z = X + MultiHeadAttention(Q, K, V)          # no output projection W_O
    Y = Z + MemoryLayer_2(LayerNorm(MemoryLayer_1(LayerNorm(Z))))
"""

from __future__ import annotations

import torch
from torch import nn

from harness.models.attention_factory import build_attention
from harness.models.config import MemoryLayerSpec, ModelConfig
from harness.models.memory_layer import MemoryLayer


def memory_layer(spec: MemoryLayerSpec, config: ModelConfig, seed: int) -> MemoryLayer:
    return MemoryLayer(
        spec.in_features,
        spec.out_features,
        chunk_size=spec.chunk_size,
        bucket_bits=spec.bucket_bits,
        num_tables=spec.num_tables,
        temperature=config.temperature,
        weighting=config.weighting,
        seed=seed,
        init_std=config.init_std,
        kernel=config.kernel,
    )


class MemoryFeedForward(nn.Module):
    """The paper's Memory Block: d -> (c+e)K -> d through two memory layers.

    The paper puts no activation between them (the hash is already non-linear); `gelu` applies
    one to layer 1's output, before the norm that balances the signs for layer 2 (Table 6).
    """

    def __init__(self, config: ModelConfig, seed: int):
        super().__init__()
        _, spec_in, spec_out = config.memory_layers()
        self.norm_in = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.layer_in = memory_layer(spec_in, config, seed + 1)
        self.act = nn.GELU() if config.ffn_activation == "gelu" else nn.Identity()
        self.norm_mid = nn.LayerNorm(spec_in.out_features, eps=config.norm_eps)
        self.layer_out = memory_layer(spec_out, config, seed + 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, d), the residual branch only."""
        hidden = self.act(self.layer_in(self.norm_in(z)))  # (B, T, (c+e)K)
        return self.layer_out(self.norm_mid(hidden))


class MemoryFormerBlock(nn.Module):
    def __init__(self, config: ModelConfig, index: int):
        super().__init__()
        # Each block hashes with its own seeds: 3 per block (qkv, ffn_in, ffn_out).
        seed = config.hash_seed + 3 * index
        self.width = config.d_model
        self.norm_attn = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.qkv = memory_layer(config.memory_layers()[0], config, seed)
        self.attn = build_attention(config, index)
        self.ffn = MemoryFeedForward(config, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, d)."""
        q, k, v = self.qkv(self.norm_attn(x)).split(self.width, dim=-1)  # 3 x (B, T, d)
        z = x + self.attn(q, k, v)
        return z + self.ffn(z)
