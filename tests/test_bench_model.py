"""harness bench --model: rows per model, precision and pass, the dense anchor, bad input.

Never asserts on a timing value: only that timings exist and how they are combined.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.bench_model import format_model_bench, run_model_bench


@pytest.fixture(scope="module")
def rows():
    return run_model_bench(("memoryformer-nano",), batch=1, seq_len=16, repeats=1)


def test_one_row_per_model_precision_and_pass_against_the_fastest_dense(rows):
    assert [(r.preset, r.precision, r.passes) for r in rows] == [
        (preset, precision, pass_name) for pass_name in ("train", "forward")
        for preset in ("memoryformer-nano", "dense-nano") for precision in ("32", "bf16")]
    for pass_name in ("train", "forward"):
        group = [r for r in rows if r.passes == pass_name]
        dense = {r.precision: r.ms for r in group if r.kind == "dense"}
        fastest = min(dense, key=dense.get)
        for row in group:
            assert row.ms is not None and not row.note, row.note
            assert row.anchor == f"dense-nano {fastest}" and row.anchor_ms == dense[fastest]
            assert row.anchor_speedup == row.anchor_ms / row.ms
            assert row.tokens_per_s == 16 / (row.ms / 1e3)
    assert {r.kind for r in rows} == {"memoryformer", "dense"}


def test_output_names_the_machine_the_anchor_and_the_precisions(rows):
    text = format_model_bench(rows)
    assert text.startswith("CPU: ") and "bf16-mixed" in text and "fused AdamW" in text
    assert text.count("dense-nano 32") + text.count("dense-nano bf16") >= len(rows)
    json.dumps([row.to_dict() for row in rows])


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision or pass \\['fp8'\\]"):
        run_model_bench(precisions=("fp8",))


@pytest.mark.parametrize("flags, field", [(["--model", "--attention"], "bench"),
                                          (["--device", "tpu"], "device"),
                                          (["--model", "--presets", "nosuch"], "preset")])
def test_bad_bench_input_is_one_line_and_exit_2(flags, field):
    result = subprocess.run([sys.executable, "-m", "harness", "bench", *flags],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"harness bench: error: {field}: ")
    assert "allowed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout


def test_bench_model_runs_from_the_command_line():
    result = subprocess.run([sys.executable, "-m", "harness", "bench", "--model", "--batch", "1",
                             "--seq-len", "8", "--repeats", "1", "--json"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 8 and all(r["seq_len"] == 8 and r["tokens_per_s"] > 0 for r in rows)
