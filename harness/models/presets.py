"""Named model configs: the paper's six (SPEC section 4) and CPU-sized pairs built the same way.

Each MemoryFormer preset has a dense partner of identical depth, width and heads, so a pair
differs only in its blocks. Paper-size presets build one block here; the nano and micro pairs
train at a useful speed on 2 CPU cores.
"""

from __future__ import annotations

from typing import Any

from harness.models.config import ConfigError, ModelConfig

# (dense name, MemoryFormer name, layers, width, heads, vocab, context)
_PAIRS = (
    ("pythia-70m", "memoryformer-tiny", 6, 512, 8, 50304, 2048),
    ("pythia-160m", "memoryformer-small", 12, 768, 12, 50304, 2048),
    ("pythia-410m", "memoryformer-base", 24, 1024, 16, 50304, 2048),
    # CPU-sized: a small BPE vocabulary (the training data sets the real one) and short context.
    ("dense-nano", "memoryformer-nano", 4, 128, 4, 2048, 256),
    ("dense-micro", "memoryformer-micro", 6, 256, 8, 2048, 512),
)


def _build() -> dict[str, ModelConfig]:
    presets = {}
    for dense, memory, layers, width, heads, vocab, context in _PAIRS:
        shape = dict(n_layer=layers, d_model=width, n_head=heads, vocab_size=vocab,
                     context_length=context)
        presets[dense] = ModelConfig(name=dense, kind="dense", **shape)
        presets[memory] = ModelConfig(name=memory, kind="memoryformer", **shape)
    return presets


def preset_names() -> list[str]:
    return [name for pair in _PAIRS for name in pair[:2]]


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The named config, with field overrides applied and validated."""
    presets = _build()
    if name not in presets:
        raise ConfigError("preset", f"{name!r} is not a preset; allowed: {', '.join(presets)}")
    return presets[name].replace(**overrides)


def pair_of(name: str) -> str:
    """The dense partner of a MemoryFormer preset, or the MemoryFormer partner of a dense one."""
    for dense, memory, *_ in _PAIRS:
        if name in (dense, memory):
            return memory if name == dense else dense
    raise ConfigError("preset", f"{name!r} is not a preset; allowed: {', '.join(preset_names())}")
