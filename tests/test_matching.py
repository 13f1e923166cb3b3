"""Dense baselines matched to a MemoryFormer (params, FLOPs, throughput) and the n-gram control."""

from __future__ import annotations

import math

import pytest
import torch

from harness.errors import ConfigError
from harness.metrics.throughput import throughput_measure, training_throughput
from harness.models import build_model, model_size, preset
from harness.models.config import TABLE_BYTES_PER_VALUE
from harness.models.cost import flops_per_token
from harness.models.matching import (
    DEPTHS,
    HEAD_DIM,
    WIDTHS,
    Match,
    candidates,
    dense_twin,
    match_dense,
    ngram_control,
    throughput_candidates,
)
from harness.models.ngram import RESERVED_ROW, hash_ngrams

S = 256
VALUES = {"params": lambda c: model_size(c).total_params,
          "forward_flops": lambda c: flops_per_token(c, S)}


def brute_force(target, value, pool):
    """Closest by |log ratio|, ties to fewer layers then the smaller width."""
    goal = value(target)
    return min(pool, key=lambda c: (abs(math.log(value(c) / goal)), c.n_layer, c.d_model))


@pytest.mark.parametrize("on", ["params", "forward_flops"])
@pytest.mark.parametrize("name", ["memoryformer-nano", "memoryformer-n192", "memoryformer-micro"])
def test_match_is_the_closest_of_the_whole_grid(name, on):
    target = preset(name)
    pool = candidates(target)
    assert len(pool) == len(DEPTHS) * len(WIDTHS)
    match = match_dense(target, on, S)
    value = VALUES[on]
    assert isinstance(match, Match) and match.quantity == on
    assert match.config == brute_force(target, value, pool)
    assert (match.target_value, match.matched_value) == (value(target), value(match.config))
    assert match.ratio == match.matched_value / match.target_value
    assert all(abs(math.log(value(c) / match.target_value)) >= abs(math.log(match.ratio))
               for c in pool)
    cfg = match.config
    assert cfg.kind == "dense" and cfg.head_dim == HEAD_DIM
    assert (cfg.vocab_size, cfg.context_length, cfg.attention) == (
        target.vocab_size, target.context_length, target.attention)


def test_nano_matches_and_the_gap_they_close():
    target = preset("memoryformer-nano")
    params = match_dense(target, "params", S)
    flops = match_dense(target, "forward_flops", S)
    assert abs(params.ratio - 1) < 0.01  # 17.8M within a percent on the grid
    assert abs(flops.ratio - 1) < 0.1
    # the same-shape dense partner is far off on both
    dense = preset("dense-nano")
    assert model_size(dense).total_params / params.target_value < 0.1
    assert flops_per_token(dense, S) / flops.target_value > 2
    same_depth = match_dense(target, "params", S, depths=(4,))
    assert same_depth.config.n_layer == 4
    assert same_depth.config == brute_force(target, VALUES["params"], candidates(target, (4,)))


def test_twin_of_a_preset_is_its_dense_partner():
    assert dense_twin(preset("memoryformer-nano")) == preset("dense-nano")
    assert dense_twin(preset("memoryformer-nano", chunk_size=4)) == preset("dense-nano")
    assert dense_twin(preset("memoryformer-nano").replace(name="mine")).name == "mine-dense"


def test_ties_go_to_fewer_layers_then_the_smaller_width():
    target = preset("memoryformer-nano")
    # the grid's order does not matter
    assert match_dense(target, "params", S, depths=(3, 2), widths=(96, 64)) == match_dense(
        target, "params", S, depths=(2, 3), widths=(64, 96))
    flat = match_dense(target, "throughput", S, measure=lambda c: 1.0)
    first = throughput_candidates(target, S)[0]  # every candidate ties: the first by depth
    assert (flat.config.n_layer, flat.config.d_model) == (first.n_layer, first.d_model)


def fake_tokens_per_s(config):
    return 1e9 / flops_per_token(config, S)


def test_throughput_match_with_a_deterministic_measure():
    target = preset("memoryformer-nano")
    pool = throughput_candidates(target, S)
    assert 2 < len(pool) <= 6
    assert pool == sorted(pool, key=lambda c: (c.n_layer, c.d_model))
    match = match_dense(target, "throughput", S, measure=fake_tokens_per_s)
    assert match.config == brute_force(target, fake_tokens_per_s, pool)
    assert match.target_value == fake_tokens_per_s(target)
    assert match.ratio == match.matched_value / match.target_value
    # tokens/s as 1 / FLOPs: the throughput match is the FLOPs match, which is a candidate
    assert match.config == match_dense(target, "forward_flops", S).config
    assert match_dense(target, "throughput", S, measure=fake_tokens_per_s) == match


def test_bad_arguments_name_the_field():
    target = preset("memoryformer-nano")
    with pytest.raises(ConfigError, match=r"^match\.on: 'loss' .* params, forward_flops, "
                                          "throughput") as error:
        match_dense(target, "loss", S)
    assert error.value.field == "match.on"
    with pytest.raises(ConfigError, match=r"^match\.target: .*allowed: memoryformer"):
        match_dense(preset("dense-nano"), "params", S)
    with pytest.raises(ConfigError, match=r"^match\.seq_len: 257"):
        match_dense(target, "params", 257)
    with pytest.raises(ConfigError, match=r"^match\.measure"):
        match_dense(target, "throughput", S)
    with pytest.raises(ValueError, match="finite number > 0"):
        match_dense(target, "throughput", S, measure=lambda c: float("nan"))


def test_training_throughput_of_a_tiny_model_is_positive():
    cfg = preset("dense-nano", n_layer=1, d_model=32, n_head=1, vocab_size=64,
                 context_length=16)
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    tokens_per_s = training_throughput(cfg, batch=2, seq_len=16, warmup=1, repeats=3)
    assert math.isfinite(tokens_per_s) and tokens_per_s > 0
    assert torch.equal(torch.rand(2), expected)  # the caller's RNG is untouched
    assert throughput_measure(batch=2, seq_len=8, warmup=0, repeats=1)(cfg) > 0
    with pytest.raises(ConfigError, match=r"^throughput\.seq_len: 17"):
        training_throughput(cfg, seq_len=17)


# --- the n-gram control -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["memoryformer-nano", "memoryformer-n160", "memoryformer-micro",
                                  "memoryformer-tiny"])
def test_ngram_control_has_the_memoryformers_table_bytes_within_a_row(name):
    memory = preset(name)
    control = ngram_control(memory, order=2)
    assert control.kind == "dense" and (control.ngram_order, control.name) == (
        2, f"{dense_twin(memory).name}-ngram2")
    assert control.replace(name=dense_twin(memory).name, ngram_order=0, ngram_rows=0) == (
        dense_twin(memory))
    row_bytes = memory.d_model * TABLE_BYTES_PER_VALUE
    gap = model_size(control).table_bytes - model_size(memory).table_bytes
    assert abs(gap) <= row_bytes / 2  # the nearest integer row count
    assert ngram_control(memory, order=3).ngram_rows == control.ngram_rows


def test_ngram_control_of_a_dense_model_is_refused():
    with pytest.raises(ConfigError, match=r"^ngram_control\.memory: .*allowed: memoryformer"):
        ngram_control(preset("dense-nano"))


def test_ngram_hash_is_deterministic_vectorised_and_in_range():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 2048, (3, 40), generator=g)
    rows = hash_ngrams(tokens, 2, 1000)
    assert rows.shape == tokens.shape and rows.dtype == torch.int64
    assert torch.equal(rows, hash_ngrams(tokens.clone(), 2, 1000))
    assert int(rows.min()) >= 1 and int(rows.max()) < 1000  # row 0 is reserved
    # the row at t depends on tokens t-1 and t only: the same bigram anywhere, the same row
    a = torch.tensor([[5, 9, 1, 5, 9]])
    hashed = hash_ngrams(a, 2, 1000)
    assert hashed[0, 1] == hashed[0, 4]
    assert hash_ngrams(torch.tensor([[9, 5]]), 2, 1000)[0, 1] != hashed[0, 1]
    # the values are fixed across processes and versions: a pinned example
    assert hash_ngrams(torch.tensor([[1, 2, 3]]), 2, 97).tolist() == pinned_rows()


def pinned_rows():
    """hash_ngrams([[1, 2, 3]], 2, 97) by the documented formula, in plain Python."""
    prime, base, mix = 2**31 - 1, 1_000_003, 1_597_334_677
    ids = [1, 2, 3]
    out = []
    for t in range(3):
        h = (ids[t - 1] * base + ids[t]) % prime  # t = 0 wraps round to the last id
        out.append((h * mix) % prime % 96 + 1)
    return [out]


def test_ngram_embedding_shapes_reserved_rows_and_gradients():
    cfg = preset("dense-nano", n_layer=1, ngram_order=3, ngram_rows=500)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert tuple(model.ngram.tables.shape) == (500, cfg.d_model)
    batch = torch.randint(0, cfg.vocab_size, (2, 24))
    rows = model.ngram.row_indices(batch)
    assert rows.shape == (2, 24)
    assert (rows[:, :2] == RESERVED_ROW).all() and (rows[:, 2:] != RESERVED_ROW).all()
    embedded = model.ngram(batch)
    assert embedded.shape == (2, 24, cfg.d_model)
    torch.testing.assert_close(embedded, model.ngram.tables[rows])
    logits = model(batch)
    assert logits.shape == (2, 24, cfg.vocab_size)
    logits.logsumexp(-1).mean().backward()
    grad = model.ngram.tables.grad
    assert grad is not None and grad.abs().sum() > 0
    touched = set(rows.flatten().tolist())
    assert set(grad.abs().sum(-1).nonzero().flatten().tolist()) == touched
    size = model_size(cfg)
    params = dict(model.named_parameters())
    assert size.table_params == params["ngram.tables"].numel() == 500 * cfg.d_model
    assert size.total_params == sum(p.numel() for p in params.values())
