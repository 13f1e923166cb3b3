"""Parameter counts and bytes from a config alone, without allocating the model.

Paper-size MemoryFormers do not fit this machine (MemoryFormer-base holds about 6.6 B table
values, 26 GiB in fp32), so their sizes must come from arithmetic; a test checks the arithmetic
against models built on the meta device.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.models.config import TABLE_BYTES_PER_VALUE, ModelConfig

PARAM_BYTES = 4  # every parameter is fp32


@dataclass(frozen=True)
class ModelSize:
    table_params: int  # hash-table values, all blocks, and a dense model's n-gram table
    other_params: int  # embedding, norms, linear layers, LM head
    block_table_params: int  # per block
    block_other_params: int  # per block
    embedding_params: int  # token embedding and LM head (inside other_params)

    @property
    def total_params(self) -> int:
        return self.table_params + self.other_params

    @property
    def non_embedding_params(self) -> int:
        """All but the token embedding and the LM head: the count scaling laws use (Kaplan et
        al. 2020). Hash tables and an n-gram table count: they are what a model trades for."""
        return self.total_params - self.embedding_params

    @property
    def table_bytes(self) -> int:
        return self.table_params * TABLE_BYTES_PER_VALUE

    @property
    def other_bytes(self) -> int:
        return self.other_params * PARAM_BYTES

    @property
    def total_bytes(self) -> int:
        return self.table_bytes + self.other_bytes


def attention_param_count(config: ModelConfig) -> int:
    """Parameters of one block's attention: Linformer's E and F (k, context_length), else none
    (Performer's random features are a buffer, not trained)."""
    if config.attention == "linformer":
        return 2 * config.resolved_attention_features * config.context_length
    return 0


def block_param_counts(config: ModelConfig) -> tuple[int, int]:
    """(table values, other parameters) of one block."""
    d, hidden = config.d_model, config.ffn_hidden
    norm = 2 * d  # LayerNorm weight and bias
    attention = attention_param_count(config)
    if config.kind == "dense":
        qkv, proj = 3 * d * d + 3 * d, d * d + d
        mlp = d * hidden + hidden + hidden * d + d
        return 0, 2 * norm + qkv + proj + mlp + attention
    tables = sum(spec.table_values for spec in config.memory_layers())
    # attention norm, FFN input norm, FFN middle norm
    return tables, 2 * norm + 2 * hidden + attention


def ngram_param_count(config: ModelConfig) -> int:
    """Values of the hashed n-gram table (harness.models.ngram); 0 when it is off."""
    return config.ngram_rows * config.d_model if config.ngram_order else 0


def model_size(config: ModelConfig) -> ModelSize:
    block_tables, block_other = block_param_counts(config)
    embedding = 2 * config.vocab_size * config.d_model  # token embedding and untied LM head
    return ModelSize(
        table_params=config.n_layer * block_tables + ngram_param_count(config),
        other_params=config.n_layer * block_other + embedding + 2 * config.d_model,  # final norm
        block_table_params=block_tables,
        block_other_params=block_other,
        embedding_params=embedding,
    )


def describe(config: ModelConfig) -> dict[str, int | str | None]:
    """One JSON-able row of a config's shape and sizes, as `harness presets` prints it."""
    size = model_size(config)
    memory = config.kind == "memoryformer"
    return {
        "name": config.name,
        "kind": config.kind,
        "n_layer": config.n_layer,
        "d_model": config.d_model,
        "n_head": config.n_head,
        "attention": config.attention,
        "chunk_size": config.chunk_size if memory else None,
        "bucket_bits": config.resolved_bucket_bits if memory else None,
        "num_tables": config.resolved_num_tables if memory else None,
        "ngram_order": config.ngram_order,
        "ngram_rows": config.ngram_rows,
        "params": size.total_params,
        "non_embedding_params": size.non_embedding_params,
        "table_params": size.table_params,
        "block_table_params": size.block_table_params,
        "table_bytes": size.table_bytes,
        "total_bytes": size.total_bytes,
    }
