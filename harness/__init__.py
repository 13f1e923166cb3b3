"""Benchmark and ablation harness for MemoryFormer (Ding et al., NeurIPS 2024)."""

__version__ = "0.1.0"
