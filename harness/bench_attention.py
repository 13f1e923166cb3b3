"""Every attention against softmax SDPA over context lengths, and where each one crosses over.

`harness bench --attention`. Table 2's point is that the efficient attentions are cheaper than
softmax at long context; this measures it on the machine at hand. One attention module (heads,
rotary and the attention itself, on projected Q, K, V of shape (B, T, d)) per kind and context,
all kinds of one context timed in the same process with their repeats interleaved, so a ratio
compares like with like: speed-up = softmax ms / attention ms (> 1: faster than softmax).

Softmax is `F.scaled_dot_product_attention` (the fastest exact attention torch has here). The
linear attentions run chunkwise (`harness.models.attention`). Linformer's k follows the harness
default, context / 8, up to Pythia's 2048 context and is then held at the Linformer paper's
k = 256 (its main setting; the paper keeps k fixed as n grows), unless --linformer-k fixes it;
k = context / 8 for every context would make Linformer quadratic in the context by design.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from harness.bench import (
    PASSES,
    _num,
    check_device,
    interleaved_medians,
    machine_line,
    synchronize,
)
from harness.models.attention_factory import build_attention
from harness.models.config import ATTENTIONS, ModelConfig

CONTEXTS = (128, 256, 512, 1024, 2048, 4096)
WIDTH, HEADS, BATCH = 256, 4, 2  # one Pythia-style block's attention at a CPU width
LINFORMER_K_CAP = 256  # the Linformer paper's main setting
REPEATS = 10  # per step; at context 2048 timings still vary by up to 25% between runs


@dataclass(frozen=True)
class AttentionRow:
    attention: str  # one of ATTENTIONS
    context: int  # T, also the module's context_length
    passes: str  # one of harness.bench.PASSES
    ms: float | None  # median; None when it failed (see note)
    softmax_ms: float | None  # softmax SDPA in the same interleaved run
    features: int | None  # Linformer's k or Performer's m; None for the others
    chunk: int  # model.attention_chunk of the linear attentions
    width: int
    heads: int
    batch: int
    threads: int
    note: str = ""
    device: str = "cpu"

    @property
    def speedup(self) -> float | None:
        if self.ms is None or self.softmax_ms is None:
            return None
        return self.softmax_ms / self.ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "speedup": self.speedup}


def linformer_k(context: int, fixed: int | None = None) -> int:
    """Linformer's projected length at this context (see the module docstring)."""
    if fixed is not None:
        return min(fixed, context)
    return max(min(context // 8, LINFORMER_K_CAP), 1)


def attention_config(kind: str, context: int, chunk: int, fixed_k: int | None = None,
                     width: int = WIDTH, heads: int = HEADS) -> ModelConfig:
    features = linformer_k(context, fixed_k) if kind == "linformer" else None
    return ModelConfig(name=f"bench-{kind}", kind="dense", vocab_size=64, context_length=context,
                       n_layer=1, d_model=width, n_head=heads, attention=kind,
                       attention_features=features, attention_chunk=chunk)


def run_attention_bench(
    contexts: Sequence[int] = CONTEXTS,
    attentions: Sequence[str] = ATTENTIONS,
    passes: Sequence[str] = PASSES,
    repeats: int = REPEATS,
    chunk: int = 64,
    fixed_k: int | None = None,
    width: int = WIDTH,
    heads: int = HEADS,
    batch: int = BATCH,
    seed: int = 0,
    device: str = "cpu",
) -> list[AttentionRow]:
    """Time each attention against softmax at each context; rows for every kind but softmax."""
    unknown = sorted(set(attentions) - set(ATTENTIONS)) + sorted(set(passes) - set(PASSES))
    if unknown:
        raise ValueError(f"unknown attention or pass {unknown}; allowed: {[*ATTENTIONS, *PASSES]}")
    kinds = ["softmax", *(kind for kind in attentions if kind != "softmax")]
    target = torch.device(device)
    rows = []
    for context in contexts:
        configs = {kind: attention_config(kind, context, chunk, fixed_k, width, heads)
                   for kind in kinds}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            modules = {kind: build_attention(config).to(target)
                       for kind, config in configs.items()}
            qkv = torch.randn(3, batch, context, width, device=target)  # Q, K, V: (B, T, d) each
        for pass_name in passes:
            steps = {kind: _step(module, qkv, pass_name == "forward+backward", target)
                     for kind, module in modules.items()}
            ms, note = interleaved_medians(steps, repeats)
            rows += [AttentionRow(kind, context, pass_name, ms[kind], ms["softmax"],
                                  configs[kind].resolved_attention_features, chunk, width, heads,
                                  batch, torch.get_num_threads(), note, str(target))
                     for kind in kinds if kind != "softmax"]
    return rows


def _step(module: torch.nn.Module, qkv: torch.Tensor, backward: bool, device: torch.device):
    if not backward:
        def forward() -> None:
            with torch.no_grad():
                module(*qkv)
            synchronize(device)
        return forward
    inputs = [x.clone().requires_grad_(True) for x in qkv]

    def forward_backward() -> None:
        for x in inputs:
            x.grad = None
        module.zero_grad(set_to_none=True)
        module(*inputs).sum().backward()
        synchronize(device)
    return forward_backward


def crossover(rows: Sequence[AttentionRow], attention: str, pass_name: str) -> str:
    """Where `attention` becomes faster than softmax and stays so over the contexts timed."""
    timed = sorted((row.context, row.speedup) for row in rows
                   if row.attention == attention and row.passes == pass_name
                   and row.speedup is not None)
    if not timed:
        return f"{attention} {pass_name}: not timed"
    faster_from = None
    for context, speedup in reversed(timed):
        if speedup < 1:
            break
        faster_from = context
    longest = timed[-1][0]
    if faster_from is None:
        return (f"{attention} {pass_name}: slower than softmax at every context up to "
                f"{longest} ({timed[-1][1]:.2f}x at {longest})")
    if faster_from == timed[0][0]:
        return (f"{attention} {pass_name}: faster than softmax at every context timed, "
                f"{faster_from}-{longest}")
    return (f"{attention} {pass_name}: faster than softmax from context {faster_from} on "
            f"({dict(timed)[faster_from]:.2f}x there, {timed[-1][1]:.2f}x at {longest})")


def format_attention_bench(rows: Sequence[AttentionRow]) -> str:
    if not rows:
        return "no benchmark rows"
    first = rows[0]
    kinds = list(dict.fromkeys(row.attention for row in rows))
    lines = [
        machine_line(first.device),
        f"torch {torch.__version__}, {first.threads} threads; one attention module, width "
        f"{first.width}, {first.heads} heads, batch {first.batch}, fp32; anchor: softmax "
        f"F.scaled_dot_product_attention (is_causal) in the same interleaved run; linear "
        f"attentions chunkwise, chunk {first.chunk}",
        f"{'context':>7} {'pass':>8} {'softmax ms':>10} "
        + " ".join(f"{kind + ' ms':>14} {'x':>6} {'k/m':>4}" for kind in kinds),
    ]
    groups = dict.fromkeys((row.context, row.passes) for row in rows)
    notes = []
    for context, pass_name in groups:
        group = {row.attention: row for row in rows
                 if (row.context, row.passes) == (context, pass_name)}
        cells = []
        for kind in kinds:
            row = group.get(kind)
            cells.append(f"{_num(row and row.ms, '.1f'):>14} "
                         f"{_num(row and row.speedup, '.2f', 'x'):>6} "
                         f"{row.features if row and row.features else '-':>4}")
        softmax = next(iter(group.values())).softmax_ms
        lines.append(f"{context:>7} {'fwd' if pass_name == 'forward' else 'fwd+bwd':>8} "
                     f"{_num(softmax, '.1f'):>10} " + " ".join(cells))
        notes += [f"{context} {pass_name}: {row.note}" for row in group.values() if row.note]
    lines += ["x = softmax ms / attention ms (> 1: faster than softmax); k/m = Linformer's "
              "projected length or Performer's feature count", "crossovers:"]
    passes = list(dict.fromkeys(row.passes for row in rows))
    lines += [f"  {crossover(rows, kind, pass_name)}" for pass_name in passes for kind in kinds]
    return "\n".join(lines + sorted(set(notes)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--attention", action="store_true",
                        help="time every attention against softmax SDPA over contexts instead")
    parser.add_argument("--contexts", type=int, nargs="+", default=list(CONTEXTS),
                        help="--attention: context lengths (default: %(default)s)")
    parser.add_argument("--linformer-k", type=int,
                        help="--attention: Linformer's k at every context (default: context / "
                             f"8, at most {LINFORMER_K_CAP})")
    parser.add_argument("--attention-chunk", type=int, default=64,
                        help="--attention: model.attention_chunk of the linear attentions "
                             "(default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    check_device(args.device)
    rows = run_attention_bench(args.contexts, repeats=args.repeats or REPEATS,
                               chunk=args.attention_chunk, fixed_k=args.linformer_k,
                               device=args.device)
    print(json.dumps([row.to_dict() for row in rows], indent=2) if args.json
          else format_attention_bench(rows))
    return 0
