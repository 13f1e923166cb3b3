"""harness.bench: row structure, byte arithmetic, roofline verdicts, failures as notes.

Never asserts on a timing value: only that timings exist and how they are combined.
"""

from __future__ import annotations

import json

import pytest
import torch

from harness.bench import BenchRow, format_bench, interleaved_medians, run_bench


@pytest.fixture(scope="module")
def rows():
    # 32 wide, tau = 8: K = 4 tables; tiny so that the whole run takes a fraction of a second
    return run_bench(widths=(32,), tokens=64, dtypes=("fp32", "bf16"), repeats=2,
                     bandwidth_bytes=2**16)


def test_one_row_per_width_dtype_pass_and_table_storage(rows):
    assert [(r.width, r.dtype, r.passes, r.table_storage) for r in rows] == [
        (32, "fp32", "forward", "fp32"), (32, "fp32", "forward", "bf16"),
        (32, "fp32", "forward", "int8"), (32, "fp32", "forward+backward", "fp32"),
        (32, "bf16", "forward", "bf16"), (32, "bf16", "forward+backward", "fp32")]
    for row in rows:
        assert row.linear_ms is not None and row.memory_ms is not None, row.note
        assert row.speedup == row.linear_ms / row.memory_ms
        assert row.threads == torch.get_num_threads() and row.bandwidth > 0
        forward = row.passes == "forward"
        assert (row.reference_ms is not None) == forward
        assert row.kernel_speedup == (row.reference_ms / row.memory_ms if forward else None)
    for row in rows:  # the anchor: the faster of fp32 and bf16 nn.Linear, timed beside it
        assert row.anchor in ("fp32 nn.Linear", "bf16 nn.Linear") and row.anchor_ms is not None
        assert row.anchor_ms <= row.linear_ms
        assert row.anchor_speedup == row.anchor_ms / row.memory_ms
    # bf16 training is bf16-mixed: fp32 master tables, bf16 activations, on the fused kernel
    assert {r.kernel for r in rows} == {"fused"} and not any(r.note for r in rows)
    assert {r.device for r in rows} == {"cpu"}


@pytest.mark.parametrize("dtype, storage, value_bytes",
                         [("fp32", "fp32", 4), ("fp32", "bf16", 2), ("fp32", "int8", 1),
                          ("bf16", "bf16", 2)])
def test_byte_and_flop_arithmetic(rows, dtype, storage, value_bytes):
    forward = next(r for r in rows if (r.dtype, r.table_storage, r.passes)
                   == (dtype, storage, "forward"))
    both = next(r for r in rows if (r.dtype, r.passes) == (dtype, "forward+backward"))
    assert forward.memory_read_bytes == 64 * 4 * 32 * value_bytes  # tokens x K x out x bytes
    assert forward.memory_intensity == 1 / value_bytes  # one multiply-add per value read
    assert forward.table_bytes == 4 * 2**8 * 32 * value_bytes  # K x 2^b rows x out
    assert forward.linear_flops == 64 * 32 * 32 and both.linear_flops == 3 * 64 * 32 * 32
    moved = (2 * 64 * 32 + 32 * 32) * {"fp32": 4, "bf16": 2}[dtype]
    assert forward.linear_intensity == 64 * 32 * 32 / moved
    assert forward.memory_read_per_s == forward.memory_read_bytes / (forward.memory_ms / 1e3)
    assert forward.bandwidth_share == forward.memory_read_per_s / forward.bandwidth


def test_roofline_verdict_compares_intensity_to_machine_balance(rows):
    for row in rows:
        if row.passes == "forward":
            balance = row.linear_flops_per_s / row.bandwidth
            assert row.machine_balance == balance
            assert row.memory_bound == ("memory" if row.memory_intensity < balance else "compute")
            assert row.linear_bound == ("memory" if row.linear_intensity < balance else "compute")
        else:  # backward writes dense table gradients: no read-bandwidth figure
            assert row.memory_read_per_s is None and row.machine_balance is None
            assert row.linear_bound is None


def test_rows_are_json_and_formatted(rows):
    dicts = [row.to_dict() for row in rows]
    json.dumps(dicts)
    assert dicts[0]["speedup"] == rows[0].speedup and "memory_bound" in dicts[0]
    text = format_bench(rows)
    assert text.count("32x32") == 6 + 4  # per row, per forward row's tables
    assert "bound (linear / memory)" in text
    assert text.startswith("CPU: ") and "threads" in text.splitlines()[0]
    assert "vs anchor" in text and "the faster of fp32 and bf16 nn.Linear" in text
    assert "GB/s" in text


def test_a_failing_layer_becomes_a_note_not_a_crash():
    def unsupported():
        raise RuntimeError('"embedding_bag" not implemented for \'Half\'\nmore detail')

    ms, note = interleaved_medians({"linear": lambda: None, "memory": unsupported}, repeats=3)
    assert ms["memory"] is None and ms["linear"] is not None
    assert note == "memory unsupported: \"embedding_bag\" not implemented for 'Half'"
    row = BenchRow(width=8, tokens=4, dtype="bf16", passes="forward", table_storage="bf16",
                   kernel="fused", threads=1, bandwidth=1e9, linear_ms=ms["linear"],
                   memory_ms=None, reference_ms=None, linear_flops=256,
                   memory_read_bytes=64, table_bytes=128, linear_intensity=1.0,
                   memory_intensity=0.5, note=note)
    assert row.speedup is None and row.bandwidth_share is None
    assert "memory unsupported" in format_bench([row])


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="fp16"):
        run_bench(widths=(32,), tokens=8, dtypes=("fp16",), repeats=1)


def test_the_l2_floor_is_the_row_reads_at_l2_speed_on_every_thread(rows):
    for row in rows:
        assert row.cache_bandwidth is not None and row.cache_bandwidth > 0
        if row.passes == "forward":
            floor = row.memory_read_bytes / (row.cache_bandwidth * row.threads) * 1e3
            assert row.floor_ms == floor and row.floor_share == floor / row.memory_ms
        else:
            assert row.floor_ms is None and row.floor_share is None
    assert "L2 read" in format_bench(rows).splitlines()[1]
