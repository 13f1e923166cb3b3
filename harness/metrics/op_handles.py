"""One FLOP handle per operator our models run, by the convention of `harness.models.cost`.

A handle takes the traced op's inputs and outputs (lists of `torch._C.Value`) and returns a
Counter {key: FLOPs}. Keys in MATRIX_KEYS are matrix-like multiply-adds (Table 1's figures); every
other key is elementwise work. ZERO_COST lists the ops that compute nothing (views, reads, casts,
copies, shape plumbing); they are counted explicitly as 0. An op in neither table is unhandled
and makes a count fail (see `harness.metrics.flops`).

No fvcore import here: the values' shapes come from the traced types directly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from harness.models.cost import LAYER_NORM_PER_VALUE, SOFTMAX_PER_SCORE, SOFTMAX_PER_VALUE

Handle = Callable[[list[Any], list[Any]], Counter]

MATRIX_KEYS = frozenset({"linear", "matmul", "bmm", "einsum", "embedding_bag", "sdpa"})


def shape(value: Any) -> list[int] | None:
    """Sizes of a traced tensor value; None for a non-tensor (such as an absent bias)."""
    return value.type().sizes() if value.isCompleteTensor() else None


def numel(value: Any) -> int:
    sizes = shape(value)
    if sizes is None:
        raise ValueError(f"expected a tensor of known shape, got {value.type()}")
    return math.prod(sizes)


def linear(inputs: list[Any], outputs: list[Any]) -> Counter:
    """x (..., in) @ W (out, in)^T: in multiply-adds per output value; the bias is an add."""
    out = numel(outputs[0])
    counts = Counter({"linear": out * shape(inputs[1])[1]})
    if shape(inputs[2]) is not None:
        counts["linear_bias"] = out
    return counts


def matmul(inputs: list[Any], outputs: list[Any]) -> Counter:
    """matmul / bmm: the contracted width multiply-adds per output value."""
    return Counter({"matmul": numel(outputs[0]) * shape(inputs[0])[-1]})


def bmm(inputs: list[Any], outputs: list[Any]) -> Counter:
    return Counter({"bmm": numel(outputs[0]) * shape(inputs[0])[-1]})


def einsum(inputs: list[Any], outputs: list[Any]) -> Counter:
    """Two-operand einsum: one multiply-add per output value and contracted index combination.

    SimHash's (..., K, c) x (K, c, b) -> (..., K, b) counts c * b per table and token.
    """
    equation = inputs[0].toIValue().replace(" ", "")
    operands = list(inputs[1].node().inputs())
    if "->" not in equation or len(operands) != 2:
        raise NotImplementedError(f"einsum {equation!r} with {len(operands)} operands: only "
                                  "explicit two-operand equations have a FLOP handle")
    lhs, out_letters = equation.split("->")
    sizes: dict[str, int] = {}
    for letters, operand in zip(lhs.split(","), operands, strict=True):
        dims = shape(operand)
        named = letters.replace("...", "")
        # with an ellipsis the named letters are the trailing dims (and any leading ones)
        if letters.startswith("..."):
            dims = dims[len(dims) - len(named):]
        elif "..." in letters:
            raise NotImplementedError(f"einsum {equation!r}: ellipsis only at the start")
        sizes.update(zip(named, dims, strict=True))
    contracted = set(sizes) - set(out_letters)
    return Counter({"einsum": numel(outputs[0]) * math.prod(sizes[c] for c in contracted)})


def embedding_bag(inputs: list[Any], outputs: list[Any]) -> Counter:
    """Sum mode: one (weighted) add per gathered value, indices x row width (Eq. 11).

    aten::embedding_bag(weight (R, w), indices (n,), offsets, scale_grad, mode, ...).
    """
    mode = inputs[4].toIValue()
    if mode != 0:
        raise NotImplementedError(f"embedding_bag mode {mode}: only mode 0 (sum) is counted")
    return Counter({"embedding_bag": numel(inputs[1]) * shape(inputs[0])[1]})


def scaled_dot_product_attention(inputs: list[Any], outputs: list[Any]) -> Counter:
    """QK^T and AV over the full (L, S) score matrix, as the paper counts 2 s^2 d.

    Causal masking is a select; an explicit mask tensor is an add per score.
    """
    q, k, v = (shape(x) for x in inputs[:3])
    scores = math.prod(q[:-1]) * k[-2]  # (..., L, S)
    counts = Counter({"sdpa": scores * q[-1] + scores * v[-1],
                      "sdpa_softmax": scores * SOFTMAX_PER_SCORE})
    if shape(inputs[3]) is not None:
        counts["sdpa_mask"] = scores
    return counts


def softmax(inputs: list[Any], outputs: list[Any]) -> Counter:
    """An explicit softmax (Linformer's k scores): max, exp(x - max), sum, divide per value."""
    return Counter({"softmax": SOFTMAX_PER_VALUE * numel(inputs[0])})


def layer_norm(inputs: list[Any], outputs: list[Any]) -> Counter:
    affine = shape(inputs[2]) is not None or shape(inputs[3]) is not None
    per_value = LAYER_NORM_PER_VALUE if affine else LAYER_NORM_PER_VALUE - 1
    return Counter({"layer_norm": per_value * numel(inputs[0])})


def per_output(key: str) -> Handle:
    """Elementwise op: one FLOP per output value, whatever the op's cost in cycles."""
    def handle(inputs: list[Any], outputs: list[Any]) -> Counter:
        return Counter({key: numel(outputs[0])})
    return handle


def per_input(key: str) -> Handle:
    """Reduction: one FLOP per input value (each accumulates once)."""
    def handle(inputs: list[Any], outputs: list[Any]) -> Counter:
        return Counter({key: numel(inputs[0])})
    return handle


# exp and relu are the feature maps of Performer and cosFormer; clamp_min guards their
# denominators. cumsum is a prefix sum, one add per output value. In linear attention the chunks'
# states (each an einsum over a chunk, matrix-like) are added up chunk after chunk (adds), so a
# causal contraction sum_{j<=t} a_j b_j^T counts as its multiply-adds (matrix-like) plus the
# adds that carry it across chunks (elementwise), as the chunkwise form runs it. remainder is
# the n-gram hash's mod (integer ops count like float ones: one per output value).
ELEMENTWISE_OPS = ("add", "sub", "mul", "div", "neg", "abs", "ge", "sigmoid", "gelu", "exp",
                   "relu", "clamp_min", "cumsum", "remainder")
REDUCTION_OPS = ("sum", "prod", "amax")

HANDLES: dict[str, Handle] = {
    "aten::linear": linear,
    "aten::matmul": matmul,
    "aten::bmm": bmm,
    "aten::einsum": einsum,
    "aten::embedding_bag": embedding_bag,
    "aten::scaled_dot_product_attention": scaled_dot_product_attention,
    "aten::layer_norm": layer_norm,
    "aten::softmax": softmax,
    **{f"aten::{op}": per_output(op) for op in ELEMENTWISE_OPS},
    **{f"aten::{op}": per_input(op) for op in REDUCTION_OPS},
}

ZERO_COST = frozenset({
    # views and reshapes
    "aten::view", "aten::reshape", "aten::unflatten", "aten::flatten", "aten::transpose",
    "aten::permute", "aten::expand", "aten::squeeze", "aten::unsqueeze", "aten::t",
    "aten::contiguous",
    # slicing and reads: the gather is memory traffic, not arithmetic
    "aten::slice", "aten::select", "aten::narrow", "aten::split", "aten::split_with_sizes",
    "aten::chunk", "aten::unbind", "aten::index_select", "aten::gather", "aten::index",
    "aten::embedding", "aten::roll",
    # the causal mask inside a linear attention's chunk is a select, as SDPA's is
    "aten::tril",
    # copies, casts, creation
    "aten::cat", "aten::stack", "aten::to", "aten::type_as", "aten::detach", "aten::arange",
    "aten::pad",  # a copy into zeros (chunk padding) or beside a constant (the ones column)
    "aten::new_zeros", "aten::zeros_like",
    # shape and scalar plumbing of the trace
    "aten::size", "aten::numel", "aten::Int", "aten::ScalarImplicit",
})


def zero(inputs: list[Any], outputs: list[Any]) -> Counter:
    return Counter()
