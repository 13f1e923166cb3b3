"""Performer attention (Choromanski et al. 2021, FAVOR+): positive orthogonal random features.

softmax's kernel is an expectation over w ~ N(0, I): exp(q^T k / sqrt(hs)) = E_w[phi(q) phi(k)],
phi(x) = exp(w^T x - |x|^2 / 2) with x = q / hs^(1/4) (k likewise). m features w_1..w_m estimate
it, and the causal sums are carried chunk to chunk (`attention.causal_linear_attention`), linear in
T.

- Features: blocks of hs orthonormal directions (QR of a Gaussian matrix, with the signs fixed
  so that each direction is uniform: performer-pytorch's `qr_uniform_q`, off by default there,
  and without it the estimate is biased), each row scaled to the norm of an independent
  Gaussian vector, so every row is marginally N(0, I) and rows of a block are exactly orthogonal
  (FAVOR+'s orthogonal random features, lower variance than i.i.d. ones).
  Drawn by a seeded generator (hash_seed, block index, draw number) and kept in a buffer, saved
  with the model, so a reloaded model computes exactly what the saved one did. The buffer holds
  w / hs^(1/4), so that the einsum gives w^T x directly.
- Redraw: in training mode only, every `feature_redraw` forward calls (0 = never), the features
  become draw number calls // feature_redraw. The call count is saved with the model (extra
  state), so a resumed run keeps the schedule; eval mode never redraws or counts.
- Stability: exp's argument is shifted before exp, as FAVOR+ implementations do, by amounts that
  cancel between the numerator and the denominator. A query's features are divided by their max
  (one constant per query). FAVOR+ implementations divide the keys by their max over the whole
  sequence, which reads future positions; we instead divide key feature f by its largest possible
  value, exp(|w_f|^2 / 2) (w^T x - |x|^2 / 2 = |w|^2 / 2 - |x - w|^2 / 2), and multiply the
  query's feature f by the same factor, so each product phi_f(q) phi_f(k) is unchanged. Keys
  then never overflow (phi_f(k) = exp(-|x - w_f|^2 / 2) <= 1), and nothing crosses positions.
  The price: a key farther than sqrt(174) from every w_f underflows to 0 in fp32 (at init
  |x - w|^2 / 2 is about hs / 2, so this needs heads far wider than Pythia's 64 dims).
  The query's |x|^2 / 2 and FAVOR+'s 1 / sqrt(m) are constants of one query's sums and are left
  out; the max is detached (it cancels, so it carries no gradient).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch

from harness.models.attention import CausalAttention, causal_linear_attention
from harness.models.config import ModelConfig


def orthogonal_features(count: int, dims: int, seed: int) -> torch.Tensor:
    """(count, dims) rows, orthogonal within each block of `dims`, marginally N(0, I); on CPU."""
    generator = torch.Generator().manual_seed(seed)
    blocks = []
    for _ in range(-(-count // dims)):
        gaussian = torch.randn(dims, dims, generator=generator, device="cpu")
        q, r = torch.linalg.qr(gaussian)
        # Householder QR fixes R's diagonal signs by the data, which tilts Q's columns (LAPACK:
        # the first column always has a negative first entry); signs of diag(R) make Q Haar
        # distributed, so each feature direction is uniform (Mezzadri 2007)
        blocks.append((q * r.diagonal().sign()).T)  # orthonormal rows
    norms = torch.randn(count, dims, generator=generator, device="cpu").norm(dim=1)  # chi(dims)
    return torch.cat(blocks)[:count] * norms[:, None]


def draw_seed(hash_seed: int, index: int, draw: int) -> int:
    """One generator seed per (hash_seed, block, draw). The CPU generator keeps only the low 32
    bits of a seed, so the three are hashed into 32 bits rather than packed side by side."""
    key = f"performer:{hash_seed}:{index}:{draw}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=4).digest(), "little")


class PerformerAttention(CausalAttention):
    def __init__(self, config: ModelConfig, index: int = 0):
        super().__init__(config)
        self.redraw = config.feature_redraw
        self.seeds = (config.hash_seed, index)
        self.calls = 0  # training forward calls so far
        self.draw = 0  # which draw the buffer holds
        m = config.resolved_attention_features
        self.register_buffer("features", torch.empty(m, self.head_dim))  # w / hs^(1/4)
        self.register_buffer("feature_bound", torch.empty(m))  # |w|^2 / 2 of each row
        self.set_features(0)

    @torch.no_grad()
    def set_features(self, draw: int) -> None:
        """Make the buffers hold draw number `draw`, in place (keeps the buffers' device)."""
        m, hs = self.features.shape
        w = orthogonal_features(m, hs, draw_seed(*self.seeds, draw))
        self.features.copy_(w * hs**-0.25)
        self.feature_bound.copy_(w.square().sum(-1) / 2)
        self.draw = draw

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.training:
            if self.redraw and self.calls // self.redraw != self.draw:
                self.set_features(self.calls // self.redraw)
            self.calls += 1
        features = self.features.to(q.dtype)
        bound = self.feature_bound.to(q.dtype)
        # keys: exp(w^T x - |x|^2/2 - |w|^2/2), at most 1
        half_square = (k * k).sum(-1, keepdim=True) * (0.5 / math.sqrt(self.head_dim))
        key_logits = torch.einsum("bhtd,md->bhtm", k, features) - bound - half_square
        # queries: exp(w^T x + |w|^2/2 - max), at most 1
        query_logits = torch.einsum("bhtd,md->bhtm", q, features) + bound
        query_logits = query_logits - query_logits.amax(-1, keepdim=True).detach()
        eps = torch.finfo(v.dtype).tiny  # guards only an all-underflow 0/0
        return causal_linear_attention(query_logits.exp(), key_logits.exp(), v, eps, self.chunk)

    def get_extra_state(self) -> Any:
        return torch.tensor([self.calls, self.draw])

    def set_extra_state(self, state: Any) -> None:
        self.calls, self.draw = (int(n) for n in state)
