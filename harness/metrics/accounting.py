"""Per-block compute accounting of a config: what `harness flops PRESET` reports.

Analytic (harness.models.cost, held equal to fvcore's count by tests), so paper-size presets
report without being built. The convention is in `harness.metrics.flops`: `attention`,
`non_attention` and `total` count multiply-adds of matrix products, as the paper's Table 1 does;
`elementwise` work is reported beside them, never inside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.errors import ConfigError
from harness.models import ModelConfig, model_size, preset
from harness.models.config import format_bytes
from harness.models.cost import block_cost, flops_per_token, paper_non_attention

# block.parts key -> MemoryLayerSpec name, for the memory-layer breakdown
_MEMORY_PARTS = {"qkv": "qkv", "ffn.layer_in": "ffn_in", "ffn.layer_out": "ffn_out"}


def block_flops(config: ModelConfig, seq_len: int | None = None) -> dict[str, Any]:
    """One block's forward FLOPs at batch 1 and the whole model's size, as a JSON-able dict.

    Keys: attention_kind and attention_features (the config's attention, Linformer's k or
    Performer's m); attention, non_attention, total (per block, exact); elementwise and
    total_with_elementwise; layers (matrix-like FLOPs per layer of the block); memory_layers
    (exact weighted sums per memory layer, MemoryFormer only) and paper_non_attention /
    paper_total (the paper's 6 K s d approximation, MemoryFormer only, else None);
    model_flops_per_token (whole forward, blocks and LM head); params and table_bytes (whole
    model, analytic).
    """
    seq_len = config.context_length if seq_len is None else seq_len
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or not (
            1 <= seq_len <= config.context_length):
        raise ConfigError("seq_len", f"{seq_len!r} is not allowed; allowed: integers "
                          f"1..{config.context_length} (context_length of {config.name})")
    cost = block_cost(config, seq_len)
    size = model_size(config)
    layers = {name: n for name, n in cost.parts.items() if name != "attn"}
    memory = config.kind == "memoryformer"
    paper = paper_non_attention(config, seq_len)
    return {
        "name": config.name,
        "kind": config.kind,
        "seq_len": seq_len,
        "n_layer": config.n_layer,
        "d_model": config.d_model,
        "num_tables": config.resolved_num_tables if memory else None,
        "attention_kind": config.attention,
        "attention_features": config.resolved_attention_features,
        "attention": cost.attention,
        "non_attention": cost.non_attention,
        "total": cost.total,
        "elementwise": cost.elementwise,
        "total_with_elementwise": cost.total_with_elementwise,
        "layers": layers,
        "memory_layers": {_MEMORY_PARTS[k]: v for k, v in layers.items()} if memory else None,
        "paper_non_attention": paper,
        "paper_total": None if paper is None else cost.attention + paper,
        "model_flops_per_token": flops_per_token(config, seq_len),
        "params": size.total_params,
        "table_params": size.table_params,
        "table_bytes": size.table_bytes,
    }


def flops_report(preset_name: str, seq_len: int | None = None, *, fvcore: bool = False,
                 **overrides: Any) -> dict[str, Any]:
    """`block_flops` of a named preset (with config overrides); seq_len defaults to its context.

    With fvcore=True one block is also built and traced, and its fvcore count must equal the
    formula (key `fvcore_total_with_elementwise`); a difference raises rather than misreports.
    """
    report = block_flops(preset(preset_name, **overrides), seq_len)
    if fvcore:
        from harness.metrics.flops import count_block_flops

        counted = count_block_flops(preset(preset_name, **overrides), report["seq_len"])
        measured = (counted.attention, counted.non_attention, counted.elementwise)
        expected = (report["attention"], report["non_attention"], report["elementwise"])
        if measured != expected:
            raise AssertionError(f"{preset_name}: fvcore counts (attention, non_attention, "
                                 f"elementwise) = {measured}, the formulas {expected}")
        report["fvcore_total_with_elementwise"] = counted.total_with_elementwise
    return report


def format_flops(reports: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> str:
    """A table of one or more `block_flops` dicts; G = 1e9 FLOPs, 1 multiply-add = 1 FLOP."""
    rows = [reports] if isinstance(reports, Mapping) else list(reports)
    seqs = sorted({row["seq_len"] for row in rows})
    lines = [
        f"Forward FLOPs per block, batch 1, s = {', '.join(map(str, seqs))} "
        "(1 multiply-add = 1 FLOP, G = 1e9)",
        f"{'preset':<28} {'attention':>10} {'non-attn':>9} {'total':>9} {'6Ksd':>8} "
        f"{'paper tot':>10} {'elementw':>9} {'params':>9} {'tables':>11}",
    ]
    for row in rows:
        lines.append(
            f"{_label(row):<28} {_g(row['attention']):>10} {_g(row['non_attention']):>9} "
            f"{_g(row['total']):>9} {_g(row['paper_non_attention']):>8} "
            f"{_g(row['paper_total']):>10} {_g(row['elementwise']):>9} "
            f"{row['params'] / 1e6:>8.1f}M {format_bytes(row['table_bytes']):>11}")
    lines.append("per layer (matrix-like multiply-adds per block); whole model forward per token:")
    for row in rows:
        layers = ", ".join(f"{name} {_g(n)}" for name, n in row["layers"].items())
        per_token = row["model_flops_per_token"] / 1e6
        lines.append(f"  {_label(row):<26} {layers}; model {per_token:.1f}M/token")
    lines += [
        "attention = QK^T + AV over the full s x s scores (softmax), or an efficient attention's",
        "contractions (preset+linformer/cosformer/performer); non-attn = every other matrix-like",
        "multiply-add (linear weights, memory-layer weighted row sums, SimHash combinations);",
        "elementwise (norms, softmax, rotary, activations, feature maps, prefix sums, biases,",
        "residuals, hash and weights) is counted apart. 6Ksd = the paper's approximation of the",
        "memory layers (Table 1). Counted by the formulas in harness/models/cost.py, which",
        "equal fvcore's count of the built block (tested; --fvcore counts it here as well).",
    ]
    return "\n".join(lines)


def _label(row: Mapping[str, Any]) -> str:
    """The preset's name, with its attention when that is not the paper's softmax."""
    kind = row.get("attention_kind", "softmax")
    return row["name"] if kind == "softmax" else f"{row['name']}+{kind}"


def _g(flops: int | None) -> str:
    return "-" if flops is None else f"{flops / 1e9:.3f}G"
