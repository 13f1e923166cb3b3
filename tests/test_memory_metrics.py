"""Parameter, optimizer and peak-step memory (harness.metrics.memory) on built nano models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.metrics.memory import (
    PeakMemory,
    adamw_state_bytes,
    measure_peak,
    optimizer_state_bytes,
    param_bytes,
    training_state_bytes,
)
from harness.models import build_model, model_size, preset


@pytest.mark.parametrize("name", ["memoryformer-nano", "dense-nano"])
def test_param_bytes_split_tables_from_the_rest(name):
    cfg = preset(name)
    model = build_model(cfg)
    measured, analytic = param_bytes(model), model_size(cfg)
    assert measured.table_params == analytic.table_params
    assert measured.other_params == analytic.other_params
    assert measured.table_bytes == 4 * analytic.table_params == analytic.table_bytes
    assert measured.total_bytes == analytic.total_bytes
    assert measured.total_params == sum(p.numel() for p in model.parameters())
    if name == "dense-nano":
        assert measured.table_params == 0


def test_param_bytes_follow_the_dtype():
    model = build_model(preset("memoryformer-nano")).to(torch.bfloat16)
    measured = param_bytes(model)
    assert measured.total_bytes == 2 * measured.total_params


def lm_step(model: nn.Module, optimizer: torch.optim.Optimizer, tokens: torch.Tensor) -> None:
    logits = model(tokens[:, :-1])
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


SMALL = {"chunk_size": 4}  # 16-row tables: a nano model of 3 M parameters steps fast


def test_adamw_holds_two_fp32_states_per_parameter():
    cfg = preset("memoryformer-nano", **SMALL)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert optimizer_state_bytes(optimizer) == 0  # states are created by the first step
    lm_step(model, optimizer, torch.randint(0, cfg.vocab_size, (1, 9)))
    params = param_bytes(model).total_params
    tensors = len(list(model.parameters()))
    # torch's AdamW also keeps one fp32 `step` scalar per parameter tensor
    assert optimizer_state_bytes(optimizer) == adamw_state_bytes(params) + 4 * tensors
    assert adamw_state_bytes(params) == 8 * params


def test_training_state_bytes_is_weights_grads_and_adamw():
    cfg = preset("memoryformer-base")  # analytic: never built
    state = training_state_bytes(cfg)
    size = model_size(cfg)
    assert state.params == state.grads == size.total_bytes
    assert state.optimizer == 8 * size.total_params
    assert state.total == 16 * size.total_params


def test_measure_peak_sees_a_step_allocation():
    mib = 2**20

    def step():
        torch.ones(64 * mib // 4).add_(1)  # 64 MiB, touched: above glibc's mmap threshold

    peak = measure_peak(step)
    assert isinstance(peak, PeakMemory) and peak.device == "cpu"
    assert peak.method in ("vm_hwm", "ru_maxrss")
    assert peak.peak_bytes > 0 and peak.before_bytes > 0
    if peak.method == "vm_hwm":  # Linux: exact peak since the reset
        assert peak.growth_bytes >= 60 * mib


def test_measure_peak_of_a_training_step():
    cfg = preset("memoryformer-nano", **SMALL)
    torch.manual_seed(0)
    model = build_model(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, cfg.vocab_size, (2, 33))
    peak = measure_peak(lambda: lm_step(model, optimizer, tokens))
    assert peak.peak_bytes >= peak.before_bytes
    assert peak.growth_bytes >= 0
