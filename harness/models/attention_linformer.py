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
segments would change the model. The prefix form keeps Linformer's cost linear in T (4 T k d
multiply-adds per block: E K, F V, the scores and the weighted sum), at the price of holding
Kc_t and Vc_t for every position, (B, H, T, k, hs) each: T k d values, 4 MiB per sequence and
block in fp32 at T = 256, k = 32, d = 128.

Scale: E, F ~ N(0, 1/k), Linformer's Johnson-Lindenstrauss projection. A prefix sum of t+1 such
terms grows like sqrt(t+1), so Kc_t and Vc_t are scaled by sqrt(k / (t+1)): at initialisation a
projected row then has the size of one key (value) at every position, the logits the size of
softmax attention's, rather than sharpening and growing along the sequence. The scale is applied
to the k scores and the hs outputs, which is cheaper than to the (k, hs) projections.

E and F are shared by the heads of a block (the paper's headwise sharing, section 4).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harness.models.attention import CausalAttention
from harness.models.config import ModelConfig


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
        seq = q.size(-2)
        # outer products E[:, j] k_j, summed over j <= t by the cumsum
        keys = torch.einsum("it,bhtd->bhtid", self.proj_k[:, :seq], k).cumsum(2)  # (B,H,T,k,hs)
        values = torch.einsum("it,bhtd->bhtid", self.proj_v[:, :seq], v).cumsum(2)
        scores = torch.einsum("bhtd,bhtid->bhti", q, keys)  # (B, H, T, k)
        weights = (scores * self.score_scale[:seq].to(scores.dtype)).softmax(dim=-1)
        out = torch.einsum("bhti,bhtid->bhtd", weights, values)  # (B, H, T, hs)
        return out * self.value_scale[:seq].to(out.dtype)
