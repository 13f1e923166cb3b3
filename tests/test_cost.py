"""Analytic FLOPs (harness.models.cost) and the `harness flops` report: Table 1 of the paper."""

from __future__ import annotations

import json

import pytest

from harness.errors import ConfigError
from harness.metrics.accounting import block_flops, flops_report, format_flops
from harness.models import model_size, preset, preset_names
from harness.models.cost import (
    TRAINING_FLOPS_FACTOR,
    block_cost,
    flops_per_token,
    model_cost,
    paper_non_attention,
    recorded_costs,
    training_flops_per_token,
)
from harness.runs import records

S = 2048
# Table 1, FLOPs per block at s = 2048, in units of 1e9: (without attention, total).
TABLE1 = {
    "pythia-70m": (6.4, 10.7), "memoryformer-tiny": (0.4, 4.7),
    "pythia-160m": (14.5, 20.9), "memoryformer-small": (1.0, 7.4),
    "pythia-410m": (25.8, 34.4), "memoryformer-base": (1.6, 10.2),
}


def g(flops: int) -> float:
    """The paper's rounding: one decimal in units of 1e9."""
    return round(flops / 1e9, 1)


@pytest.mark.parametrize("name", ["pythia-70m", "pythia-160m", "pythia-410m"])
def test_dense_blocks_reproduce_table1_exactly(name):
    report = flops_report(name, S)
    assert (g(report["non_attention"]), g(report["total"])) == TABLE1[name]
    d = preset(name).d_model
    assert report["non_attention"] == 12 * S * d * d  # SPEC section 5, biases are elementwise
    assert report["attention"] == 2 * S * S * d
    assert report["paper_non_attention"] is None and report["memory_layers"] is None


@pytest.mark.parametrize("name", ["memoryformer-tiny", "memoryformer-small", "memoryformer-base"])
def test_memoryformer_exact_count_is_at_or_below_table1(name):
    report = flops_report(name, S)
    paper_non_attention, paper_total = TABLE1[name]
    assert report["non_attention"] <= paper_non_attention * 1e9
    assert report["total"] <= paper_total * 1e9
    assert report["non_attention"] == sum(report["memory_layers"].values())
    # b = c: no SimHash, so the exact count is the weighted sums alone, 5.25 K s d with
    # tau = 8, e = 2 (Q, K, V: 3d; FFN: (c+e)K = 1.25d and d) against the paper's 6 K s d.
    cfg = preset(name)
    k, d = cfg.resolved_num_tables, cfg.d_model
    assert report["non_attention"] * 4 == 21 * k * S * d
    assert report["paper_non_attention"] == 6 * k * S * d


@pytest.mark.parametrize("name", ["memoryformer-tiny", "memoryformer-base"])
def test_paper_approximation_reproduces_table1(name):
    report = flops_report(name, S)
    assert (g(report["paper_non_attention"]), g(report["paper_total"])) == TABLE1[name]


def test_paper_small_figures_are_not_6ksd():
    # Table 1 prints 1.0G / 7.4G for MemoryFormer-small, but 6 K s d with K = 96, d = 768 is
    # 0.906G (total 7.348G): the paper's own approximation rounds to 0.9G / 7.3G here.
    report = flops_report("memoryformer-small", S)
    assert (g(report["paper_non_attention"]), g(report["paper_total"])) == (0.9, 7.3)


def test_elementwise_work_is_reported_apart_and_would_change_table1():
    report = flops_report("pythia-70m", S)
    assert report["total_with_elementwise"] == report["total"] + report["elementwise"]
    # why it is kept out of non_attention: 12 s d^2 = 6.442G is 0.008G from rounding up
    assert g(report["non_attention"] + report["elementwise"]) != TABLE1["pythia-70m"][0]


def test_report_sizes_come_from_model_size():
    for name in preset_names():
        report = flops_report(name)
        size = model_size(preset(name))
        assert report["seq_len"] == preset(name).context_length
        assert (report["params"], report["table_bytes"]) == (size.total_params, size.table_bytes)
        json.dumps(report)


def test_report_takes_overrides_and_rejects_bad_seq_len():
    report = flops_report("memoryformer-nano", 64, chunk_size=4)
    assert report["num_tables"] == 32
    assert block_flops(preset("memoryformer-nano", chunk_size=4), 64) == report
    for bad in (0, 257, 2.5):
        with pytest.raises(ConfigError, match="seq_len"):
            flops_report("memoryformer-nano", bad)


def test_format_flops_lists_every_figure():
    reports = [flops_report(name, S) for name in preset_names()[:6]]
    text = format_flops(reports)
    for name in preset_names()[:6]:
        assert name in text
    assert "0.403G" in text and "4.698G" in text  # MF-tiny's 6Ksd and paper total
    assert "ffn.layer_out" in text and "mlp.2" in text
    assert format_flops(reports[0]).count("pythia-70m") == 2  # table row and layer row


def test_flops_per_token_is_the_whole_model_over_seq_len():
    cfg = preset("memoryformer-nano")
    whole = model_cost(cfg, 100)
    assert flops_per_token(cfg, 100) * 100 == whole.total
    assert flops_per_token(cfg, 100, elementwise=True) * 100 == whole.total_with_elementwise
    block = block_cost(cfg, 100)
    head = cfg.d_model * cfg.vocab_size
    assert flops_per_token(cfg, 100) == cfg.n_layer * block.total // 100 + head
    # attention grows with the sequence: 2 s d more per token and block per extra token
    assert flops_per_token(cfg, 101) - flops_per_token(cfg, 100) == cfg.n_layer * 2 * cfg.d_model


def test_ngram_embedding_costs_elementwise_work_only():
    plain, ngram = preset("dense-nano"), preset("dense-nano", ngram_order=2, ngram_rows=1000)
    assert flops_per_token(ngram, 64) == flops_per_token(plain, 64)  # a read: no multiply-adds
    extra = flops_per_token(ngram, 64, elementwise=True) - flops_per_token(plain, 64, True)
    assert extra == 3 * 2 + 2 + 128  # hash of a bigram, then one add of d per token
    assert block_cost(ngram, 64) == block_cost(plain, 64)  # outside the blocks
    one, three = model_cost(ngram, 16), model_cost(ngram, 16, batch=3)
    assert three.elementwise == 3 * one.elementwise


def test_block_cost_scales_with_batch_and_paper_formula_is_memoryformer_only():
    cfg = preset("memoryformer-nano", bucket_bits=6)
    one, three = block_cost(cfg, 16), block_cost(cfg, 16, batch=3)
    assert (three.attention, three.non_attention, three.elementwise) == (
        3 * one.attention, 3 * one.non_attention, 3 * one.elementwise)
    assert paper_non_attention(preset("dense-nano"), 16) is None


# Table 2 (efficient attention in Pythia-410M), FLOPs per block at s = 2048, in units of 1e9.
TABLE2 = {"linformer": 26.1, "cosformer": 30.0, "performer": 26.7, "softmax": 34.4}


def test_efficient_attention_formulas_on_pythia_410m():
    cfg = preset("pythia-410m")
    d, h, hs = cfg.d_model, cfg.n_head, cfg.head_dim
    k, m = 256, 266  # Linformer's k = 2048 // 8, Performer's m = hs ln hs (the defaults)
    c = cfg.attention_chunk  # 64: S = 2048 is 32 chunks, whose first 31 carry a state forward

    def kernel(f: int) -> int:  # per head: within chunks, chunk states, their read-out
        e = hs + 1  # the values' ones column gives the denominator
        return h * (S * c * (f + e) + (S - c) * f * e + S * f * e)

    expected = {
        "softmax": 2 * S * S * d,
        # E K, F V per chunk; their read-outs; q k^T, x E, w F, x V inside the chunks
        "linformer": 2 * (S - c) * k * d + 2 * S * k * d + 2 * S * c * (d + h * k),
        "cosformer": kernel(2 * hs),
        "performer": kernel(m) + 2 * S * m * d,  # + the random-feature projections of Q and K
    }
    for attention, flops in expected.items():
        report = flops_report("pythia-410m", S, attention=attention)
        assert report["attention"] == flops
        assert report["non_attention"] == 12 * S * d * d  # the linear layers do not change
        assert report["attention_kind"] == attention
        # all three efficient ones are cheaper than softmax, as in Table 2
        assert g(report["non_attention"]) < g(report["total"]) <= TABLE2["softmax"]


@pytest.mark.parametrize("attention", ["linformer", "cosformer", "performer"])
def test_efficient_attention_is_linear_in_the_sequence(attention):
    cfg = preset("memoryformer-nano", attention=attention, attention_features=16,
                 attention_chunk=16)
    def added_by_chunk(seq: int) -> int:  # what one more chunk of 16 positions adds
        return block_cost(cfg, seq + 16).attention - block_cost(cfg, seq).attention

    # every chunk adds the same work, wherever it is; softmax's grows with the position
    assert added_by_chunk(16) == added_by_chunk(32) == added_by_chunk(400) > 0
    softmax = cfg.replace(attention="softmax")
    assert (block_cost(softmax, 416).attention - block_cost(softmax, 400).attention
            > 5 * added_by_chunk(400))
    # a sequence is padded to whole chunks, and the padding is counted: it is computed
    if attention != "performer":  # (Performer's feature projections run on the real rows)
        assert block_cost(cfg, 17).attention == block_cost(cfg, 32).attention
    one, three = block_cost(cfg, 40), block_cost(cfg, 40, batch=3)
    assert (three.attention, three.elementwise) == (3 * one.attention, 3 * one.elementwise)


def test_format_flops_names_the_attention():
    text = format_flops([flops_report("pythia-410m", S),
                         flops_report("pythia-410m", S, attention="performer")])
    assert "pythia-410m+performer" in text and "pythia-410m+softmax" not in text
    report = flops_report("pythia-410m", S, attention="linformer", attention_features=64)
    assert (report["attention_kind"], report["attention_features"]) == ("linformer", 64)
    assert flops_report("pythia-410m", S)["attention_features"] is None


def test_training_flops_are_three_forwards():
    cfg = preset("memoryformer-nano")
    assert TRAINING_FLOPS_FACTOR == 3
    assert training_flops_per_token(cfg, 64) == 3 * flops_per_token(cfg, 64)


@pytest.mark.parametrize("name, seq_len", [
    ("memoryformer-tiny", S), ("pythia-70m", S), ("memoryformer-nano", 64), ("dense-nano", 64)])
def test_recorded_costs_are_the_reports_formulas(name, seq_len):
    cfg = preset(name)
    d, s, vocab, layers = cfg.d_model, seq_len, cfg.vocab_size, cfg.n_layer
    k, bits = cfg.resolved_num_tables, cfg.resolved_bucket_bits
    memory = cfg.kind == "memoryformer"
    block = 6 * k * d if memory else (4 + 2 * cfg.mlp_ratio) * d * d
    block_flops = (flops_per_token(cfg, s) - d * vocab) / layers
    expected = {
        "paper_flops_per_token": layers * (block + 2 * s * d) + d * vocab,
        "block_flops_per_token": block_flops,
        "block_flops_per_token_no_attention": block_flops - 2 * s * d,
    }
    if memory:
        size = model_size(cfg)
        q_table_bytes = k * 2**bits * d * size.table_bytes / size.table_params
        expected |= {"q_flops_per_token": k * d, "q_table_bytes": q_table_bytes,
                     "ffn_table_bytes_per_block": size.table_bytes / layers - 3 * q_table_bytes}
    costs = recorded_costs(cfg, s)
    assert costs == expected
    assert all(isinstance(value, float) for value in costs.values())
    # the keys are the records contract's cost/* names, less the prefix
    names = {records.COST_PAPER_FLOPS, records.COST_BLOCK_FLOPS, records.COST_BLOCK_FLOPS_NO_ATTN,
             records.COST_Q_FLOPS, records.COST_Q_TABLE_BYTES, records.COST_FFN_TABLE_BYTES}
    assert {f"cost/{key}" for key in costs} == (
        names if memory else names - {records.COST_Q_FLOPS, records.COST_Q_TABLE_BYTES,
                                      records.COST_FFN_TABLE_BYTES})


def test_recorded_costs_match_the_papers_tables():
    tiny = recorded_costs(preset("memoryformer-tiny"), S)
    assert tiny["q_table_bytes"] == 64 * 256 * 512 * 4  # Table 3: K 2^b d values, in fp32
    # Table 5's Memory Block: layer 1, K tables of (c + e) K values; layer 2, K of d values
    assert tiny["ffn_table_bytes_per_block"] == 64 * 4 * (256 * 640 + 1024 * 512)
    assert round(tiny["block_flops_per_token_no_attention"] * S / 1e9, 1) == 0.4  # Table 1
