"""The attention of a block, picked by `ModelConfig.attention` (SPEC Table 2)."""

from __future__ import annotations

from harness.models.attention import CausalAttention, SoftmaxAttention
from harness.models.attention_cosformer import CosformerAttention
from harness.models.attention_linformer import LinformerAttention
from harness.models.attention_performer import PerformerAttention
from harness.models.config import ModelConfig


def build_attention(config: ModelConfig, index: int = 0) -> CausalAttention:
    """Block `index`'s attention; only Performer uses the index (it seeds the features)."""
    if config.attention == "performer":
        return PerformerAttention(config, index)
    attention = {"softmax": SoftmaxAttention, "linformer": LinformerAttention,
                 "cosformer": CosformerAttention}[config.attention]
    return attention(config)
