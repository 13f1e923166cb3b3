"""Dense baselines matched to a MemoryFormer on one quantity, and its sparse-capacity control.

At equal steps a MemoryFormer and the dense model of its shape share only the tokens: the
MemoryFormer holds ~14x the parameters (nano: 17.8M, 17.3M in tables, against 1.3M) at ~0.5x the
forward FLOPs. `match_dense` finds the dense config closest to it on parameters, forward FLOPs
per token or training throughput; `ngram_control` gives the dense twin of its shape a hashed
n-gram table of the MemoryFormer's table bytes, to test "it is just more parameters".

Pure arithmetic except throughput, which the caller measures (harness.metrics.throughput), so
this module stays torch-free in effect and costs milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.errors import ConfigError
from harness.models.config import TABLE_BYTES_PER_VALUE, ModelConfig
from harness.models.cost import flops_per_token
from harness.models.presets import pair_of
from harness.models.sizes import model_size

QUANTITIES = ("params", "forward_flops", "throughput")
DEPTHS = tuple(range(1, 13))
WIDTHS = tuple(range(32, 2049, 32))
HEAD_DIM = 32
THROUGHPUT_CANDIDATES = 6  # most dense configs timed by a throughput match (plus the target)
# fields only the MemoryFormer kind reads: a twin resets them, so that a dense twin of a preset
# equals the dense preset of that shape
_MEMORY_KNOBS = ("chunk_size", "bucket_bits", "num_tables", "expansion_bits", "temperature",
                 "weighting", "ffn_activation", "kernel")

Measure = Callable[[ModelConfig], float]  # config -> training tokens/s


@dataclass(frozen=True)
class Match:
    config: ModelConfig  # the dense config chosen
    quantity: str  # one of QUANTITIES
    target_value: float  # the MemoryFormer's
    matched_value: float  # the chosen config's
    ratio: float  # matched_value / target_value


def dense_twin(config: ModelConfig, name: str | None = None, **changes: object) -> ModelConfig:
    """`config` as the dense kind: same vocab, context, attention and norms, MemoryFormer knobs
    at their defaults, then `changes` (n_layer, d_model, ...). Named after the dense partner of
    a preset (presets.pair_of), else "<name>-dense", unless `name` is given."""
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)
                if f.name in _MEMORY_KNOBS}
    return config.replace(kind="dense", name=name or dense_name(config), **defaults, **changes)


def dense_name(config: ModelConfig) -> str:
    try:
        partner = pair_of(config.name)
    except ConfigError:
        return f"{config.name}-dense"
    return partner if config.kind == "memoryformer" else config.name


def candidates(target: ModelConfig, depths: Sequence[int] = DEPTHS,
               widths: Sequence[int] = WIDTHS) -> list[ModelConfig]:
    """The dense search grid around `target`: depth x width, HEAD_DIM-wide heads."""
    return [dense_twin(target, name=f"dense-{layers}x{width}", n_layer=layers, d_model=width,
                       n_head=width // HEAD_DIM)
            for layers in depths for width in widths]


def match_dense(target: ModelConfig, on: str, seq_len: int, measure: Measure | None = None, *,
                depths: Sequence[int] = DEPTHS, widths: Sequence[int] = WIDTHS) -> Match:
    """The dense config of the grid closest to the MemoryFormer `target` on quantity `on`.

    params: model_size total; forward_flops: flops_per_token at seq_len (matrix-like, the
    paper's count); throughput: training tokens/s from `measure` (a callable the caller
    supplies, e.g. harness.metrics.throughput.throughput_measure, at this seq_len), over the few
    configs of `throughput_candidates` only. `depths` and `widths` narrow the grid
    (depths=(target.n_layer,) keeps the target's depth); a throughput match ignores them.
    Closest = smallest |log(matched / target)|, so 2x over and 2x under are equally far; ties
    go to fewer layers, then the smaller width.
    """
    _check(target, on, seq_len, measure)
    if on == "throughput":
        pool = throughput_candidates(target, seq_len)
        value = _checked_measure(measure)
    else:
        pool = candidates(target, depths, widths)
        value = _arithmetic(on, seq_len)
    return _closest(pool, value, value(target), on)


def throughput_candidates(target: ModelConfig, seq_len: int,
                          limit: int = THROUGHPUT_CANDIDATES) -> list[ModelConfig]:
    """What a throughput match times: the params and forward_flops matches, and at the target's
    depth up to limit - 2 widths spread over those two matches' widths there (one grid step
    wider each way), where throughput most likely crosses the target's. Sorted by depth, width.
    """
    best = {on: match_dense(target, on, seq_len).config for on in ("params", "forward_flops")}
    level = candidates(target, depths=(target.n_layer,))
    ends = [_closest(level, _arithmetic(on, seq_len), _arithmetic(on, seq_len)(target), on)
            .config.d_model for on in best]
    low, high = min(ends) - HEAD_DIM, max(ends) + HEAD_DIM
    span = [c for c in level if low <= c.d_model <= high]
    keep = max(limit - 2, 2)
    if len(span) > keep:  # evenly spaced, both ends kept
        span = [span[round(i * (len(span) - 1) / (keep - 1))] for i in range(keep)]
    pool = {(c.n_layer, c.d_model): c for c in [*span, *best.values()]}
    return [pool[key] for key in sorted(pool)]


def ngram_control(memory: ModelConfig, order: int = 2) -> ModelConfig:
    """The dense twin of `memory`'s shape with a hashed n-gram table (harness.models.ngram) of
    as many bytes as all its hash tables: the rounded row count puts the two within half a row
    (d_model * 4 bytes / 2). A table over max_layer_table_gib is refused as usual: raise it on
    `memory` for the paper-size presets."""
    if memory.kind != "memoryformer":
        raise ConfigError("ngram_control.memory", f"kind {memory.kind!r} has no hash tables to "
                          "match; allowed: memoryformer")
    row_bytes = memory.d_model * TABLE_BYTES_PER_VALUE
    rows = max(round(model_size(memory).table_bytes / row_bytes), 2)
    return dense_twin(memory, name=f"{dense_name(memory)}-ngram{order}", ngram_order=order,
                      ngram_rows=rows)


def _check(target: ModelConfig, on: str, seq_len: int, measure: Measure | None) -> None:
    if on not in QUANTITIES:
        raise ConfigError("match.on", f"{on!r} is not allowed; allowed: {', '.join(QUANTITIES)}")
    if target.kind != "memoryformer":
        raise ConfigError("match.target", f"{target.name} is kind {target.kind!r}; allowed: "
                          "memoryformer (a dense model is matched to a MemoryFormer)")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or not (
            1 <= seq_len <= target.context_length):
        raise ConfigError("match.seq_len", f"{seq_len!r} is not allowed; allowed: integers "
                          f"1..{target.context_length} (context_length of {target.name})")
    if on == "throughput" and not callable(measure):
        raise ConfigError("match.measure", f"{measure!r} cannot time a config; allowed: a "
                          "callable ModelConfig -> tokens/s (harness.metrics.throughput)")


def _arithmetic(on: str, seq_len: int) -> Callable[[ModelConfig], float]:
    if on == "params":
        return lambda config: model_size(config).total_params
    return lambda config: flops_per_token(config, seq_len)


def _checked_measure(measure: Measure) -> Measure:
    def value(config: ModelConfig) -> float:
        tokens_per_s = measure(config)
        if not (isinstance(tokens_per_s, int | float) and math.isfinite(tokens_per_s)
                and tokens_per_s > 0):
            raise ValueError(f"measure({config.name}) returned {tokens_per_s!r}; "
                             "expected tokens/s, a finite number > 0")
        return float(tokens_per_s)
    return value


def _closest(pool: list[ModelConfig], value: Callable[[ModelConfig], float], target_value: float,
             quantity: str) -> Match:
    """Each config's value computed once (a measurement is expensive), the closest chosen."""
    scored = [(abs(math.log(v / target_value)), c.n_layer, c.d_model, v, c)
              for c in pool for v in (value(c),)]
    *_, matched, best = min(scored, key=lambda row: row[:3])
    return Match(config=best, quantity=quantity, target_value=target_value,
                 matched_value=matched, ratio=matched / target_value)
