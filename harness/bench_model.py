"""Whole models, MemoryFormer against its dense twin: tokens/s of a training step and a forward.

`harness bench --model`. The training step is what `harness train` runs per batch, less gradient
clipping: forward and loss, backward, and a fused AdamW step (train/module.py's optimizer), in
each precision a run can choose:
fp32 (`32`), or bf16 autocast over fp32 master weights (`bf16`, Lightning's `bf16-mixed`; the
memory layers keep fp32 tables and run on the fused kernel with bf16 activations). All models and
precisions of one pass are timed in the same process with their repeats interleaved, so ratios
compare like with like. The anchor is the fastest dense option: the dense twin in whichever
precision is faster here; vs anchor = MemoryFormer tokens/s / anchor tokens/s (> 1: faster).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from harness.bench import _num, check_device, interleaved_medians, machine_line, synchronize
from harness.models import build_model
from harness.models.presets import pair_of, preset
from harness.runs.config import PRECISIONS

PASSES = ("train", "forward")  # optimiser step (forward, backward, AdamW) or inference forward
BATCH, REPEATS = 16, 10


@dataclass(frozen=True)
class ModelRow:
    preset: str
    kind: str  # "memoryformer" or "dense"
    precision: str  # one of harness.runs.config.PRECISIONS
    passes: str  # one of PASSES
    batch: int
    seq_len: int
    ms: float | None  # median per step; None when it failed (see note)
    anchor: str  # "<dense preset> <precision>": the faster dense option, timed beside it
    anchor_ms: float | None
    threads: int
    device: str
    note: str = ""

    @property
    def tokens_per_s(self) -> float | None:
        return None if self.ms is None else self.batch * self.seq_len / (self.ms / 1e3)

    @property
    def anchor_speedup(self) -> float | None:
        """anchor ms / ms: against the fastest dense option (> 1: this model is faster)."""
        if self.ms is None or self.anchor_ms is None:
            return None
        return self.anchor_ms / self.ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_s": self.tokens_per_s,
                "anchor_speedup": self.anchor_speedup}


def run_model_bench(
    presets: Sequence[str] = ("memoryformer-nano",),
    batch: int = BATCH,
    seq_len: int | None = None,
    precisions: Sequence[str] = PRECISIONS,
    passes: Sequence[str] = PASSES,
    repeats: int = REPEATS,
    device: str = "cpu",
    seed: int = 0,
) -> list[ModelRow]:
    """Time each preset and its dense twin (pair_of) in every precision, per pass."""
    unknown = sorted(set(precisions) - set(PRECISIONS)) + sorted(set(passes) - set(PASSES))
    if unknown:
        raise ValueError(f"unknown precision or pass {unknown}; allowed: "
                         f"{[*PRECISIONS, *PASSES]}")
    target = torch.device(device)
    rows = []
    for name in presets:
        twin = pair_of(name)
        configs = {preset_name: preset(preset_name) for preset_name in (name, twin)}
        length = seq_len or configs[name].context_length
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models = {key: build_model(config).to(target) for key, config in configs.items()}
            tokens = torch.randint(0, configs[name].vocab_size, (batch, length + 1),
                                   device=target)  # (B, T + 1)
        for pass_name in passes:
            steps = {(key, precision): _step(models[key], tokens, precision, pass_name, target)
                     for key in models for precision in precisions}
            ms, note = interleaved_medians(steps, repeats)
            dense = [key for key in steps if configs[key[0]].kind == "dense"
                     and ms[key] is not None]
            best = min(dense, key=lambda key: ms[key], default=None)
            anchor = f"{best[0]} {best[1]}" if best else ""
            rows += [ModelRow(key, configs[key].kind, precision, pass_name, batch, length,
                              ms[(key, precision)], anchor, ms[best] if best else None,
                              torch.get_num_threads(), str(target), note)
                     for key, precision in steps]
    return rows


def _step(model: torch.nn.Module, tokens: torch.Tensor, precision: str, pass_name: str,
          device: torch.device) -> Callable[[], None]:
    """One call of the pass: the training step of train/module.py, or a forward."""
    def autocast() -> contextlib.AbstractContextManager:
        if precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    if pass_name == "forward":
        def forward() -> None:
            with torch.no_grad(), autocast():
                model(inputs)
            synchronize(device)
        return forward
    # tiny steps: timing must not depend on the weights drifting
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=True)

    def train_step() -> None:
        with autocast():
            logits = model(inputs)  # (B, T, vocab)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
    return train_step


def format_model_bench(rows: Sequence[ModelRow]) -> str:
    if not rows:
        return "no benchmark rows"
    first = rows[0]
    lines = [
        machine_line(first.device),
        f"torch {torch.__version__}, {first.threads} threads, batch {first.batch} x "
        f"{first.seq_len} tokens; train = forward, loss, backward and fused AdamW step; bf16 = "
        f"autocast over fp32 master weights (bf16-mixed)",
        f"{'preset':>22} {'precision':>9} {'pass':>7} {'ms':>8} {'tokens/s':>9} "
        f"{'anchor':>22} {'anchor ms':>9} {'vs anchor':>9}",
    ]
    for row in rows:
        lines.append(f"{row.preset:>22} {row.precision:>9} {row.passes:>7} "
                     f"{_num(row.ms, '.1f'):>8} {_num(row.tokens_per_s, '.0f'):>9} "
                     f"{row.anchor or '-':>22} {_num(row.anchor_ms, '.1f'):>9} "
                     f"{_num(row.anchor_speedup, '.2f', 'x'):>9}")
    lines.append("anchor = the faster dense option (the twin in fp32 or bf16), timed in the same "
                 "interleaved run; vs anchor = anchor ms / ms (> 1: faster than it)")
    return "\n".join(lines + sorted({row.note for row in rows if row.note}))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="store_true",
                        help="time whole models (MemoryFormer against its dense twin) instead")
    parser.add_argument("--presets", nargs="+", default=["memoryformer-nano"],
                        help="--model: presets to time, each beside its dense twin (default: "
                             "%(default)s)")
    parser.add_argument("--batch", type=int, default=BATCH, help="--model: sequences per step "
                        "(default: %(default)s)")
    parser.add_argument("--seq-len", type=int,
                        help="--model: tokens per sequence (default: the preset's context)")


def main(args: argparse.Namespace) -> int:
    check_device(args.device)
    rows = run_model_bench(args.presets, args.batch, args.seq_len,
                           repeats=args.repeats or REPEATS, device=args.device)
    print(json.dumps([row.to_dict() for row in rows], indent=2) if args.json
          else format_model_bench(rows))
    return 0
