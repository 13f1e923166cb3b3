"""Zero-shot multiple choice by log-likelihood, scored as lm-evaluation-harness scores PIQA or ARC.

Each choice is a continuation of the example's context; the model picks the choice with the
highest log-likelihood (acc) or the highest log-likelihood per character of the continuation
(acc_norm, which stops long choices from losing only for being long).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from harness.evaluate.stats import mean_stderr

# (context, continuation) pairs -> log-likelihood of each continuation given its context
LogLikelihood = Callable[[Sequence[tuple[str, str]]], Sequence[float]]


@dataclass(frozen=True)
class MCExample:
    context: str
    choices: tuple[str, ...]  # continuations, scored as written (leading space included)
    gold: tuple[int, ...]  # indices of the correct choices (BIG-bench may mark several)


def pick(loglikelihoods: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(argmax of log-likelihood, argmax of log-likelihood / characters); ties go to the first."""
    raw = max(range(len(choices)), key=lambda i: (loglikelihoods[i], -i))
    norm = max(range(len(choices)),
               key=lambda i: (loglikelihoods[i] / max(len(choices[i]), 1), -i))
    return raw, norm


def score_examples(examples: Sequence[MCExample], loglikelihood: LogLikelihood
                   ) -> dict[str, float]:
    """acc, acc_norm and their standard errors (of the mean of 0/1 correctness)."""
    pairs = [(ex.context, choice) for ex in examples for choice in ex.choices]
    scores = list(loglikelihood(pairs))
    correct, correct_norm = [], []
    offset = 0
    for ex in examples:
        raw, norm = pick(scores[offset:offset + len(ex.choices)], ex.choices)
        offset += len(ex.choices)
        correct.append(float(raw in ex.gold))
        correct_norm.append(float(norm in ex.gold))
    n = len(examples)
    return {"acc": sum(correct) / n, "acc_stderr": mean_stderr(correct),
            "acc_norm": sum(correct_norm) / n, "acc_norm_stderr": mean_stderr(correct_norm),
            "chance": sum(len(ex.gold) / len(ex.choices) for ex in examples) / n}


def examples_digest(examples: Sequence[MCExample]) -> str:
    """Short sha256 of the examples: equal digests mean the same test set, choice for choice."""
    text = json.dumps([asdict(ex) for ex in examples], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
