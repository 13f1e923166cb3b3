"""Sliding-window perplexity and continuation scoring against brute-force per-token scoring."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness.data.tokenizers import byte_tokenizer
from harness.evaluate.perplexity import perplexity, sliding_windows, token_nll
from harness.evaluate.scoring import Scorer
from harness.models import build_model, preset

WINDOW = 16


@pytest.fixture(scope="module", params=["memoryformer-nano", "dense-nano"])
def model(request):
    torch.manual_seed(0)
    config = preset(request.param, n_layer=1, d_model=32, n_head=2, vocab_size=256,
                    context_length=WINDOW, init_std=0.5)  # large init: far from uniform logits
    return build_model(config).eval()


def tokens_of(text: str) -> torch.Tensor:
    return torch.tensor(list(text.encode()), dtype=torch.long)


TEXT = tokens_of("Now is the winter of our discontent made glorious summer by this sun of York;")


@torch.no_grad()
def brute_force_nll(model, tokens: torch.Tensor, start_of: dict[int, int]) -> torch.Tensor:
    """Each target t on its own: one forward pass over tokens[start_of[t] : t]."""
    out = []
    for t in range(1, len(tokens)):
        context = tokens[start_of[t]:t][None]  # (1, <= WINDOW)
        logprobs = F.log_softmax(model(context)[0, -1].double(), -1)
        out.append(-logprobs[tokens[t]])
    return torch.stack(out)


@pytest.mark.parametrize("stride", [1, 5, WINDOW])
def test_every_token_is_scored_once_with_the_schedules_context(stride):
    n = len(TEXT)
    windows = sliding_windows(n, WINDOW, stride)
    targets = [t for w in windows for t in range(w.begin + w.length - w.scored + 1,
                                                 w.begin + w.length + 1)]
    assert targets == list(range(1, n))
    for w in windows[1:]:  # after the first window, at least WINDOW - stride + 1 tokens of context
        first_new = w.begin + w.length - w.scored + 1
        assert first_new - w.begin >= WINDOW - stride + 1
    assert all(w.length <= WINDOW for w in windows)


@pytest.mark.parametrize("stride", [1, 5, WINDOW])
def test_sliding_window_equals_brute_force_per_token_scoring(model, stride):
    start_of = {}
    for w in sliding_windows(len(TEXT), WINDOW, stride):
        for t in range(w.begin + w.length - w.scored + 1, w.begin + w.length + 1):
            start_of[t] = w.begin
    fast = token_nll(model, TEXT, WINDOW, stride, batch_size=3)  # batches of unequal count
    torch.testing.assert_close(fast, brute_force_nll(model, TEXT, start_of), rtol=1e-5,
                               atol=1e-5)


def test_stride_one_gives_every_token_the_full_window(model):
    start_of = {t: max(0, t - WINDOW) for t in range(1, len(TEXT))}
    torch.testing.assert_close(token_nll(model, TEXT, WINDOW, 1),
                               brute_force_nll(model, TEXT, start_of), rtol=1e-5, atol=1e-5)


def test_perplexity_skips_the_separator_prefix(model):
    nll = token_nll(model, TEXT, WINDOW, 4)
    result = perplexity(model, TEXT, WINDOW, 4, prefix=2, num_bytes=len(TEXT) - 2)
    assert result.n == len(TEXT) - 2
    assert result.nll == pytest.approx(nll[1:].mean().item())
    assert result.ppl == pytest.approx(math.exp(result.nll))
    assert result.bpb == pytest.approx(result.nll / math.log(2))  # bytes = tokens here


@torch.no_grad()
def test_scorer_matches_direct_scoring_and_truncates_from_the_left(model):
    scorer = Scorer(model, byte_tokenizer(), WINDOW, batch_size=2)
    pairs = [("To be, or not to be", ": that is"), ("", "Hamlet"),
             ("A long context that is much longer than the window", " of sixteen")]
    results = scorer.loglikelihood(pairs)
    for (context, continuation), (total, greedy) in zip(pairs, results, strict=True):
        ctx = list(context.encode()) or [10, 10]  # an empty context is the separator "\n\n"
        cont = list(continuation.encode())
        full = torch.tensor((ctx + cont)[-(WINDOW + 1):])
        logprobs = F.log_softmax(model(full[None, :-1])[0].double(), -1)  # (T, V)
        targets = full[-len(cont):]
        rows = logprobs[-len(cont):]
        assert total == pytest.approx(rows.gather(-1, targets[:, None]).sum().item(), abs=1e-4)
        assert greedy == bool((rows.argmax(-1) == targets).all())


def test_trailing_whitespace_moves_to_the_continuation(model):
    scorer = Scorer(model, byte_tokenizer(), WINDOW)
    assert scorer.encode_pair("Q: yes or no? A: ", "yes") == (list(b"Q: yes or no? A:"),
                                                             list(b" yes"))
    assert scorer.encode_pair("", "x") == ([10, 10], [120])
