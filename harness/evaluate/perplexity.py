"""Perplexity of a token stream by strided sliding windows (the Hugging Face recipe).

Windows of `window` inputs start every `stride` tokens; each scores only the targets no earlier
window scored, so every token is scored exactly once, with between window - stride + 1 and
`window` tokens of context (fewer only at the very start). stride = window is plain chunking;
smaller strides buy context with compute (window / stride forward passes per token).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harness.evaluate.stats import block_mean_stderr
from harness.models import LanguageModel

MIN_BLOCKS = 20  # batch means for the stderr: at least this many blocks


@dataclass(frozen=True)
class Window:
    begin: int  # first input token
    length: int  # inputs; targets are tokens[begin + 1 : begin + length + 1]
    scored: int  # the last `scored` targets are new: no earlier window scored them


def sliding_windows(num_tokens: int, window: int, stride: int) -> list[Window]:
    """Windows that score targets 1 .. num_tokens - 1 (token 0 has no context) exactly once."""
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be in 1..window={window}, not {stride}")
    windows: list[Window] = []
    scored_until = 0  # targets 1 .. scored_until are done
    for begin in range(0, max(num_tokens - 1, 0), stride):
        length = min(window, num_tokens - 1 - begin)
        last_target = begin + length
        windows.append(Window(begin, length, last_target - scored_until))
        scored_until = last_target
        if last_target == num_tokens - 1:
            break
    return windows


@torch.no_grad()
def token_nll(model: LanguageModel, tokens: torch.Tensor, window: int, stride: int,
              batch_size: int = 32, device: str = "cpu") -> torch.Tensor:
    """tokens (N,) int64 -> negative log-likelihood (nats) of targets 1 .. N - 1, shape (N - 1,),
    float64, in order."""
    spans = sliding_windows(len(tokens), window, stride)
    out = torch.empty(max(len(tokens) - 1, 0), dtype=torch.float64)
    # Windows of equal length batch together (all but the last are full).
    by_length: dict[int, list[Window]] = {}
    for span in spans:
        by_length.setdefault(span.length, []).append(span)
    for length, group in by_length.items():
        for start in range(0, len(group), batch_size):
            chunk = group[start:start + batch_size]
            rows = torch.stack([tokens[w.begin:w.begin + length + 1] for w in chunk])  # (B, L+1)
            logits = model(rows[:, :-1].to(device)).float()  # (B, L, V)
            nll = F.cross_entropy(logits.transpose(1, 2), rows[:, 1:].to(device),
                                  reduction="none").double().cpu()  # (B, L)
            for w, row in zip(chunk, nll, strict=True):
                end = w.begin + w.length  # last target index
                out[end - w.scored:end] = row[w.length - w.scored:]  # out[i] is target i + 1
    return out


@dataclass(frozen=True)
class Perplexity:
    n: int  # tokens scored
    nll: float  # mean nats per token
    nll_stderr: float  # batch means over blocks of up to a window (tokens are correlated)
    bytes: int  # UTF-8 bytes of the scored text, for bits per byte

    @property
    def ppl(self) -> float:
        return math.exp(self.nll)

    @property
    def bpb(self) -> float:
        """Bits per byte: comparable across tokenizers, unlike per-token perplexity."""
        return self.nll * self.n / (math.log(2) * self.bytes) if self.bytes else math.nan

    def metrics(self) -> dict[str, float]:
        return {"ppl": self.ppl, "ppl_stderr": self.ppl * self.nll_stderr,  # delta method
                "nll": self.nll, "nll_stderr": self.nll_stderr, "bpb": self.bpb}


def perplexity(model: LanguageModel, tokens: np.ndarray | torch.Tensor, window: int, stride: int,
               prefix: int, num_bytes: int, batch_size: int = 32,
               device: str = "cpu") -> Perplexity:
    """Perplexity of tokens[prefix:]; the first `prefix` tokens (a document separator) are only
    context, so the text's first token is scored too."""
    tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    if not 1 <= prefix < len(tokens):
        raise ValueError(f"prefix must be in 1..{len(tokens) - 1}, not {prefix}")
    nll = token_nll(model, tokens, window, stride, batch_size, device)[prefix - 1:]
    values = nll.tolist()
    # Blocks of one window, or smaller when that leaves fewer than MIN_BLOCKS (a short limit).
    block = max(1, min(window, len(values) // MIN_BLOCKS))
    return Perplexity(len(values), sum(values) / len(values), block_mean_stderr(values, block),
                      num_bytes)
