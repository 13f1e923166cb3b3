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


BANNERS = ("GPU available", "TPU available", "Tip:", "litlogger", "litmodels", "weights_only",
           "Epoch 0", "Validation", "Creating initial MLflow database", "max_steps=",
           "A new study created")


def bar_lines(stderr: str) -> list[str]:
    """tqdm's redraws of one line (carriage returns), as separate strings."""
    return [part for line in stderr.splitlines() for part in line.split("\r") if part.strip()]


def test_train_prints_a_header_one_bar_and_where_its_run_is(tmp_path):
    result = harness(tmp_path, "train", *TINY, "--max-steps", "3",
                     "--set", f"data.cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 0, result.stderr
    out, err = result.stdout.splitlines(), bar_lines(result.stderr)
    assert err[0].startswith("model: memoryformer-nano (memoryformer, 1 blocks, d 32), ")
    assert err[1].startswith("data:  shakespeare, byte tokenizer, ")
    assert "3 steps of 4 x 32" in err[1]
    assert err[2].startswith("store: sqlite:///") and "experiment 'train', run " in err[2]
    bars = err[3:]
    assert bars and all(line.startswith("train: ") for line in bars)  # one bar, no other
    assert "3/3" in bars[-1] and "loss=" in bars[-1]
    assert not [line for line in result.stdout.splitlines() + err
                if any(banner in line for banner in BANNERS)]
    assert len(out) == 3  # the closing lines, and nothing else on stdout
    assert out[0].startswith("run ") and "finished: val/loss" in out[0]
    assert out[1].startswith("checkpoint: ") and out[1].endswith("last.ckpt")
    assert out[2].startswith("browse it:  harness ui")
    assert (tmp_path / ".harness" / "mlflow.db").exists()


def test_a_study_prints_one_bar_of_cells_and_what_it_ran(tmp_path):
    study = tmp_path / "tiny.yaml"
    study.write_text(f"""name: tiny
base:
  preset: memoryformer-nano
  set: {{model.n_layer: 1, model.d_model: 32, model.n_head: 2, data.tokenizer: byte,
         data.seq_len: 32, data.batch_size: 4, data.val_batches: 1,
         data.cache_dir: {tmp_path / 'cache'}}}
budget: {{steps: 4, val_every: 2}}
axes: {{model.chunk_size: [4, 8]}}
seeds: [0]
""")
    first = harness(tmp_path, "ablate", str(study))
    assert first.returncode == 0, first.stderr
    err = bar_lines(first.stderr)
    assert not [line for line in first.stdout.splitlines() + err
                if any(banner in line for banner in BANNERS)]
    drawn = [line for line in err if line.strip("\x1b[A ")]  # not the cleared trial bar
    # the study's bar of cells, and under it each running cell's bar of steps
    assert {line.split(":")[0] for line in drawn} == {"tiny", "chunk_size=4,seed=0",
                                                      "chunk_size=8,seed=0"}
    assert any(line.startswith("chunk_size=4,seed=0:") and "step" in line for line in drawn)
    assert "2/2" in [line for line in drawn if line.startswith("tiny:")][-1]
    out = first.stdout.splitlines()
    assert [line.split(" [")[0] for line in out[:2]] == ["trial 0", "trial 1"]
    assert out[2] == "study tiny: 2 cells finished: 2 trained now, 0 already done (not run again)"
    assert out[3].startswith("next: `harness report tiny` writes reports/tiny/; `harness ui` ")
    again = harness(tmp_path, "ablate", str(study))
    assert again.returncode == 0, again.stderr
    assert "study tiny: 2 cells finished: 0 trained now, 2 already done (not run again)" in (
        again.stdout.splitlines())


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
