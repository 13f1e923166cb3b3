"""MemoryFormer on CUDA: the layer, a training run, a study and the bench (skipped without CUDA).

On CUDA the memory layer takes its reference path (`embedding_bag`); these tests check it
matches the CPU, trains under bf16-mixed on one device and with DDP on two, and that the
harness's entry points run there. Run them where a GPU is lent with benchmarks/gpu_check.sh
(which also times `harness bench --device cuda`); elsewhere, CI included, they report as
skipped. (No conftest.py here: a second one would shadow tests/conftest.py's importable names.)
"""

from __future__ import annotations

import pytest
import torch
from test_cli_train import TINY, harness  # tests/ is on the path (its conftest.py)

from harness.bench import run_bench
from harness.bench_model import run_model_bench
from harness.models import MemoryLayer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs CUDA: run benchmarks/gpu_check.sh on a GPU machine")


def test_layer_on_cuda_matches_the_cpu_values_and_gradients():
    torch.manual_seed(0)
    cpu = MemoryLayer(64, 48, chunk_size=8, bias=True, kernel="reference")
    gpu = MemoryLayer(64, 48, chunk_size=8, bias=True).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(3, 37, 64)
    outputs, grads = [], []
    for layer, xi in ((cpu, x.clone()), (gpu, x.cuda())):
        xi.requires_grad_(True)
        y = layer(xi)
        (y * torch.linspace(-1, 1, y.numel(), device=y.device).view_as(y)).sum().backward()
        outputs.append(y.cpu())
        grads.append((xi.grad.cpu(), layer.tables.grad.cpu()))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)


def test_bf16_autocast_on_cuda_keeps_fp32_tables():
    layer = MemoryLayer(64, 64).cuda()
    x = torch.randn(128, 64, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = torch.nn.functional.linear(x, torch.eye(64, device="cuda"))
        out = layer(y)
    out.float().sum().backward()
    assert layer.tables.dtype == torch.float32 and layer.tables.grad.dtype == torch.float32
    assert torch.isfinite(layer.tables.grad).all()


@pytest.mark.parametrize("devices", [1, 2])
def test_train_on_cuda_in_bf16_mixed(tmp_path, devices):
    if devices > torch.cuda.device_count():
        pytest.skip(f"DDP needs {devices} GPUs; this machine has {torch.cuda.device_count()}")
    result = harness(tmp_path, "train", *TINY, "--max-steps", "4", "--precision", "bf16",
                     "--set", "train.accelerator=gpu", "--set", f"train.devices={devices}",
                     "--set", f"data.cache_dir={tmp_path / 'cache'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "finished: val/loss" in result.stdout


def test_a_tiny_study_ablates_on_cuda(tmp_path):
    study = tmp_path / "tiny.yaml"
    study.write_text(
        "name: gpu-tiny\n"
        "base:\n  preset: memoryformer-nano\n  set: {model.n_layer: 1, model.d_model: 32, "
        "model.n_head: 2, data.tokenizer: byte, data.seq_len: 16, data.batch_size: 2, "
        "data.val_batches: 1, train.accelerator: gpu, train.precision: bf16, "
        f"data.cache_dir: {tmp_path / 'cache'}}}\n"
        "budget: {steps: 3, val_every: 3}\n"
        "axes:\n  preset: [dense-nano, memoryformer-nano]\n"
        "seeds: [0]\nobjectives: [val_loss]\n")
    result = harness(tmp_path, "ablate", str(study), "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    status = harness(tmp_path, "status", str(study))
    assert "2/2 cells finished" in status.stdout, status.stdout


def test_bench_times_on_cuda():
    rows = run_bench(widths=(64,), tokens=256, repeats=2, bandwidth_bytes=2**20, device="cuda")
    assert rows and all(r.device.startswith("cuda") and r.memory_ms and r.anchor_ms for r in rows)
    assert {r.kernel for r in rows} == {"reference"}  # embedding_bag: no fused kernel on CUDA
    models = run_model_bench(batch=2, seq_len=32, repeats=2, device="cuda")
    assert all(r.ms is not None for r in models), [r.note for r in models]
