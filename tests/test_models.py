"""Both model kinds: layout (SPEC section 3), sizes, causality, round trips, every preset."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.models import (
    LanguageModel,
    MemoryLayer,
    build_block,
    build_model,
    model_size,
    pair_of,
    preset,
    preset_names,
)
from harness.models import lm as lm_module
from harness.models.dense import DenseBlock
from harness.models.memoryformer import MemoryFormerBlock
from harness.models.presets import base_preset

# Knob settings beyond the paper, each on the nano shape (d = 128).
KNOB_VARIANTS = [
    {},
    {"chunk_size": 4},
    {"bucket_bits": 6},
    {"num_tables": 20},  # K * c = 160 > d: the permutation stream
    {"chunk_size": 10},  # K = 12, K * c = 120 < d: a prefix of the inputs
    {"expansion_bits": 0},
    {"ffn_activation": "gelu", "weighting": "l1", "temperature": 0.5},
]


def tokens(cfg, batch=2, seq=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, cfg.vocab_size, (batch, seq), generator=g)


def count(module: nn.Module, table: bool) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if n.endswith("tables") == table)


@pytest.mark.parametrize("name", ["memoryformer-nano", "dense-nano", "memoryformer-n160",
                                  "dense-n160", "memoryformer-micro", "dense-micro"])
def test_cpu_presets_train_one_step(name):
    cfg = preset(name)
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = tokens(cfg, seq=cfg.context_length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(3):  # the same batch three times: the loss must fall
        logits = model(batch[:, :-1])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert logits.shape == (2, cfg.context_length - 1, cfg.vocab_size)
    assert losses[-1] < losses[0]
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("knobs", KNOB_VARIANTS, ids=lambda k: ",".join(k) or "paper")
def test_knob_variants_forward_backward_and_sizes(knobs):
    cfg = preset("memoryformer-nano", n_layer=2, **knobs)
    model = build_model(cfg)
    logits = model(tokens(cfg))
    logits.logsumexp(-1).mean().backward()
    assert torch.isfinite(logits).all()
    size = model_size(cfg)
    assert (count(model, table=True), count(model, table=False)) == (
        size.table_params, size.other_params)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pythia-70m", "memoryformer-tiny", "pythia-160m",
                                  "pythia-410m"])
def test_paper_presets_that_fit_run_forward_backward(name):
    cfg = preset(name)
    model = build_model(cfg)
    model(tokens(cfg, batch=1, seq=16)).logsumexp(-1).mean().backward()
    assert count(model, True) + count(model, False) == model_size(cfg).total_params


def _slow_if_big_variant(names):
    """Attention variants of the paper-size MemoryFormers build 0.6-1.1 GB blocks: slow."""
    big = {"memoryformer-small", "memoryformer-base"}
    return [pytest.param(n, marks=pytest.mark.slow)
            if n != base_preset(n) and base_preset(n) in big else n for n in names]


@pytest.mark.parametrize("name", _slow_if_big_variant(preset_names()))
def test_every_preset_builds_one_block_and_counts_its_whole_model_on_meta(name):
    cfg = preset(name)
    block = build_block(cfg)
    x = torch.randn(1, 8, cfg.d_model)
    assert block(x).shape == x.shape
    size = model_size(cfg)
    assert (count(block, True), count(block, False)) == (
        size.block_table_params, size.block_other_params)
    with torch.device("meta"):  # the whole model without allocating it
        whole = LanguageModel(cfg)
    assert (count(whole, True), count(whole, False)) == (size.table_params, size.other_params)


def test_memoryformer_block_layout_follows_eq_13():
    cfg = preset("memoryformer-nano")  # d = 128, tau = 8, K = 16, e = 2
    block = build_block(cfg)
    assert isinstance(block, MemoryFormerBlock)
    assert block.qkv.tables.shape == (16, 256, 3 * 128)  # one hash shared by Q, K and V
    assert block.ffn.layer_in.tables.shape == (16, 256, 160)  # d -> (c + e) K = 1.25 d
    assert (block.ffn.layer_out.chunk_size, block.ffn.layer_out.bucket_bits) == (10, 10)
    assert block.ffn.layer_out.tables.shape == (16, 1024, 128)
    assert isinstance(block.ffn.act, nn.Identity)  # no activation between the layers
    assert isinstance(build_block(cfg.replace(ffn_activation="gelu")).ffn.act, nn.GELU)
    # The only fully-connected layer left in the whole model is the LM head.
    model = build_model(cfg.replace(n_layer=2))
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert linears == ["head"]
    assert sum(isinstance(m, MemoryLayer) for m in model.modules()) == 2 * 3


def test_memoryformer_block_equation():
    cfg = preset("memoryformer-nano", ffn_activation="gelu")
    block = build_block(cfg)
    x = torch.randn(2, 6, cfg.d_model)
    q, k, v = block.qkv(block.norm_attn(x)).split(cfg.d_model, -1)
    z = x + block.attn(q, k, v)
    ffn = block.ffn
    y = z + ffn.layer_out(ffn.norm_mid(nn.functional.gelu(ffn.layer_in(ffn.norm_in(z)))))
    torch.testing.assert_close(block(x), y)


def test_dense_block_is_pythia_parallel_residual():
    cfg = preset("dense-nano")
    block = build_block(cfg)
    assert isinstance(block, DenseBlock)
    assert block.mlp[0].out_features == 4 * cfg.d_model
    x = torch.randn(2, 6, cfg.d_model)
    q, k, v = block.qkv(block.norm_attn(x)).split(cfg.d_model, -1)
    y = x + block.proj(block.attn(q, k, v)) + block.mlp(block.norm_mlp(x))
    torch.testing.assert_close(block(x), y)


def test_rotary_covers_a_quarter_of_each_head():
    cfg = preset("memoryformer-tiny")  # head_dim 64 -> 16 rotary dims, as Pythia
    rotary = build_block(cfg).attn.rotary
    assert rotary.dims == 16
    x = torch.randn(1, 1, 5, 64)
    out = rotary(x)
    torch.testing.assert_close(out[..., 16:], x[..., 16:])  # the rest passes through
    torch.testing.assert_close(out[..., 0, :], x[..., 0, :])  # position 0 is not rotated
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))  # a rotation keeps length


@pytest.mark.parametrize("name, knobs", [("memoryformer-nano", {}), ("dense-nano", {}),
                                         ("memoryformer-nano", {"num_tables": 20}),
                                         ("dense-nano", {"ngram_order": 3, "ngram_rows": 300})])
def test_future_tokens_cannot_change_earlier_outputs(name, knobs):
    cfg = preset(name, n_layer=2, **knobs)
    model = build_model(cfg).eval()
    a = tokens(cfg, batch=1, seq=20)
    b = a.clone()
    b[0, 12:] = (b[0, 12:] + 1) % cfg.vocab_size
    with torch.no_grad():
        out_a, out_b = model(a), model(b)
    torch.testing.assert_close(out_a[:, :12], out_b[:, :12], rtol=0, atol=1e-6)
    assert not torch.allclose(out_a[:, 12:], out_b[:, 12:])


def test_model_state_dict_round_trip_keeps_outputs_identical(tmp_path):
    cfg = preset("memoryformer-nano", n_layer=2, bucket_bits=6, num_tables=20)
    torch.manual_seed(1)
    saved = build_model(cfg)
    torch.save(saved.state_dict(), tmp_path / "model.pt")
    torch.manual_seed(2)
    loaded = build_model(cfg.replace(hash_seed=5))  # other tables and other hash buffers
    batch = tokens(cfg)
    assert not torch.equal(loaded(batch), saved(batch))
    loaded.load_state_dict(torch.load(tmp_path / "model.pt"))
    assert torch.equal(loaded(batch), saved(batch))


def test_ngram_model_counts_its_table_and_round_trips(tmp_path):
    cfg = preset("dense-nano", n_layer=2, ngram_order=2, ngram_rows=500)
    torch.manual_seed(1)
    saved = build_model(cfg)
    size = model_size(cfg)
    assert (count(saved, table=True), count(saved, table=False)) == (
        size.table_params, size.other_params)
    torch.save(saved.state_dict(), tmp_path / "model.pt")
    torch.manual_seed(2)
    loaded = build_model(cfg)
    batch = tokens(cfg)
    loaded.load_state_dict(torch.load(tmp_path / "model.pt"))
    assert torch.equal(loaded(batch), saved(batch))
    assert build_model(cfg.replace(ngram_order=0, ngram_rows=0)).ngram is None


def test_longer_sequence_than_context_is_refused():
    cfg = preset("dense-nano", context_length=16)
    with pytest.raises(ValueError, match="longer than context_length=16"):
        build_model(cfg)(tokens(cfg, seq=17))


def test_build_model_refuses_a_model_that_cannot_fit(monkeypatch):
    monkeypatch.setattr(lm_module, "available_memory_bytes", lambda: 2**20)
    with pytest.raises(MemoryError, match=r"memoryformer-nano needs 68\.0 MiB .* build_block"):
        build_model(preset("memoryformer-nano"))


def test_attention_presets_pair_and_train_like_their_base():
    from harness.runs.config import build_run_config

    assert preset("pythia-410m-performer").attention == "performer"
    assert base_preset("memoryformer-nano-cosformer") == "memoryformer-nano"
    assert base_preset("dense-nano") == "dense-nano"
    assert pair_of("pythia-410m-linformer") == "memoryformer-base-linformer"
    assert pair_of("memoryformer-nano-performer") == "dense-nano-performer"
    # the paper's LR for the base size, 3x for MemoryFormer (Table 4)
    assert build_run_config("pythia-410m-performer", []).peak_lr == 3e-4
    assert build_run_config("memoryformer-base-linformer", []).peak_lr == pytest.approx(9e-4)
