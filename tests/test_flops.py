"""fvcore counts with our handles: equal to the analytic formulas, and never silently short."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.metrics.flops import (
    UnhandledOperatorError,
    count_block_flops,
    count_flops,
    count_model_flops,
)
from harness.models import preset, preset_names
from harness.models.cost import LAYER_NORM_PER_VALUE, SOFTMAX_PER_SCORE, block_cost, model_cost
from harness.models.presets import base_preset

PAPER = preset_names()[:6]
BIG_BLOCKS = {"memoryformer-small", "memoryformer-base"}  # 0.6 and 1.1 GB of tables per block

# Knobs beyond the paper on the nano shape (d = 128, c = 8, K = 16).
KNOBS = [
    {"chunk_size": 4},
    {"bucket_bits": 6},  # SimHash: c * b additions per table
    {"bucket_bits": 10, "expansion_bits": 3},
    {"num_tables": 20},  # K * c = 160 > d: permutation stream (index_select)
    {"num_tables": 8},  # K * c = 64 < d: a prefix
    {"chunk_size": 10},  # K = 12, K * c = 120 < d
    {"expansion_bits": 0},
    {"ffn_activation": "gelu"},
    {"weighting": "l1", "temperature": 0.5},
    {"bucket_bits": 5, "num_tables": 24, "weighting": "l1", "ffn_activation": "gelu"},
    {"rotary_pct": 0.0},  # no rotary ops at all
    {"n_head": 8, "rotary_pct": 0.5},
]


def assert_equal(measured, formula):
    assert measured.attention == formula.attention
    assert measured.non_attention == formula.non_attention
    assert measured.elementwise == formula.elementwise
    assert {name: measured.by_module[name] for name in formula.parts} == formula.parts
    assert sum(formula.parts.values()) == formula.total


def slow_if_big(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG_BLOCKS else n for n in names]


def slow_if_big_variant(names):
    """Attention variants of the big presets are slow; the presets themselves run in CI."""
    return [pytest.param(n, marks=pytest.mark.slow)
            if n != base_preset(n) and base_preset(n) in BIG_BLOCKS else n for n in names]


@pytest.mark.parametrize("name", slow_if_big_variant(preset_names()))
def test_block_count_equals_formula_for_every_preset(name):
    cfg = preset(name)
    assert_equal(count_block_flops(cfg, seq_len=8, batch=2), block_cost(cfg, 8, batch=2))


@pytest.mark.parametrize("knobs", KNOBS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("kind", ["memoryformer", "dense"])
def test_block_count_equals_formula_for_knobs(kind, knobs):
    cfg = preset(f"{kind}-nano", **knobs)
    assert_equal(count_block_flops(cfg, seq_len=7, batch=2), block_cost(cfg, 7, batch=2))


# Table 2's attentions, with default and explicit features (Linformer's k, Performer's m).
ATTENTION_KNOBS = [
    {"attention": "linformer"},
    {"attention": "linformer", "attention_features": 5},
    {"attention": "cosformer"},
    {"attention": "performer"},
    {"attention": "performer", "attention_features": 12, "rotary_pct": 0.0},
]


@pytest.mark.parametrize("knobs", ATTENTION_KNOBS,
                         ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("kind", ["memoryformer", "dense"])
def test_block_count_equals_formula_for_each_attention(kind, knobs):
    cfg = preset(f"{kind}-nano", **knobs)
    measured, formula = count_block_flops(cfg, seq_len=7, batch=2), block_cost(cfg, 7, batch=2)
    assert_equal(measured, formula)
    assert measured.by_module["attn"] == formula.attention  # every contraction is in attention


@pytest.mark.parametrize("attention", ["linformer", "cosformer", "performer"])
def test_whole_model_count_equals_formula_for_each_attention(attention):
    cfg = preset("dense-nano", n_layer=2, attention=attention)
    assert_equal(count_model_flops(cfg, seq_len=6, batch=2), model_cost(cfg, 6, batch=2))


def test_simhash_combinations_are_counted():
    base = count_block_flops(preset("memoryformer-nano"), seq_len=4)
    simhash = count_block_flops(preset("memoryformer-nano", bucket_bits=6), seq_len=4)
    assert "einsum" not in base.by_operator
    # qkv and ffn_in: 16 tables of c x b = 8 x 6 per token; ffn_out: (8+2) x (6+2)
    assert simhash.by_operator["einsum"] == 4 * 16 * (8 * 6 + 8 * 6 + 10 * 8)


@pytest.mark.parametrize("name", ["memoryformer-nano", "dense-nano",
                                  pytest.param("memoryformer-micro", marks=pytest.mark.slow),
                                  pytest.param("dense-micro", marks=pytest.mark.slow),
                                  pytest.param("pythia-70m", marks=pytest.mark.slow),
                                  pytest.param("memoryformer-tiny", marks=pytest.mark.slow),
                                  pytest.param("pythia-410m", marks=pytest.mark.slow)])
def test_whole_model_count_equals_formula(name):
    cfg = preset(name)
    measured, formula = count_model_flops(cfg, seq_len=6, batch=2), model_cost(cfg, 6, batch=2)
    assert_equal(measured, formula)
    assert measured.by_module["head"] == 2 * 6 * cfg.d_model * cfg.vocab_size


@pytest.mark.parametrize("order", [1, 2, 3])
def test_whole_model_count_with_an_ngram_embedding_equals_formula(order):
    cfg = preset("dense-nano", n_layer=1, ngram_order=order, ngram_rows=300)
    measured, formula = count_model_flops(cfg, seq_len=6, batch=2), model_cost(cfg, 6, batch=2)
    assert_equal(measured, formula)
    plain = model_cost(cfg.replace(ngram_order=0, ngram_rows=0), 6, batch=2)
    # the hash and the add are elementwise; the rows are a read, like the token embedding's
    assert (formula.attention, formula.non_attention) == (plain.attention, plain.non_attention)
    assert formula.elementwise - plain.elementwise == 2 * 6 * (3 * order + 2 + cfg.d_model)
    assert measured.by_operator["remainder"] == 2 * 6 * (order + 1)


def test_ngram_control_of_nano_counts_as_its_formula():
    from harness.models.matching import ngram_control

    cfg = ngram_control(preset("memoryformer-nano")).replace(n_layer=1)
    assert_equal(count_model_flops(cfg, seq_len=5, batch=2), model_cost(cfg, 5, batch=2))


# Table 1 at s = 2048 from the traced count itself: (non-attention, total) in units of 1e9.
TABLE1_DENSE = {"pythia-70m": (6.4, 10.7), "pythia-160m": (14.5, 20.9),
                "pythia-410m": (25.8, 34.4)}
TABLE1_MEMORY = {"memoryformer-tiny": 0.4, "memoryformer-small": 1.0, "memoryformer-base": 1.6}


@pytest.mark.parametrize("name", ["pythia-70m", pytest.param("pythia-160m", marks=pytest.mark.slow),
                                  pytest.param("pythia-410m", marks=pytest.mark.slow)])
def test_measured_dense_block_reproduces_table1(name):
    count = count_block_flops(preset(name), seq_len=2048)
    assert (round(count.non_attention / 1e9, 1), round(count.total / 1e9, 1)) == TABLE1_DENSE[name]


@pytest.mark.parametrize("name", slow_if_big(TABLE1_MEMORY))
def test_measured_memoryformer_block_is_at_or_below_table1(name):
    count = count_block_flops(preset(name), seq_len=2048)
    assert count.non_attention <= TABLE1_MEMORY[name] * 1e9
    assert count.attention == 2 * 2048**2 * preset(name).d_model


def test_counting_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    count_block_flops(preset("dense-nano"), seq_len=4)
    assert torch.equal(torch.rand(3), expected)


def test_attention_is_split_by_module():
    cfg = preset("dense-nano")
    count = count_block_flops(cfg, seq_len=5)
    assert count.attention == count.by_module["attn"] == 2 * 5 * 5 * cfg.d_model
    assert count.by_module["proj"] == 5 * cfg.d_model**2  # outside attention, after it


# --- one handle per op, against a hand count --------------------------------------------------

class Apply(nn.Module):
    def __init__(self, fn, *params: torch.Tensor):
        super().__init__()
        self.fn = fn
        self.params = nn.ParameterList(params)

    def forward(self, *inputs):
        return self.fn(*inputs, *self.params)


def ops(fn, *inputs, params=()):
    return count_flops(Apply(fn, *params), *inputs).by_operator


def test_linear_counts_weight_as_matrix_and_bias_as_elementwise():
    x = torch.randn(2, 3, 5)
    assert ops(F.linear, x, params=(torch.randn(7, 5), torch.randn(7))) == {
        "linear": 2 * 3 * 5 * 7, "linear_bias": 2 * 3 * 7}
    assert ops(F.linear, x, params=(torch.randn(7, 5),)) == {"linear": 2 * 3 * 5 * 7}


def test_matmul_bmm_einsum():
    a, b = torch.randn(4, 3, 5), torch.randn(4, 5, 6)
    assert ops(torch.matmul, a, b) == {"matmul": 4 * 3 * 5 * 6}
    assert ops(torch.bmm, a, b) == {"bmm": 4 * 3 * 5 * 6}
    z, h = torch.randn(2, 3, 4, 5), torch.randn(4, 5, 6)  # (..., K, c) x (K, c, b)
    assert ops(lambda x, y: torch.einsum("...kc,kcb->...kb", x, y), z, h) == {
        "einsum": 2 * 3 * 4 * 5 * 6}
    assert ops(lambda x, y: torch.einsum("ij,jk->ik", x, y), a[0], b[0]) == {"einsum": 3 * 5 * 6}
    with pytest.raises(NotImplementedError, match="two-operand"):
        ops(lambda x: torch.einsum("ij,jk,kl->il", x, x, x), torch.randn(3, 3))


def test_embedding_bag_is_one_multiply_add_per_gathered_value():
    table = torch.randn(10, 6)
    idx, weights = torch.randint(0, 10, (4, 3)), torch.rand(4, 3)
    assert ops(lambda i, w, t: F.embedding_bag(i, t, per_sample_weights=w, mode="sum"),
               idx, weights, params=(table,)) == {"embedding_bag": 4 * 3 * 6}
    flat, offsets = torch.randint(0, 10, (7,)), torch.tensor([0, 2, 5])
    assert ops(lambda i, o, t: F.embedding_bag(i, t, o, mode="sum"), flat, offsets,
               params=(table,)) == {"embedding_bag": 7 * 6}
    with pytest.raises(NotImplementedError, match="mode 1"):
        ops(lambda i, t: F.embedding_bag(i, t, mode="mean"), idx, params=(table,))


def test_sdpa_counts_qk_and_av_over_the_full_score_matrix():
    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, 6)
    scores = 2 * 3 * 5 * 7
    expected = {"sdpa": scores * (4 + 6), "sdpa_softmax": scores * SOFTMAX_PER_SCORE}
    assert ops(F.scaled_dot_product_attention, q, k, v) == expected
    causal = ops(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True),
                 q, k[:, :, :5], v[:, :, :5])
    assert causal["sdpa"] == 2 * 3 * 5 * 5 * (4 + 6)  # masked half counted, as the paper does
    mask = torch.zeros(5, 7)
    assert ops(lambda a, b, c, m: F.scaled_dot_product_attention(a, b, c, attn_mask=m),
               q, k, v, mask) == {**expected, "sdpa_mask": scores}


def test_layer_norm_elementwise_and_reductions():
    x = torch.randn(2, 3, 8)
    assert ops(lambda t: F.layer_norm(t, (8,)), x) == {
        "layer_norm": (LAYER_NORM_PER_VALUE - 1) * 48}
    assert ops(nn.LayerNorm(8), x) == {"layer_norm": LAYER_NORM_PER_VALUE * 48}
    y = torch.randn(3, 1)
    expected = {"add": 48, "sub": 48, "mul": 48, "div": 48}
    assert ops(lambda a, b: ((a + b) - b) * b / 2, x, y) == expected
    for fn, key in [(torch.neg, "neg"), (torch.abs, "abs"), (torch.sigmoid, "sigmoid"),
                    (F.gelu, "gelu"), (lambda t: t >= 0, "ge"), (torch.exp, "exp"),
                    (torch.relu, "relu"), (lambda t: t.clamp_min(1e-6), "clamp_min"),
                    (lambda t: t.cumsum(1), "cumsum")]:
        assert ops(fn, x) == {key: 48}
    assert ops(lambda t: t.sum(-1), x) == {"sum": 48}
    assert ops(lambda t: t.prod(-1), x) == {"prod": 48}
    assert ops(lambda t: t.amax((-2, -1)), x) == {"amax": 48}


def test_explicit_softmax_and_outer_product_einsum():
    x = torch.randn(2, 3, 8)
    # max, exp, sum and divide; with the 1/sqrt(hs) scale before it, SOFTMAX_PER_SCORE
    assert ops(lambda t: t.softmax(-1), x) == {"softmax": (SOFTMAX_PER_SCORE - 1) * 48}
    # no contracted index: one product per output value (a prefix contraction's multiply-adds)
    a, b = torch.randn(2, 5, 3), torch.randn(2, 5, 4)
    assert ops(lambda p, q: torch.einsum("btf,bte->btfe", p, q), a, b) == {"einsum": 2 * 5 * 12}


def test_reads_views_and_casts_are_zero_not_unknown():
    x = torch.randn(4, 6)
    idx = torch.tensor([0, 2, 2])

    def reads(t, i):
        return torch.cat([t.index_select(-1, i), t[:, :2].to(torch.float64).float(),
                          t.gather(1, i.expand(4, 3)),
                          t[i].reshape(-1)[:12].view(4, 3).transpose(0, 1).t()], dim=1)

    assert ops(reads, x, idx) == {}


# --- nothing dropped silently ----------------------------------------------------------------

def test_unknown_operator_fails_instead_of_returning_less():
    class CumProd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x).cumprod(-1)  # aten::cumprod: no handle, real multiplications

    with pytest.raises(UnhandledOperatorError, match=r"aten::cumprod \(x1\)") as error:
        count_flops(CumProd(), torch.randn(2, 4))
    assert error.value.ops == {"aten::cumprod": 1}


@pytest.mark.parametrize("fn, op", [(lambda t: t > 0, "aten::gt"), (lambda t: t.clamp(0, 1),
                                    "aten::clamp"), (torch.floor, "aten::floor")])
def test_ops_fvcore_ignores_by_default_also_fail(fn, op):
    with pytest.raises(UnhandledOperatorError, match=op):
        ops(fn, torch.randn(3, 4))


def test_importing_metrics_and_bench_loads_no_fvcore():
    code = ("import sys, harness.metrics, harness.metrics.flops, harness.metrics.accounting, "
            "harness.metrics.memory, harness.bench; "
            "assert not [m for m in sys.modules if m.startswith('fvcore')], 'fvcore imported'")
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


def test_figure_1_is_regenerated_from_the_cost_formulas(tmp_path):
    from harness.metrics import figure1

    table = figure1.rows()
    at = {(row["d_model"], row["kind"]): row for row in table}
    # d = 512 is the paper's Table 1 pair: Pythia-70M 6.4G without attention, 10.7G in all
    assert round(at[512, "dense"]["non_attention_gflops"], 1) == 6.4
    assert round(at[512, "dense"]["total_gflops"], 1) == 10.7
    assert round(at[512, "memoryformer"]["non_attention_gflops"], 2) == 0.35
    for d in figure1.WIDTHS:  # attention is the same in both; the rest far below dense's
        assert at[d, "dense"]["attention_gflops"] == at[d, "memoryformer"]["attention_gflops"]
        assert at[d, "memoryformer"]["non_attention_gflops"] < at[d, "dense"][
            "non_attention_gflops"] / 10
    committed = Path(__file__).parent.parent / "reports" / "figure-1" / "figure1.csv"
    assert committed.read_text() == figure1.to_csv(table), "rerun `harness flops --figure`"
    png, csv = figure1.write(tmp_path, dpi=40)
    assert png.stat().st_size > 10_000 and csv.read_text() == committed.read_text()
