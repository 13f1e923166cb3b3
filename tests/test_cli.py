"""The `harness` command as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from harness.models import model_size, preset


def run_harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_presets_json_matches_analytic_sizes():
    result = run_harness("presets", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    base = rows["memoryformer-base"]
    assert (base["chunk_size"], base["bucket_bits"], base["num_tables"]) == (8, 8, 128)
    assert base["table_params"] == model_size(preset("memoryformer-base")).table_params
    assert rows["pythia-70m"]["params"] == 70_426_624 and rows["pythia-70m"]["num_tables"] is None


def test_presets_table_and_bad_command():
    result = run_harness("presets")
    assert result.returncode == 0
    assert "memoryformer-nano" in result.stdout and "8/8/16" in result.stdout
    bad = run_harness("trian")
    assert bad.returncode == 2 and "invalid choice: 'trian'" in bad.stderr


def test_flops_reproduces_table_1_for_the_six_paper_presets():
    names = ["pythia-70m", "memoryformer-tiny", "pythia-160m", "memoryformer-small",
             "pythia-410m", "memoryformer-base"]
    result = run_harness("flops", *names, "--seq-len", "2048", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    for name, (non_attention, total) in {"pythia-70m": (6.4, 10.7), "pythia-160m": (14.5, 20.9),
                                         "pythia-410m": (25.8, 34.4)}.items():
        assert round(rows[name]["non_attention"] / 1e9, 1) == non_attention
        assert round(rows[name]["total"] / 1e9, 1) == total
    for name, paper in {"memoryformer-tiny": 0.4, "memoryformer-small": 1.0,
                        "memoryformer-base": 1.6}.items():
        assert rows[name]["non_attention"] / 1e9 <= paper
        assert rows[name]["paper_non_attention"] == 6 * rows[name]["num_tables"] * 2048 * rows[
            name]["d_model"]
    single = json.loads(run_harness("flops", "pythia-70m", "--json").stdout)
    assert set(single) >= {"attention", "non_attention", "total", "paper_non_attention",
                           "params", "table_bytes"}


def test_bench_runs_from_the_command_line():
    result = run_harness("bench", "--widths", "32", "--tokens", "64", "--repeats", "1",
                         "--dtypes", "fp32", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {row["passes"] for row in rows} == {"forward", "forward+backward"}
    assert rows[0]["width"] == 32 and rows[0]["speedup"] > 0 and rows[0]["bandwidth"] > 0


def test_flops_takes_model_overrides_such_as_the_attention():
    result = run_harness("flops", "pythia-410m", "--seq-len", "2048", "--json",
                         "--set", "model.attention=performer", "--set",
                         "model.attention_features=64")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert (row["attention_kind"], row["attention_features"]) == ("performer", 64)
    # chunkwise (chunk 64, hs 64 + a ones column): within chunks, 31 carried states, read-outs;
    # plus the random-feature projections of Q and K
    s, m, e, heads = 2048, 64, 65, 16
    chunked = heads * (s * 64 * (m + e) + (s - 64) * m * e + s * m * e)
    assert row["attention"] == chunked + 2 * s * m * 1024
    table = run_harness("flops", "pythia-410m", "--set", "model.attention=cosformer")
    assert table.returncode == 0 and "pythia-410m+cosformer" in table.stdout
    bad = run_harness("flops", "pythia-410m", "--set", "train.seed=1")
    assert bad.returncode == 2 and "set: harness flops counts a model" in bad.stderr
    wrong = run_harness("flops", "pythia-410m", "--set", "model.attention=flash")
    assert wrong.returncode == 2 and "attention: 'flash' is not allowed" in wrong.stderr
