"""Training throughput of a config: tokens/s of forward + backward + AdamW step, measured.

What `harness.models.matching.match_dense(on="throughput")` compares; the models stay pure and
this module does the timing. Random tokens, the CPU threads torch has (set them before calling
to compare machines), a few warm-up steps (first-call allocations, the fused lookup's build)
and then the median of the timed steps, robust to one slow step.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
from torch import nn

from harness.errors import ConfigError
from harness.models import ModelConfig, build_model

LEARNING_RATE = 1e-3  # any: the step's cost does not depend on it


def training_throughput(config: ModelConfig, batch: int = 4, seq_len: int | None = None,
                        warmup: int = 2, repeats: int = 5, seed: int = 0) -> float:
    """Tokens per second of one training step on (batch, seq_len) random tokens.

    seq_len defaults to the config's context; the loss is next-token cross-entropy over the
    seq_len - 1 predicted positions, but every one of batch * seq_len input tokens counts.
    """
    seq_len = config.context_length if seq_len is None else seq_len
    # seq_len >= 2: the loss needs one predicted position
    for name, value, low, top in (("batch", batch, 1, None),
                                  ("seq_len", seq_len, 2, config.context_length),
                                  ("warmup", warmup, 0, None), ("repeats", repeats, 1, None)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (
                top is not None and value > top):
            allowed = f"integers {low}..{top}" if top else f"integers >= {low}"
            raise ConfigError(f"throughput.{name}", f"{value!r} is not allowed; allowed: {allowed}")
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        torch.manual_seed(seed)
        model = build_model(config)
        tokens = torch.randint(0, config.vocab_size, (batch, seq_len))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    model.train()
    times = []
    for step in range(warmup + repeats):
        start = time.perf_counter()
        logits = model(tokens)  # (B, T, vocab)
        loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return batch * seq_len / statistics.median(times)


def throughput_measure(batch: int = 4, seq_len: int | None = None, warmup: int = 2,
                       repeats: int = 5) -> Callable[[ModelConfig], float]:
    """`training_throughput` with these settings, as the `measure` match_dense takes."""
    return partial(training_throughput, batch=batch, seq_len=seq_len, warmup=warmup,
                   repeats=repeats)
