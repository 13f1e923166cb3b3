"""Pure-torch models: the MemoryLayer, both block kinds, the language model, configs, presets."""

from harness.models.config import ConfigError, MemoryLayerSpec, ModelConfig
from harness.models.lm import LanguageModel, build_block, build_model
from harness.models.memory_layer import MemoryLayer
from harness.models.presets import pair_of, preset, preset_names
from harness.models.sizes import ModelSize, model_size

__all__ = [
    "ConfigError", "LanguageModel", "MemoryLayer", "MemoryLayerSpec", "ModelConfig", "ModelSize",
    "build_block", "build_model", "model_size", "pair_of", "preset", "preset_names",
]
