"""Linformer attention (Wang et al. 2020) in a causal form, for language modelling.

Linformer projects the T keys and values along the sequence to k rows with learned E, F (k, T):
softmax(Q (E K)^T / sqrt(hs)) (F V). Every row of E K mixes all T positions, the future
included, so as published it cannot train a causal language model. We use the prefix projection:
query t sees the projection of keys and values 0..t only,

    Kc_t = sqrt(k / (t+1)) sum_{j<=t} E[:, j] k_j      (k, hs), Vc_t likewise with F
    out_t = softmax(q_t Kc_t^T / sqrt(hs)) Vc_t

so no future token enters an earlier output, by construction. Column j of E belongs to absolute
position j, as in the paper, and a sequence shorter than the context uses E's first T columns.

Why this form: masking the future out of E K per query is the same sum computed as
(QK^T masked) E^T, quadratic in T, which defeats Linformer's purpose; chunking the sequence into
independent segments would change the model. The prefix form keeps Linformer's cost linear in T.

How it runs: chunkwise, so that nothing is held per position. With the sequence cut into chunks
of C positions, query t in chunk n reads the projections of the chunks before n, one (k, hs)
state per chunk (a prefix sum over chunks), plus its own chunk's keys j <= t directly:

    q_t Kc_t^T ~ q_t P_n^T + sum_{j in n, j<=t} (q_t k_j) E[:, j]
    out_t ~ w_t R_n + sum_{j in n, j<=t} (w_t F[:, j]) v_j

with P_n = sum_{j before chunk n} E[:, j] k_j^T and R_n likewise with F and v

(up to the sqrt(k / (t+1)) scales), where w_t are the softmax weights of the k scores. Both are
the published sums regrouped: 4 T k hs multiply-adds per head for the projections and their
read-outs, plus 2 T C (hs + k) inside the chunks, against T k hs values per head when Kc_t and
Vc_t were held for every position (4 MiB per sequence and block in fp32 at T = 256, k = 32,
d = 128; 1 GiB at T = 2048, k = 256).

Scale: E, F ~ N(0, 1/k), Linformer's Johnson-Lindenstrauss projection. A prefix sum of t+1 such
terms grows like sqrt(t+1), so Kc_t and Vc_t are scaled by sqrt(k / (t+1)): at initialisation a
projected row then has the size of one key (value) at every position, the logits the size of
softmax attention's, rather than sharpening and growing along the sequence. The scale is applied
to the query (which the scores are linear in) and to the hs outputs, cheaper than to the (k, hs)
projections.

E and F are shared by the heads of a block (the paper's headwise sharing, section 4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.attention import CausalAttention, sums_before
from harness.models.config import ModelConfig
from harness.models.cost import chunk_layout


class LinformerAttention(CausalAttention):
    def __init__(self, config: ModelConfig):
        super().__init__(config)
        k, context = config.resolved_attention_features, config.context_length
        self.proj_k = nn.Parameter(torch.empty(k, context))  # E
        self.proj_v = nn.Parameter(torch.empty(k, context))  # F
        nn.init.normal_(self.proj_k, std=k**-0.5)
        nn.init.normal_(self.proj_v, std=k**-0.5)
        prefix = (k / torch.arange(1, context + 1).float()).sqrt()[:, None]  # (T, 1)
        self.register_buffer("value_scale", prefix, persistent=False)
        self.register_buffer("score_scale", prefix / math.sqrt(self.head_dim), persistent=False)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        batch, heads, seq, hs = q.shape
        size, pad = chunk_layout(seq, self.chunk)
        q = q * self.score_scale[:seq].to(q.dtype)  # the scores' prefix scale, on the query
        # E[:, j] per position j, chunked: (n, C, k); padded positions have zero columns
        proj_k, proj_v = (F.pad(p[:, :seq], (0, pad)).t().reshape(-1, size, p.size(0))
                          for p in (self.proj_k, self.proj_v))
        q, k, v = (F.pad(t, (0, 0, 0, pad)).reshape(batch, heads, -1, size, hs) for t in (q, k, v))
        keys = sums_before(torch.einsum("nci,bhncd->bhnid", proj_k[:-1], k[:, :, :-1]))
        scores = (torch.einsum("bhncd,bhnid->bhnci", q, keys)  # the chunks before, then this one
                  + torch.einsum("bhncm,nmi->bhnci",
                                 torch.einsum("bhncd,bhnmd->bhncm", q, k).tril(), proj_k))
        weights = scores.softmax(dim=-1)  # (B, H, n, C, k)
        values = sums_before(torch.einsum("nci,bhncd->bhnid", proj_v[:-1], v[:, :, :-1]))
        out = (torch.einsum("bhnci,bhnid->bhncd", weights, values)
               + torch.einsum("bhncm,bhnmd->bhncd",
                              torch.einsum("bhnci,nmi->bhncm", weights, proj_v).tril(), v))
        out = out.flatten(2, 3)[:, :, :seq]  # (B, H, T, hs)
        return out * self.value_scale[:seq].to(out.dtype)
