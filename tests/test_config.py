"""ModelConfig validation, presets and the sizes the paper states for its configurations."""

from __future__ import annotations

import pytest

from harness.models import (
    ConfigError,
    MemoryLayer,
    ModelConfig,
    build_model,
    model_size,
    pair_of,
    preset,
    preset_names,
)
from harness.runs.config import build_run_config


@pytest.mark.parametrize("changes, field, allowed", [
    (dict(kind="sparse"), "kind", "memoryformer, dense"),
    (dict(weighting="softmax"), "weighting", "paper, l1"),
    (dict(ffn_activation="relu"), "ffn_activation", "none, gelu"),
    (dict(kernel="cuda"), "kernel", "auto, fused, reference"),
    (dict(n_head=7), "n_head", "a divisor of 512"),
    (dict(chunk_size=600), "chunk_size", "1..512"),
    (dict(d_model=0), "d_model", "integers >= 1"),
    (dict(num_tables="64"), "num_tables", "integers >= 1"),
    (dict(n_layer=True), "n_layer", "integers >= 1"),
    (dict(expansion_bits=-1), "expansion_bits", "integers >= 0"),
    (dict(temperature=0.0), "temperature", "numbers > 0"),
    (dict(temperature="warm"), "temperature", "numbers > 0"),
    (dict(rotary_pct=1.5), "rotary_pct", "numbers >= 0 and <= 1"),
    (dict(colour="blue"), "colour", "allowed: name, kind"),
])
def test_bad_values_name_the_field_and_the_allowed_values(changes, field, allowed):
    with pytest.raises(ConfigError) as error:
        preset("memoryformer-tiny", **changes)
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}: ")
    assert allowed in str(error.value)


def test_unaffordable_bucket_bits_give_the_table_memory_they_would_need():
    with pytest.raises(ConfigError, match=r"^bucket_bits: 24 .* = 6\.0 TiB .* bucket_bits <= 14"):
        preset("memoryformer-tiny", bucket_bits=24)
    with pytest.raises(ConfigError, match=r"^expansion_bits: 14 .* 512\.0 GiB .* <= 8"):
        preset("memoryformer-tiny", expansion_bits=14)
    # The dense kind has no tables, so the same knob is harmless there.
    assert preset("pythia-70m", bucket_bits=24).kind == "dense"
    # A bigger budget is a config value, not a code change.
    assert preset("memoryformer-nano", bucket_bits=16, max_layer_table_gib=64).bucket_bits == 16


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match=r"^preset: 'gpt-5' is not a preset; allowed: pythia-70m"):
        preset("gpt-5")


def test_tied_knobs_follow_chunk_size_after_replace():
    tiny = preset("memoryformer-tiny")
    assert (tiny.resolved_bucket_bits, tiny.resolved_num_tables, tiny.ffn_hidden) == (8, 64, 640)
    small_chunks = tiny.replace(chunk_size=4)
    assert (small_chunks.resolved_bucket_bits, small_chunks.resolved_num_tables) == (4, 128)
    untied = tiny.replace(bucket_bits=6, num_tables=40)
    assert (untied.resolved_bucket_bits, untied.resolved_num_tables) == (6, 40)


def test_dict_round_trip():
    cfg = preset("memoryformer-nano", temperature=0.5, weighting="l1")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"^vocab: unknown field"):
        ModelConfig.from_dict({"vocab": 10})


def test_presets_pair_dense_and_memoryformer_of_the_same_shape():
    names = preset_names()
    assert {"pythia-70m", "pythia-160m", "pythia-410m", "memoryformer-tiny",
            "memoryformer-small", "memoryformer-base", "dense-nano", "memoryformer-nano",
            "dense-micro", "memoryformer-micro"} <= set(names)
    for name in names:
        a, b = preset(name), preset(pair_of(name))
        assert {a.kind, b.kind} == {"dense", "memoryformer"}
        assert (a.n_layer, a.d_model, a.n_head, a.vocab_size) == (
            b.n_layer, b.d_model, b.n_head, b.vocab_size)


@pytest.mark.parametrize("name, layers, width, heads, tables", [
    ("memoryformer-tiny", 6, 512, 8, 64),
    ("memoryformer-small", 12, 768, 12, 96),
    ("memoryformer-base", 24, 1024, 16, 128),
])
def test_paper_configurations(name, layers, width, heads, tables):
    cfg = preset(name)  # SPEC section 4: tau = 8, K = d / tau
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.chunk_size) == (layers, width, heads, 8)
    assert (cfg.resolved_bucket_bits, cfg.resolved_num_tables) == (8, tables)


def test_pythia_parameter_counts():
    # The published Pythia sizes with the untied 50,304-token embedding and head.
    assert model_size(preset("pythia-70m")).total_params == 70_426_624
    assert model_size(preset("pythia-160m")).total_params == 162_322_944
    assert model_size(preset("pythia-410m")).total_params == 405_334_016


def fp16_mb(values: int) -> float:
    return round(values * 2 / 1e6, 1)


def test_table_sizes_the_paper_reports():
    tiny = preset("memoryformer-tiny")
    # SPEC section 4: about 69 M table values per MemoryFormer-tiny block, 6.6 B in base.
    assert round(model_size(tiny).block_table_params / 1e6) == 69
    assert round(model_size(preset("memoryformer-base")).table_params / 1e9, 1) == 6.6
    # Table 5: Memory Block (both FFN layers) size in fp16 for expansion bits 0..3.
    for bits, megabytes in [(0, 33.6), (1, 52.4), (2, 88.1), (3, 157.3)]:
        _, ffn_in, ffn_out = tiny.replace(expansion_bits=bits).memory_layers()
        assert fp16_mb(ffn_in.table_values + ffn_out.table_values) == megabytes
    # Table 3: one projection layer (Q alone: a third of the fused qkv tables), fp16.
    for chunk, tables, megabytes in [(4, 128, 2.1), (8, 64, 16.8), (10, 51, 53.5)]:
        qkv = tiny.replace(chunk_size=chunk, num_tables=tables).memory_layers()[0]
        assert fp16_mb(qkv.table_values // 3) == megabytes


def test_kernel_reaches_every_memory_layer():
    config = build_run_config("memoryformer-nano", ["model.kernel=reference", "model.n_layer=2"])
    layers = [m for m in build_model(config.model).modules() if isinstance(m, MemoryLayer)]
    assert len(layers) == 2 * 3 and {layer.kernel for layer in layers} == {"reference"}
    default = build_model(preset("memoryformer-nano", n_layer=1))
    assert {m.kernel for m in default.modules() if isinstance(m, MemoryLayer)} == {"auto"}
    with pytest.raises(ConfigError) as error:
        build_run_config("memoryformer-nano", ["model.kernel=triton"])
    assert error.value.field == "model.kernel"
    assert "allowed: auto, fused, reference" in str(error.value)


def test_scaling_series_presets_sit_between_nano_and_micro():
    names = preset_names()
    series = ["nano", "n160", "n192", "n224", "micro"]
    for kind in ("dense", "memoryformer"):
        order = [names.index(f"{kind}-{size}") for size in series]
        assert order == sorted(order)
    # the paper's six and the existing pairs keep their place and relative order
    assert names[:8] == ["pythia-70m", "memoryformer-tiny", "pythia-160m", "memoryformer-small",
                         "pythia-410m", "memoryformer-base", "dense-nano", "memoryformer-nano"]
    assert names.index("memoryformer-micro") + 1 == names.index("pythia-410m-linformer")
    for size, layers, width in [("n160", 4, 160), ("n192", 5, 192), ("n224", 6, 224)]:
        dense, memory = preset(f"dense-{size}"), preset(f"memoryformer-{size}")
        assert pair_of(dense.name) == memory.name
        assert (dense.n_layer, dense.d_model, dense.head_dim, dense.context_length,
                dense.vocab_size) == (layers, width, 32, 256, 2048)
        # MemoryFormer knobs tied to the paper's defaults: c = 8, b = c, K = d / 8
        assert (memory.chunk_size, memory.resolved_bucket_bits, memory.resolved_num_tables) == (
            8, 8, width // 8)
    sizes = [model_size(preset(f"memoryformer-{size}")).total_params for size in series]
    assert sizes == sorted(sizes)
    # nano and micro are as they were
    assert (preset("memoryformer-nano").n_layer, preset("memoryformer-nano").d_model) == (4, 128)
    assert preset("dense-micro").context_length == 512


@pytest.mark.parametrize("changes, field, allowed", [
    (dict(ngram_order=2, ngram_rows=100), "ngram_order", "allowed: 0"),  # on a memoryformer
    (dict(kind="dense", ngram_rows=100), "ngram_rows", "allowed: 0, or set ngram_order"),
    (dict(kind="dense", ngram_order=2, ngram_rows=1), "ngram_rows", "integers >= 2"),
    (dict(kind="dense", ngram_order=-1), "ngram_order", "integers >= 0"),
    (dict(kind="dense", ngram_order=300, ngram_rows=10), "ngram_order", "0..256"),
    (dict(kind="dense", ngram_order=2, ngram_rows=2**24, max_layer_table_gib=1.0), "ngram_rows",
     "ngram_rows <= 2097152"),
])
def test_ngram_fields_are_for_the_dense_kind_and_validated(changes, field, allowed):
    with pytest.raises(ConfigError) as error:
        preset("memoryformer-nano", **changes)
    assert error.value.field == field
    assert allowed in str(error.value)


def test_ngram_fields_default_off_and_round_trip():
    cfg = preset("dense-nano", ngram_order=2, ngram_rows=4096)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert (preset("dense-nano").ngram_order, preset("dense-nano").ngram_rows) == (0, 0)
    assert model_size(cfg).table_params == 4096 * 128
    assert model_size(cfg).other_params == model_size(preset("dense-nano")).other_params


def test_non_embedding_params_are_the_published_pythia_counts():
    # Pythia's model card: non-embedding parameters 18,915,328 / 85,056,000 / 302,311,424
    for name, count in [("pythia-70m", 18_915_328), ("pythia-160m", 85_056_000),
                        ("pythia-410m", 302_311_424)]:
        assert model_size(preset(name)).non_embedding_params == count
    nano = model_size(preset("memoryformer-nano"))
    assert nano.non_embedding_params == nano.total_params - 2 * 2048 * 128
    assert nano.non_embedding_params > nano.table_params  # tables count, the norms too


def test_describe_is_json_with_non_embedding_params():
    import json

    from harness.models.sizes import describe

    row = describe(preset("dense-nano", ngram_order=2, ngram_rows=64))
    assert row["non_embedding_params"] == model_size(preset("dense-nano")).non_embedding_params \
        + 64 * 128
    assert (row["ngram_order"], row["ngram_rows"]) == (2, 64)
    assert row["table_bytes"] == 64 * 128 * 4
    json.dumps(row)
