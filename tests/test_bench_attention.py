"""harness bench --attention: rows, the softmax anchor, Linformer's k, crossovers.

Never asserts on a timing value: only that timings exist and how they are combined.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.bench_attention import (
    AttentionRow,
    attention_config,
    crossover,
    format_attention_bench,
    linformer_k,
    run_attention_bench,
)


@pytest.fixture(scope="module")
def rows():
    return run_attention_bench(contexts=(16, 40), repeats=1, chunk=16, width=16, heads=2,
                               batch=1)


def test_one_row_per_attention_context_and_pass_against_softmax(rows):
    keys = {(row.attention, row.context, row.passes) for row in rows}
    assert keys == {(kind, context, pass_name) for kind in ("linformer", "cosformer",
                                                            "performer")
                    for context in (16, 40) for pass_name in ("forward", "forward+backward")}
    assert len(rows) == len(keys)
    assert all(row.ms > 0 and row.softmax_ms > 0 and not row.note for row in rows)
    assert all(row.speedup == row.softmax_ms / row.ms for row in rows)
    # one softmax timing per (context, pass), shared by its rows
    for context in (16, 40):
        assert len({row.softmax_ms for row in rows
                    if (row.context, row.passes) == (context, "forward")}) == 1
    features = {(row.attention, row.context): row.features for row in rows}
    assert features[("linformer", 40)] == 5 and features[("cosformer", 40)] is None
    assert features[("performer", 16)] == int(8 * 2.0794415416798357)  # hs ln hs, hs = 8


def test_output_names_the_anchor_the_shape_and_the_crossovers(rows):
    text = format_attention_bench(rows)
    assert "anchor: softmax F.scaled_dot_product_attention" in text
    assert "width 16, 2 heads, batch 1" in text and "chunk 16" in text
    assert text.count("crossovers:") == 1
    for kind in ("linformer", "cosformer", "performer"):
        assert f"  {kind} forward+backward: " in text and f"  {kind} forward: " in text
    assert json.loads(json.dumps([row.to_dict() for row in rows]))[0]["speedup"] > 0


def test_linformer_k_follows_the_default_then_holds_at_the_papers_256():
    assert [linformer_k(c) for c in (8, 128, 2048, 4096, 8192)] == [1, 16, 256, 256, 256]
    assert linformer_k(4096, fixed=64) == 64 and linformer_k(32, fixed=64) == 32
    cfg = attention_config("linformer", 4096, chunk=64)
    assert (cfg.resolved_attention_features, cfg.context_length, cfg.head_dim) == (256, 4096, 64)
    assert attention_config("performer", 4096, 64).resolved_attention_features == 266


def row(context: int, speedup: float, attention: str = "cosformer") -> AttentionRow:
    return AttentionRow(attention, context, "forward+backward", 10.0, 10.0 * speedup, None, 64,
                        256, 4, 2, 2)


@pytest.mark.parametrize("speedups, expected", [
    ({128: 0.5, 512: 0.9, 2048: 1.2, 4096: 2.0},
     "faster than softmax from context 2048 on (1.20x there, 2.00x at 4096)"),
    # faster at 512, slower at 1024: the crossover is where it stays faster
    ({512: 1.1, 1024: 0.95, 2048: 1.3}, "faster than softmax from context 2048 on"),
    ({128: 1.5, 4096: 3.0}, "faster than softmax at every context timed, 128-4096"),
    ({128: 0.2, 4096: 0.8}, "slower than softmax at every context up to 4096 (0.80x at 4096)"),
])
def test_crossover_is_where_an_attention_becomes_and_stays_faster(speedups, expected):
    rows = [row(context, speedup) for context, speedup in speedups.items()]
    assert crossover(rows[::-1], "cosformer", "forward+backward").startswith(
        f"cosformer forward+backward: {expected}")
    assert crossover(rows, "performer", "forward+backward").endswith("not timed")


def test_unknown_attention_is_refused():
    with pytest.raises(ValueError, match="unknown attention or pass \\['flash'\\]"):
        run_attention_bench(contexts=(8,), attentions=("flash",))


def test_bench_attention_runs_from_the_command_line():
    result = subprocess.run([sys.executable, "-m", "harness", "bench", "--attention",
                             "--contexts", "16", "--repeats", "1", "--attention-chunk", "8",
                             "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {(r["attention"], r["passes"]) for r in rows} == {
        (kind, pass_name) for kind in ("linformer", "cosformer", "performer")
        for pass_name in ("forward", "forward+backward")}
    assert all(r["context"] == 16 and r["chunk"] == 8 and r["width"] == 256 for r in rows)
