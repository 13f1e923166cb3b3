"""Forward FLOPs of both block kinds and the whole model, from a config alone (pure arithmetic).

Convention (the same as `harness.metrics.flops`, whose fvcore count a test holds equal to these
formulas for every preset and a range of knobs): one multiply-add = 1 FLOP, as fvcore and the
paper count (SPEC section 5). Two figures are kept apart:

- matrix-like (`attention`, `non_attention`, `total`): multiply-adds of matrix products, which is
  what the paper's Table 1 counts: linear layers (weight only), QK^T and AV of attention (the full
  s x s score matrix, causal or not, as the paper counts 2 s^2 d), the memory layers' weighted row
  sums (one per gathered value, Eq. 11) and SimHash's +-1 combinations when b != c (c * b per table
  and token, counted as the multiply-adds of the einsum that computes them). The efficient
  attentions of Table 2 count their contractions the same way, as their chunkwise form runs them
  (`harness.models.attention`): inside each chunk of C positions the (C, C) scores and their
  weighted values, quadratic in C like softmax's full matrix; across chunks one state per chunk
  (a product summed over the chunk's positions, then a running sum over chunks, elementwise) and
  its read-out by the queries; Linformer's E K and F V likewise, and Performer's random-feature
  projections w^T x. So they grow like s C and s f hs where softmax's 2 s^2 d grows like s^2.
  A sequence is padded to a whole number of chunks and the padding is counted: it is computed.
- `elementwise`: everything else that computes, one FLOP per output value of each elementwise op,
  transcendental or not (add, mul, div, neg, abs, compare, sigmoid, gelu, exp, relu, clamp,
  cumsum; biases and residuals), one per input value of a reduction (sum, prod, amax),
  LAYER_NORM_PER_VALUE per normalised value and SOFTMAX_PER_SCORE per attention score.

Reads (embedding lookup, index_select, slicing), views, casts and concatenation cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.models.config import MemoryLayerSpec, ModelConfig
from harness.models.sizes import model_size

# A training step costs 3 forwards: the forward, the input gradient and the weight (or table)
# gradient, each costed as one forward pass. For nn.Linear the two gradients are exactly a forward's
# multiply-adds each; for a memory layer they are the gradient of each read row's weight p
# (dy . T[idx], one multiply-add per value read) and the scatter of p dy into the read rows (one
# per value written), so the same count holds. Hash, weight and optimiser work are not counted.
TRAINING_FLOPS_FACTOR = 3
# mean, centre, variance (one multiply-add), scale by 1/std, affine (one multiply-add)
LAYER_NORM_PER_VALUE = 5
# scale by 1/sqrt(hs), running max, exp(x - max), sum, divide; the causal mask is a select
SOFTMAX_PER_SCORE = 5
SOFTMAX_PER_VALUE = SOFTMAX_PER_SCORE - 1  # an explicit softmax op; the scale is a mul before it
# a memory layer's hash and weight per table and token: per bit [h >= 0], bit * 2^j, sum of
# bits, |h|, 2 * |h|, / t, sigmoid, product of the factors; plus 1 for the table's row offset
HASH_PER_BIT = 8
L1_PER_BIT = 2  # `l1` weighting: |h| again and its sum, plus 1 per table for the product with p
# the n-gram hash (harness.models.ngram) per token: multiply, add and mod per id after the first;
# then times MIX, two mods, + 1 and the mask of the first positions
NGRAM_HASH_PER_ID = 3
NGRAM_HASH_FIXED = 2


class Totals:
    """`total` (the paper's figure) and `total_with_elementwise` of a forward count."""

    attention: int
    non_attention: int
    elementwise: int

    @property
    def total(self) -> int:
        return self.attention + self.non_attention

    @property
    def total_with_elementwise(self) -> int:
        return self.total + self.elementwise


@dataclass(frozen=True)
class ForwardCost(Totals):
    """FLOPs of one forward pass (of a block or the whole model) over batch x seq_len tokens."""

    attention: int  # QK^T and AV multiply-adds
    non_attention: int  # every other matrix-like multiply-add
    elementwise: int  # norms, softmax, rotary, activations, adds, hash and weights
    # matrix-like multiply-adds per submodule, keyed by the module's name in the built module
    parts: dict[str, int] = field(default_factory=dict)


def memory_layer_matrix(spec: MemoryLayerSpec, tokens: int) -> int:
    """Weighted row sums (K x out per token, Eq. 11) plus SimHash combinations when b != c."""
    sums = tokens * spec.num_tables * spec.out_features
    simhash = 0 if spec.bucket_bits == spec.chunk_size else (
        tokens * spec.num_tables * spec.chunk_size * spec.bucket_bits)
    return sums + simhash


def memory_layer_elementwise(spec: MemoryLayerSpec, tokens: int, weighting: str) -> int:
    """Hash and weight of every table (the weighted sum itself is matrix-like)."""
    per_table = HASH_PER_BIT * spec.bucket_bits + 1
    if weighting == "l1":
        per_table += L1_PER_BIT * spec.bucket_bits + 1
    return tokens * spec.num_tables * per_table


def rotary_dims(config: ModelConfig) -> int:
    return int(config.head_dim * config.rotary_pct) // 2 * 2


def attention_cost(config: ModelConfig, seq_len: int, batch: int) -> tuple[int, int]:
    """(matrix, elementwise) of causal attention on projected Q, K, V: (B, T, d) each."""
    rot = rotary_dims(config)
    # per rotated tensor (Q and K): neg of half the rotated dims, x*cos, rot*sin and their sum
    rotary = 2 * batch * seq_len * config.n_head * (rot // 2 + 3 * rot)
    kinds = {"softmax": _softmax, "linformer": _linformer, "cosformer": _cosformer,
             "performer": _performer}
    chunks = Chunks.of(config, seq_len, batch)
    matrix, elementwise = kinds[config.attention](config, chunks, config.head_dim)
    return matrix, elementwise + rotary


def _softmax(config: ModelConfig, chunks: Chunks, hs: int) -> tuple[int, int]:
    scores = chunks.rows * chunks.seq  # (B, H, T, T), the full matrix as the paper counts it
    return 2 * scores * hs, scores * SOFTMAX_PER_SCORE  # QK^T and AV


def chunk_layout(seq: int, chunk: int) -> tuple[int, int]:
    """(chunk length, padding) of a sequence of `seq` positions, as the linear attentions cut it
    (`harness.models.attention`): a sequence no longer than one chunk is a single chunk of its
    own length (no padding); otherwise the last chunk is padded.

    Python ints: under a trace (FLOP counting) the sizes are traced values, and their arithmetic
    would be recorded as tensor ops."""
    seq = int(seq)
    size = min(chunk, seq)
    return size, -seq % size


@dataclass(frozen=True)
class Chunks:
    """The chunk layout of the linear attentions over (B, H) heads of seq positions."""

    heads: int  # B x H
    seq: int
    size: int  # C: positions per chunk (the whole sequence when it is shorter)
    padded: int  # seq rounded up to a multiple of C

    @classmethod
    def of(cls, config: ModelConfig, seq_len: int, batch: int) -> Chunks:
        size, pad = chunk_layout(seq_len, config.attention_chunk)
        return cls(batch * config.n_head, seq_len, size, seq_len + pad)

    @property
    def rows(self) -> int:  # query rows, (B, H, T)
        return self.heads * self.seq

    @property
    def padded_rows(self) -> int:  # (B, H, n, C)
        return self.heads * self.padded

    @property
    def state_rows(self) -> int:  # rows of the chunks 0..n-2, whose sums are carried forward
        return self.heads * (self.padded - self.size)

    @property
    def carried(self) -> int:  # adds of one chunk's state to the total so far: chunks 1..n-2
        return self.heads * max(self.padded // self.size - 2, 0)


def _linformer(config: ModelConfig, chunks: Chunks, hs: int) -> tuple[int, int]:
    k, c, rows = config.resolved_attention_features, chunks.size, chunks.padded_rows
    # E K and F V summed per chunk; their read-outs by q and by the softmax weights; inside a
    # chunk q k^T, its product with E, the weights' product with F and that with V
    matrix = 2 * chunks.state_rows * k * hs + 2 * rows * k * hs + 2 * rows * c * (hs + k)
    # the two running sums over chunks; the query's scale and the output's; across + within
    # for the k scores and the hs outputs; softmax of the k scores
    elementwise = (2 * chunks.carried * k * hs + 2 * chunks.rows * hs
                   + rows * (k + hs) + rows * k * SOFTMAX_PER_VALUE)
    return matrix, elementwise


def linear_attention_cost(chunks: Chunks, features: int, hs: int) -> tuple[int, int]:
    """`attention.causal_linear_attention` with f features, on values with a ones column."""
    f, c, e, rows = features, chunks.size, hs + 1, chunks.padded_rows
    # within a chunk: phi(q) phi(k)^T and its weighted values; each chunk's phi(k)^T [v, 1]
    # (the last chunk's is never read); the queries' read-out of the state before their chunk
    matrix = rows * c * (f + e) + chunks.state_rows * f * e + rows * f * e
    # the running sum of the chunk states; within + across; clamp_min and divide
    elementwise = chunks.carried * f * e + rows * e + chunks.rows * (1 + hs)
    return matrix, elementwise


def _cosformer(config: ModelConfig, chunks: Chunks, hs: int) -> tuple[int, int]:
    matrix, elementwise = linear_attention_cost(chunks, 2 * hs, hs)
    # per Q and K: relu, times cos and times sin
    return matrix, elementwise + 2 * 3 * chunks.rows * hs


def _performer(config: ModelConfig, chunks: Chunks, hs: int) -> tuple[int, int]:
    m, rows = config.resolved_attention_features, chunks.rows
    matrix, elementwise = linear_attention_cost(chunks, m, hs)
    matrix += 2 * rows * m * hs  # w^T x of Q and K, the random feature projections
    # keys: k * k, its sum, scaled by 1/(2 sqrt(hs)); minus |w|^2/2 and |x|^2/2; exp
    keys = 2 * rows * hs + rows + 3 * rows * m
    queries = 4 * rows * m  # plus |w|^2/2, max over features, minus the max, exp
    return matrix, elementwise + keys + queries


def block_cost(config: ModelConfig, seq_len: int, batch: int = 1) -> ForwardCost:
    """One block's forward FLOPs on input (batch, seq_len, d_model)."""
    if config.kind == "dense":
        return _dense_block(config, seq_len, batch)
    return _memoryformer_block(config, seq_len, batch)


def _memoryformer_block(config: ModelConfig, seq_len: int, batch: int) -> ForwardCost:
    tokens, d, hidden = batch * seq_len, config.d_model, config.ffn_hidden
    attn_matrix, attn_elementwise = attention_cost(config, seq_len, batch)
    specs = config.memory_layers()
    names = {"qkv": "qkv", "ffn_in": "ffn.layer_in", "ffn_out": "ffn.layer_out"}
    parts = {names[spec.name]: memory_layer_matrix(spec, tokens) for spec in specs}
    elementwise = (
        attn_elementwise
        + sum(memory_layer_elementwise(spec, tokens, config.weighting) for spec in specs)
        + LAYER_NORM_PER_VALUE * tokens * (2 * d + hidden)  # attention, FFN input, FFN middle
        + 2 * tokens * d  # two residual adds
        + (tokens * hidden if config.ffn_activation == "gelu" else 0)
    )
    return ForwardCost(attention=attn_matrix, non_attention=sum(parts.values()),
                       elementwise=elementwise, parts={**parts, "attn": attn_matrix})


def _dense_block(config: ModelConfig, seq_len: int, batch: int) -> ForwardCost:
    tokens, d, hidden = batch * seq_len, config.d_model, config.ffn_hidden
    attn_matrix, attn_elementwise = attention_cost(config, seq_len, batch)
    # (in, out) of each linear layer; biases are elementwise adds
    linears = {"qkv": (d, 3 * d), "proj": (d, d), "mlp.0": (d, hidden), "mlp.2": (hidden, d)}
    parts = {name: tokens * n_in * n_out for name, (n_in, n_out) in linears.items()}
    elementwise = (
        attn_elementwise
        + tokens * sum(n_out for _, n_out in linears.values())  # biases
        + LAYER_NORM_PER_VALUE * tokens * 2 * d  # the two parallel branches' norms
        + tokens * hidden  # GELU
        + 2 * tokens * d  # x + attention + MLP
    )
    return ForwardCost(attention=attn_matrix, non_attention=sum(parts.values()),
                       elementwise=elementwise, parts={**parts, "attn": attn_matrix})


def ngram_elementwise(config: ModelConfig, tokens: int) -> int:
    """The n-gram embedding of a dense control: its hash, and one add of d per token (its rows
    are a read, like the token embedding's). 0 when it is off."""
    if not config.ngram_order:
        return 0
    return tokens * (NGRAM_HASH_PER_ID * config.ngram_order + NGRAM_HASH_FIXED + config.d_model)


def model_cost(config: ModelConfig, seq_len: int, batch: int = 1) -> ForwardCost:
    """The whole language model: blocks, final norm and LM head; embeddings are reads (an
    n-gram embedding's hash and add are elementwise)."""
    block = block_cost(config, seq_len, batch)
    tokens = batch * seq_len
    head = tokens * config.d_model * config.vocab_size
    parts = {f"blocks.{i}.{name}": flops
             for i in range(config.n_layer) for name, flops in block.parts.items()}
    return ForwardCost(
        attention=config.n_layer * block.attention,
        non_attention=config.n_layer * block.non_attention + head,
        elementwise=config.n_layer * block.elementwise + LAYER_NORM_PER_VALUE * tokens
        * config.d_model + ngram_elementwise(config, tokens),
        parts={**parts, "head": head},
    )


def flops_per_token(config: ModelConfig, seq_len: int, elementwise: bool = False) -> int:
    """Forward FLOPs per token of the whole model on sequences of seq_len tokens.

    Matrix-like multiply-adds only unless `elementwise`. Attention makes it grow with seq_len.
    Forward only; a training step's FLOPs are TRAINING_FLOPS_FACTOR times these.
    """
    cost = model_cost(config, seq_len)
    flops = cost.total_with_elementwise if elementwise else cost.total
    return flops // seq_len  # every term is a multiple of seq_len


def training_flops_per_token(config: ModelConfig, seq_len: int) -> int:
    """FLOPs per token of one training step (forward and backward), at TRAINING_FLOPS_FACTOR."""
    return TRAINING_FLOPS_FACTOR * flops_per_token(config, seq_len)


def recorded_costs(config: ModelConfig, seq_len: int) -> dict[str, float]:
    """What the report shows beside the exact count, as a run records it ("cost/" + each key).

    The paper's approximation per token: n_layer (block + 2 s d) + d V, block = 6 K d for a
    MemoryFormer (six d-wide memory layers, K d each) or (4 + 2 mlp_ratio) d^2 for a dense one.
    One block's share of the exact count (LM head d V removed), with and without attention's
    2 s d. MemoryFormer only: the Q layer alone (Table 3), K d weighted sums per token and
    K 2^b d table values; the Memory Block's table bytes per block (Table 5), a block's tables
    less its three d-wide Q, K, V layers.
    """
    d, s, vocab, layers = config.d_model, seq_len, config.vocab_size, config.n_layer
    k, bits = config.resolved_num_tables, config.resolved_bucket_bits
    memory = config.kind == "memoryformer"
    block = 6 * k * d if memory else (4 + 2 * config.mlp_ratio) * d * d
    block_flops = (flops_per_token(config, seq_len) - d * vocab) / layers
    costs = {
        "paper_flops_per_token": float(layers * (block + 2 * s * d) + d * vocab),
        "block_flops_per_token": block_flops,
        "block_flops_per_token_no_attention": block_flops - 2 * s * d,
    }
    if not memory:
        return costs
    size = model_size(config)
    q_table_bytes = k * 2.0**bits * d * (size.table_bytes / size.table_params)
    return {**costs, "q_flops_per_token": float(k * d), "q_table_bytes": q_table_bytes,
            "ffn_table_bytes_per_block": size.table_bytes / layers - 3 * q_table_bytes}


def paper_non_attention(config: ModelConfig, seq_len: int) -> int | None:
    """The paper's approximation of a MemoryFormer block's memory layers, 6 K s d (Table 1)."""
    if config.kind != "memoryformer":
        return None
    return 6 * config.resolved_num_tables * seq_len * config.d_model
