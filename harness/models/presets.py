"""Named model configs: the paper's six (SPEC section 4) and CPU-sized pairs built the same way.

Each MemoryFormer preset has a dense partner of identical depth, width and heads, so a pair
differs only in its blocks. Paper-size presets build one block here; the nano, n160, n192, n224
and micro pairs (a scaling series of five sizes) train at a useful speed on 2 CPU cores.
"""

from __future__ import annotations

from typing import Any

from harness.models.config import ATTENTIONS, ConfigError, ModelConfig

# (dense name, MemoryFormer name, layers, width, heads, vocab, context)
_PAIRS = (
    ("pythia-70m", "memoryformer-tiny", 6, 512, 8, 50304, 2048),
    ("pythia-160m", "memoryformer-small", 12, 768, 12, 50304, 2048),
    ("pythia-410m", "memoryformer-base", 24, 1024, 16, 50304, 2048),
    # CPU-sized: a small BPE vocabulary (the training data sets the real one) and short context.
    ("dense-nano", "memoryformer-nano", 4, 128, 4, 2048, 256),
    # A CPU scaling series between nano and micro: head size 32 and nano's context, so every
    # size trains on the same sequences; named by width. MemoryFormer knobs stay tied (c = 8,
    # b = c, K = d / 8).
    ("dense-n160", "memoryformer-n160", 4, 160, 5, 2048, 256),
    ("dense-n192", "memoryformer-n192", 5, 192, 6, 2048, 256),
    ("dense-n224", "memoryformer-n224", 6, 224, 7, 2048, 256),
    ("dense-micro", "memoryformer-micro", 6, 256, 8, 2048, 512),
)


# Table 2 swaps efficient attention into Pythia-410M; the same swap on its MemoryFormer partner
# and on the nano pair (what the shipped study trains) is named "<preset>-<attention>".
_WITH_ATTENTION = ("pythia-410m", "memoryformer-base", "dense-nano", "memoryformer-nano")
_EFFICIENT = tuple(a for a in ATTENTIONS if a != "softmax")


def _variants() -> list[tuple[str, str]]:
    """(base preset, attention) of every attention variant, in listing order."""
    return [(base, attention) for base in _WITH_ATTENTION for attention in _EFFICIENT]


def _build() -> dict[str, ModelConfig]:
    presets = {}
    for dense, memory, layers, width, heads, vocab, context in _PAIRS:
        shape = dict(n_layer=layers, d_model=width, n_head=heads, vocab_size=vocab,
                     context_length=context)
        presets[dense] = ModelConfig(name=dense, kind="dense", **shape)
        presets[memory] = ModelConfig(name=memory, kind="memoryformer", **shape)
    for base, attention in _variants():
        name = f"{base}-{attention}"
        presets[name] = presets[base].replace(name=name, attention=attention)
    return presets


def preset_names() -> list[str]:
    names = [name for pair in _PAIRS for name in pair[:2]]
    return names + [f"{base}-{attention}" for base, attention in _variants()]


def base_preset(name: str) -> str:
    """The preset an attention variant was made from ("pythia-410m-performer" -> "pythia-410m");
    other names unchanged."""
    for base, attention in _variants():
        if name == f"{base}-{attention}":
            return base
    return name


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The named config, with field overrides applied and validated."""
    presets = _build()
    if name not in presets:
        raise ConfigError("preset", f"{name!r} is not a preset; allowed: {', '.join(presets)}")
    return presets[name].replace(**overrides)


def pair_of(name: str) -> str:
    """The dense partner of a MemoryFormer preset, or the MemoryFormer partner of a dense one
    (of the same attention for an attention variant)."""
    base = base_preset(name)
    suffix = name[len(base):]
    for dense, memory, *_ in _PAIRS:
        if base in (dense, memory):
            return (memory if base == dense else dense) + suffix
    raise ConfigError("preset", f"{name!r} is not a preset; allowed: {', '.join(preset_names())}")
