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
