"""Forward FLOPs counted on the traced model with fvcore, and nothing dropped silently.

The only module of the harness that imports fvcore (lazily: importing it costs nothing).

Convention (the same as the analytic formulas of `harness.models.cost`, which tests hold equal
to this count): one multiply-add = 1 FLOP, as fvcore and the paper count. Two figures:

- matrix-like multiply-adds, split by module into `attention` (ops inside a
  CausalAttention: QK^T and AV over the full score matrix, the paper's 2 s^2 d, or an efficient
  attention's contractions, see `harness.models.cost`) and
  `non_attention` (linear layers without bias, memory layers' weighted row sums from
  aten::embedding_bag, SimHash combinations from aten::einsum, the LM head). Their sum, `total`,
  is what the paper's Table 1 counts (12 s d^2 + 2 s^2 d for a dense block).
- `elementwise`: layer norms, softmax, rotary, activations, bias and residual adds, the memory
  layers' hash and weights; one FLOP per output value (per input value for reductions).

Every operator in the trace needs an explicit handle (`op_handles.HANDLES`) or an explicit entry in
`op_handles.ZERO_COST` (views, reads, casts). fvcore reports ops it has no handle for and silently
skips a built-in list of "free" ops (including aten::ge, aten::clamp, aten::gather); we empty that
list, so an op in neither of our tables raises UnhandledOperatorError, listing them, instead of
returning a smaller number.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harness.metrics.op_handles import HANDLES, MATRIX_KEYS, ZERO_COST, zero
from harness.models import ModelConfig, build_block, build_model
from harness.models.attention import CausalAttention
from harness.models.cost import Totals


class UnhandledOperatorError(RuntimeError):
    """The trace holds operators with no FLOP handle; counting them as 0 could hide real work."""

    def __init__(self, ops: Counter):
        listed = ", ".join(f"{op} (x{n})" for op, n in sorted(ops.items()))
        super().__init__(f"no FLOP handle for: {listed}; add a handle to "
                         "harness/metrics/op_handles.py (HANDLES, or ZERO_COST if it computes "
                         "nothing) and its formula to harness/models/cost.py")
        self.ops = dict(ops)


@dataclass(frozen=True)
class FlopCount(Totals):
    """A measured forward count; fields as in `harness.models.cost.ForwardCost`."""

    attention: int
    non_attention: int
    elementwise: int
    by_operator: dict[str, int] = field(default_factory=dict)  # every key, whole module
    by_module: dict[str, int] = field(default_factory=dict)  # matrix-like, per submodule name


def count_flops(module: nn.Module, *inputs: torch.Tensor) -> FlopCount:
    """Trace module(*inputs) once and count every operator by our handles."""
    analysis = _strict_analysis(module, inputs)
    with torch.no_grad():
        per_module = analysis.by_module_and_operator()
    unhandled = analysis.unsupported_ops()
    if unhandled:
        raise UnhandledOperatorError(unhandled)
    attention_names = {name for name, sub in module.named_modules()
                       if isinstance(sub, CausalAttention)}
    # An op counts toward its owning module and every ancestor; take the outermost attention
    # modules only so that nested ones are not counted twice.
    outermost = {n for n in attention_names
                 if not any(n.startswith(a + ".") for a in attention_names)}
    attention = sum(_matrix(per_module[n]) for n in outermost)
    everything = per_module[""]
    matrix = _matrix(everything)
    return FlopCount(
        attention=attention,
        non_attention=matrix - attention,
        elementwise=sum(everything.values()) - matrix,
        by_operator={key: int(n) for key, n in sorted(everything.items())},
        by_module={name: _matrix(ops) for name, ops in per_module.items()},
    )


def count_block_flops(config: ModelConfig, seq_len: int, batch: int = 1) -> FlopCount:
    """One block built with `build_block` (how paper-size presets are counted)."""
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        torch.manual_seed(0)
        block = build_block(config)
        x = torch.randn(batch, seq_len, config.d_model)
    return count_flops(block, x)


def count_model_flops(config: ModelConfig, seq_len: int, batch: int = 1) -> FlopCount:
    """The whole language model; `build_model` refuses presets that do not fit in memory."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(config)
        tokens = torch.randint(0, config.vocab_size, (batch, seq_len))
    return count_flops(model, tokens)


def _matrix(ops: Counter) -> int:
    return int(sum(n for key, n in ops.items() if key in MATRIX_KEYS))


def _strict_analysis(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Any:
    with warnings.catch_warnings():
        # fvcore 0.1.5 (its last release, 2022) runs torch.jit.script on its own loss functions
        # at import; torch 2.13 deprecates torch.jit.script. Harmless for tracing.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                                category=DeprecationWarning)
        from fvcore.nn.jit_analysis import JitModelAnalysis

    analysis = JitModelAnalysis(module, inputs)
    # fvcore skips ops in its module-level _IGNORED_OPS without any handle (aten::ge, aten::clamp,
    # aten::relu, aten::gather, ...): empty that set so that every op needs a handle of ours.
    # fvcore is pinned (constraints.txt) and has no release since 2022, so the attribute is stable;
    # the test with an op from that list guards it.
    if not isinstance(getattr(analysis, "_ignored_ops", None), set):
        raise RuntimeError("fvcore's JitModelAnalysis changed: no _ignored_ops set to clear")
    analysis._ignored_ops = set()
    analysis.set_op_handle(**HANDLES)
    analysis.set_op_handle(**dict.fromkeys(ZERO_COST, zero))
    # We raise on unhandled ops ourselves; fvcore's default is a logged warning.
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    # TracerWarnings (Python bools of traced values inside F.embedding_bag's checks) concern
    # replaying the trace on other inputs; we only read the ops of this one trace.
    analysis.tracer_warnings("no_tracer_warning")
    return analysis
