"""`harness train` as a user runs it: bad input fails in one line with exit 2, before training."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main

TINY = ["--set", "model.n_layer=1", "--set", "model.d_model=32", "--set", "model.n_head=2",
        "--tokenizer", "byte", "--set", "data.seq_len=32", "--set", "data.batch_size=4",
        "--set", "data.val_batches=1", "--set", "train.val_every=2"]


def harness(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def small_corpus(tmp_path) -> str:
    path = tmp_path / "small.txt"
    path.write_text("\n".join(f"line {i} of a very short play" for i in range(40)))
    return str(path)


@pytest.mark.parametrize("args, message", [  # in-process: the CLI is a function
    (["--preset", "nano"], "preset: 'nano' is not a preset; allowed: pythia-70m"),
    (["--set", "model.colour=red"], "model.colour: unknown field; allowed: name, kind"),
    (["--set", "model.num_tables=abc"], "model.num_tables: 'abc' is not an integer"),
    (["--max-steps", "0"], "train.max_steps: 0 is too small; allowed: integers >= 1"),
    (["--corpus", "/no/such/plays"], "data.corpus:"),
    # flags are typed values, never parsed as YAML: `on` is a file name, not True; `null` is not
    # the default corpus; 2024 is not an int
    (["--corpus", "on"], "data.corpus: 'on' is neither a known corpus nor an existing path"),
    (["--corpus", "null"], "data.corpus: 'null' is neither a known corpus nor an existing path"),
    (["--corpus", "2024"], "data.corpus: '2024' is neither a known corpus nor an existing path"),
    (["--precision", "16"], "train.precision: '16'"),
    (["--flops", "0"], "train.flops_budget: 0.0 is out of range; allowed: numbers > 0"),
    (["--seconds", "-5"], "train.seconds_budget: -5.0 is out of range; allowed: numbers > 0"),
    (["--tracking-uri", "TRACKING"], "tracking_uri: http://127.0.0.1:"),
])
def test_bad_input_is_one_line_exit_2_and_creates_no_run(tmp_path, monkeypatch, capsys, args,
                                                         message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = [f"http://127.0.0.1:{free_port()}" if a == "TRACKING" else a for a in args]
    assert main(["train", *TINY, *args]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("harness train: error: ")
    assert message in error[0]
    assert not (tmp_path / ".harness" / "mlflow.db").exists()


def test_corpus_too_small_is_refused_by_the_real_command(tmp_path, small_corpus):
    result = harness(tmp_path, "train", *TINY, "--corpus", small_corpus,
                     "--set", "data.batch_size=64")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("harness train: error: data.corpus:")
    assert "one batch needs batch_size * (seq_len + 1) = 2112" in result.stderr
    assert not (tmp_path / ".harness" / "mlflow.db").exists()


def test_train_prints_the_run_and_how_to_browse_it(tmp_path):
    result = harness(tmp_path, "train", *TINY, "--max-steps", "2",
                     "--set", f"data.cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 0, result.stderr
    assert "run " in result.stdout and "finished: val/loss" in result.stdout
    assert "harness ui" in result.stdout
    assert (tmp_path / ".harness" / "mlflow.db").exists()


def test_train_in_bf16_mixed_clips_gradients_with_the_fused_optimizer(tmp_path):
    # bf16-mixed with fused AdamW and the default grad_clip: Lightning alone refuses to clip
    result = harness(tmp_path, "train", *TINY, "--max-steps", "2", "--precision", "bf16",
                     "--set", "optim.grad_clip=1.0", "--set", f"data.cache_dir={tmp_path / 'c'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "finished: val/loss" in result.stdout


def test_match_prints_the_closest_dense_shape_as_an_arm(capsys):
    assert main(["match", "memoryformer-nano", "--on", "params"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("dense closest to memoryformer-nano on params: 11 layers x 352 wide")
    assert out[1] == ("as a study arm:  {preset: dense-nano, set: {model.n_layer: 11, "
                      "model.d_model: 352, model.n_head: 11}}")
    assert main(["match", "dense-nano"]) == 2  # a dense target: one line, exit 2
    assert "match.target: dense-nano is kind 'dense'" in capsys.readouterr().err
