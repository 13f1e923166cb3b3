"""The one model config: a frozen dataclass validated on creation.

Both model kinds (MemoryFormer and the dense Pythia-style baseline) share it, so a study can swap
`kind` and keep everything else. Memory-layer knobs are ignored by the dense kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.errors import ConfigError
from harness.models.memory_layer import KERNELS, WEIGHTINGS
from harness.validate import ConfigFields, check_choice, check_int, check_number, check_str

KINDS = ("memoryformer", "dense")
FFN_ACTIVATIONS = ("none", "gelu")
# softmax is the paper's; the other three are Table 2's efficient attentions, in either block
ATTENTIONS = ("softmax", "linformer", "cosformer", "performer")
TABLE_BYTES_PER_VALUE = 4  # tables are stored in fp32


@dataclass(frozen=True)
class MemoryLayerSpec:
    """Shape of one memory layer inside a block, derived from a ModelConfig."""

    name: str
    in_features: int
    out_features: int
    chunk_size: int
    bucket_bits: int
    num_tables: int

    @property
    def table_values(self) -> int:
        # (num_tables, 2**bucket_bits, out_features): SPEC section 1, item 3
        return self.num_tables * 2**self.bucket_bits * self.out_features


@dataclass(frozen=True)
class ModelConfig(ConfigFields):
    name: str = "custom"
    kind: str = "memoryformer"  # one of KINDS
    vocab_size: int = 50304  # Pythia pads GPT-NeoX's 50,277 tokens to a multiple of 128
    context_length: int = 2048
    n_layer: int = 6
    d_model: int = 512
    n_head: int = 8
    rotary_pct: float = 0.25  # share of each head's dims that get rotary embeddings (Pythia)
    rotary_base: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02  # embedding, linear layers and hash tables alike

    # Memory layer knobs (SPEC section 2). None ties a knob to the paper: b = c, K = d / c.
    chunk_size: int = 8
    bucket_bits: int | None = None
    num_tables: int | None = None
    expansion_bits: int = 2  # FFN hidden width is (c + e) * K, layer-2 tables have 2**(b + e) rows
    temperature: float = 1.0
    weighting: str = "paper"  # one of WEIGHTINGS
    ffn_activation: str = "none"  # one of FFN_ACTIVATIONS; the paper uses none (Table 6)
    hash_seed: int = 0  # seeds the permutation stream, SimHash hyperplanes, Performer features
    max_layer_table_gib: float = 8.0  # refuse a single memory layer whose tables exceed this
    # one of KERNELS, the lookup path of every memory layer: auto = the fused CPU kernel where it
    # applies, else the reference path; HARNESS_FUSED_LOOKUP=0 still overrides auto to reference
    # everywhere (and makes fused an error), without changing the config. Same results either way.
    kernel: str = "auto"

    # Dense baseline
    mlp_ratio: int = 4
    # Hashed n-gram embedding (dense only; harness.models.ngram): the sparse-capacity control, a
    # table of ngram_rows x d_model added to the token embedding. 0 = off; 2 = bigrams, ...
    ngram_order: int = 0
    ngram_rows: int = 0  # row 0 is reserved for the first ngram_order - 1 positions

    # Attention of both block kinds (Table 2). None ties attention_features to the attention:
    # Linformer's k = context_length // 8 (k = 256 at Pythia's 2048 context, the Linformer paper's
    # main setting; 32 at a CPU preset's 256), Performer's m = hs ln hs (FAVOR+'s m = d log d
    # for a head of hs dims: 266 at hs = 64). Softmax and cosFormer have no such knob.
    attention: str = "softmax"  # one of ATTENTIONS
    attention_features: int | None = None
    # Performer: redraw the random features every this many training forward calls (0 = never);
    # 1000 is the reference FAVOR+ implementation's interval (performer-pytorch).
    feature_redraw: int = 1000
    # Linformer, cosFormer and Performer run chunkwise: quadratic inside a chunk of this many
    # positions, a state carried between chunks (harness.models.attention). The chunk length
    # changes speed and the FLOP count, not the maths (equal up to float rounding).
    attention_chunk: int = 64

    def __post_init__(self) -> None:
        _validate(self)

    # Derived values. Stored fields keep None so that `replace(chunk_size=4)` re-ties b and K.
    @property
    def resolved_bucket_bits(self) -> int:
        return self.chunk_size if self.bucket_bits is None else self.bucket_bits

    @property
    def resolved_num_tables(self) -> int:
        return self.d_model // self.chunk_size if self.num_tables is None else self.num_tables

    @property
    def resolved_attention_features(self) -> int | None:
        """Linformer's projected length k or Performer's feature count m; None for the others."""
        if self.attention not in ("linformer", "performer"):
            return None
        if self.attention_features is not None:
            return self.attention_features
        if self.attention == "linformer":
            return max(self.context_length // 8, 1)
        return max(int(self.head_dim * math.log(self.head_dim)), 1)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def ffn_hidden(self) -> int:
        if self.kind == "dense":
            return self.mlp_ratio * self.d_model
        return (self.chunk_size + self.expansion_bits) * self.resolved_num_tables

    def memory_layers(self) -> list[MemoryLayerSpec]:
        """The memory layers of one block (empty for the dense kind), SPEC section 3."""
        if self.kind != "memoryformer":
            return []
        d, c, e = self.d_model, self.chunk_size, self.expansion_bits
        b, k = self.resolved_bucket_bits, self.resolved_num_tables
        return [
            # Q, K and V share one hash of the normed input, so one layer with 3d-wide rows is
            # exactly the paper's three layers: same buckets and weights, tables side by side.
            MemoryLayerSpec("qkv", d, 3 * d, c, b, k),
            MemoryLayerSpec("ffn_in", d, self.ffn_hidden, c, b, k),
            MemoryLayerSpec("ffn_out", self.ffn_hidden, d, c + e, b + e, k),
        ]


def _validate(cfg: ModelConfig) -> None:
    check_str("name", cfg.name)
    check_choice("kind", cfg.kind, KINDS)
    check_choice("weighting", cfg.weighting, WEIGHTINGS)
    check_choice("kernel", cfg.kernel, KERNELS)
    check_choice("ffn_activation", cfg.ffn_activation, FFN_ACTIVATIONS)
    check_choice("attention", cfg.attention, ATTENTIONS)
    for name in ("vocab_size", "context_length", "n_layer", "d_model", "n_head", "chunk_size",
                 "mlp_ratio", "attention_chunk"):
        check_int(name, getattr(cfg, name), minimum=1)
    check_int("expansion_bits", cfg.expansion_bits, minimum=0)
    check_int("hash_seed", cfg.hash_seed, minimum=0)
    check_int("feature_redraw", cfg.feature_redraw, minimum=0)
    for name in ("bucket_bits", "num_tables", "attention_features"):
        if getattr(cfg, name) is not None:
            check_int(name, getattr(cfg, name), minimum=1)
    for name in ("rotary_base", "norm_eps", "temperature", "max_layer_table_gib"):
        check_number(name, getattr(cfg, name), positive=True)
    check_number("init_std", cfg.init_std)
    check_number("rotary_pct", cfg.rotary_pct, maximum=1)
    if cfg.d_model % cfg.n_head:
        raise ConfigError("n_head", f"{cfg.n_head} does not divide d_model={cfg.d_model}; "
                          f"allowed: a divisor of {cfg.d_model}")
    if cfg.chunk_size > cfg.d_model:
        raise ConfigError("chunk_size", f"{cfg.chunk_size} is wider than d_model={cfg.d_model}; "
                          f"allowed: 1..{cfg.d_model}")
    k = cfg.resolved_attention_features
    if cfg.attention == "linformer" and k > cfg.context_length:
        # E projects a prefix of at most context_length keys: more rows compress nothing
        raise ConfigError("attention_features", f"{k} is longer than context_length="
                          f"{cfg.context_length}, so Linformer would not compress; allowed: "
                          f"1..{cfg.context_length} (or None for context_length // 8)")
    _check_ngram(cfg)
    if cfg.kind == "memoryformer":
        _check_table_memory(cfg)


def _check_ngram(cfg: ModelConfig) -> None:
    check_int("ngram_order", cfg.ngram_order, minimum=0)
    check_int("ngram_rows", cfg.ngram_rows, minimum=0)
    if cfg.kind != "dense":
        for name in ("ngram_order", "ngram_rows"):
            if getattr(cfg, name):
                raise ConfigError(name, f"{getattr(cfg, name)} is for the dense kind only (the "
                                  f"sparse-capacity control), not kind={cfg.kind!r}; allowed: 0")
        return
    if cfg.ngram_order == 0:
        if cfg.ngram_rows:
            raise ConfigError("ngram_rows", f"{cfg.ngram_rows} without an n-gram embedding "
                              "(ngram_order=0); allowed: 0, or set ngram_order >= 1")
        return
    if cfg.ngram_order > cfg.context_length:
        raise ConfigError("ngram_order", f"{cfg.ngram_order} is longer than context_length="
                          f"{cfg.context_length}; allowed: 0..{cfg.context_length}")
    if cfg.ngram_rows < 2:  # row 0 is reserved, so at least one row must take hashed n-grams
        raise ConfigError("ngram_rows", f"{cfg.ngram_rows} rows cannot hold n-grams (row 0 is "
                          "reserved); allowed: integers >= 2 when ngram_order >= 1")
    need = cfg.ngram_rows * cfg.d_model * TABLE_BYTES_PER_VALUE
    if need > cfg.max_layer_table_gib * 2**30:
        fit = int(cfg.max_layer_table_gib * 2**30 // (cfg.d_model * TABLE_BYTES_PER_VALUE))
        raise ConfigError("ngram_rows", f"{cfg.ngram_rows} rows x {cfg.d_model} values = "
                          f"{format_bytes(need)} in fp32, over max_layer_table_gib="
                          f"{cfg.max_layer_table_gib}; allowed: ngram_rows <= {fit} here "
                          "(or raise max_layer_table_gib)")


def _check_table_memory(cfg: ModelConfig) -> None:
    limit = cfg.max_layer_table_gib * 2**30
    for spec in cfg.memory_layers():
        need = spec.table_values * TABLE_BYTES_PER_VALUE
        if need <= limit:
            continue
        row_bytes = spec.num_tables * spec.out_features * TABLE_BYTES_PER_VALUE
        fit = max(int(limit // row_bytes).bit_length() - 1, 0)  # most bits whose tables fit
        # Layers are checked in order, so a failing ffn_out means b fits and e is too large;
        # otherwise blame b, or c where b is tied to it.
        if spec.name == "ffn_out":
            field_name, allowed = "expansion_bits", fit - cfg.resolved_bucket_bits
        else:
            field_name = "chunk_size" if cfg.bucket_bits is None else "bucket_bits"
            allowed = fit
        raise ConfigError(
            field_name,
            f"{getattr(cfg, field_name)} makes the {spec.name} layer's tables "
            f"{spec.num_tables} x 2^{spec.bucket_bits} rows x {spec.out_features} values = "
            f"{format_bytes(need)} in fp32, over max_layer_table_gib={cfg.max_layer_table_gib}; "
            f"allowed: {field_name} <= {max(allowed, 0)} here (or raise max_layer_table_gib)",
        )


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
