"""The language model around either block kind: embedding, blocks, final norm, untied LM head.

Both kinds share everything outside the blocks, so a dense-vs-MemoryFormer comparison isolates
the blocks (SPEC section 3). The LM head is the only fully-connected layer MemoryFormer keeps.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.models.config import ModelConfig, format_bytes
from harness.models.dense import DenseBlock
from harness.models.memoryformer import MemoryFormerBlock
from harness.models.ngram import NgramEmbedding
from harness.models.sizes import model_size

BLOCKS = {"memoryformer": MemoryFormerBlock, "dense": DenseBlock}


def build_block(config: ModelConfig, index: int = 0) -> nn.Module:
    """One block of the model: what FLOP counts and benchmarks of paper-size presets build."""
    return BLOCKS[config.kind](config, index)


class LanguageModel(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        # the dense kind's optional sparse-capacity control (ngram.py); None when off
        self.ngram = None if not config.ngram_order else NgramEmbedding(
            config.ngram_order, config.ngram_rows, config.d_model, config.context_length,
            init_std=config.init_std)
        self.blocks = nn.ModuleList(build_block(config, i) for i in range(config.n_layer))
        self.norm = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=config.init_std)
        nn.init.normal_(self.head.weight, std=config.init_std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) int64 -> logits (B, T, vocab_size)."""
        if tokens.size(-1) > self.config.context_length:
            raise ValueError(f"sequence of {tokens.size(-1)} tokens is longer than "
                             f"context_length={self.config.context_length}")
        x = self.embed(tokens)  # (B, T, d)
        if self.ngram is not None:
            x = x + self.ngram(tokens)  # (B, T, d)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))  # (B, T, vocab)


def build_model(config: ModelConfig) -> LanguageModel:
    """Build the whole model in CPU memory, refusing up front if its parameters cannot fit."""
    need = model_size(config).total_bytes
    available = available_memory_bytes()
    if available is not None and need > available:
        raise MemoryError(
            f"{config.name} needs {format_bytes(need)} for its parameters alone and this machine "
            f"has {format_bytes(available)} available; build one block with build_block(config) "
            f"or the whole model under `with torch.device('meta')` to count it"
        )
    return LanguageModel(config)


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
