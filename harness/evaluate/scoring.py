"""Log-likelihood of continuations given contexts: the one primitive of zero-shot evaluation.

Requests are scored in batches of similar length, right-padded: the model is causal, so padding
after a sequence cannot change the logits of the positions before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.data import Tokenizer
from harness.models import LanguageModel

TokenRequest = tuple[Sequence[int], Sequence[int]]  # (context ids, continuation ids)


@dataclass(frozen=True)
class Scorer:
    model: LanguageModel
    tokenizer: Tokenizer
    window: int  # tokens in one forward pass: the run's training sequence length
    batch_size: int = 32
    device: str = "cpu"  # where the model is: "cpu", "cuda", "cuda:1"

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Token ids of (context, continuation), as lm-evaluation-harness splits them.

        Trailing whitespace of the context moves to the continuation (BPEs attach a space to the
        word after it), and the continuation is what encoding the whole adds to the context's
        ids. An empty context becomes the document separator: the model sees a document start.
        """
        if not context:
            return list(self.tokenizer.separator), self.tokenizer.encode(continuation)
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = self.tokenizer.encode(context + continuation)
        context_ids = self.tokenizer.encode(context)
        return context_ids, whole[len(context_ids):]

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(log P(continuation | context), whether greedy decoding gives it) per text pair."""
        return self.loglikelihood_tokens([self.encode_pair(c, x) for c, x in pairs])

    @torch.no_grad()
    def loglikelihood_tokens(self, requests: Sequence[TokenRequest]) -> list[tuple[float, bool]]:
        """Like loglikelihood, on token ids. Context beyond the window is cut from the left; a
        continuation longer than the window is scored on its last `window` tokens."""
        sequences = [self._truncate(list(ctx), list(cont)) for ctx, cont in requests]
        # Longest first, so each batch pads little and the first batch shows the peak memory.
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(sequences)
        for start in range(0, len(order), self.batch_size):
            batch = [sequences[i] for i in order[start:start + self.batch_size]]
            for i, result in zip(order[start:start + self.batch_size], self._score_batch(batch),
                                 strict=True):
                results[i] = result
        return results

    def _truncate(self, context: list[int], continuation: list[int]) -> tuple[list[int], int]:
        """(inputs + last target, number of scored targets at the end)."""
        if not continuation:
            raise ValueError("an empty continuation has no log-likelihood to score")
        tokens = (context + continuation)[-(self.window + 1):]
        return tokens, min(len(continuation), len(tokens) - 1)

    def _score_batch(self, batch: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        length = max(len(tokens) for tokens, _ in batch) - 1
        inputs = torch.zeros(len(batch), length, dtype=torch.long)  # (B, T), right-padded
        for row, (tokens, _) in enumerate(batch):
            inputs[row, :len(tokens) - 1] = torch.tensor(tokens[:-1])
        logprobs = F.log_softmax(self.model(inputs.to(self.device)).float(), dim=-1)  # (B, T, V)
        out = []
        for row, (tokens, scored) in enumerate(batch):
            end = len(tokens) - 1  # the last input position of this row
            targets = torch.tensor(tokens[-scored:], device=self.device)  # (scored,)
            rows = logprobs[row, end - scored:end]  # (scored, V): position t predicts t + 1
            total = rows.gather(-1, targets[:, None]).sum().item()
            greedy = bool((rows.argmax(-1) == targets).all())
            out.append((total, greedy))
        return out
