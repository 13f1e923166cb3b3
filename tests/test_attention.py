"""The four attentions (SPEC Table 2) against slow references that loop over positions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness.models import ConfigError, ModelConfig, build_block, build_model, model_size, preset
from harness.models.attention import SoftmaxAttention
from harness.models.attention_cosformer import EPS as COSFORMER_EPS
from harness.models.attention_factory import build_attention
from harness.models.attention_performer import PerformerAttention, draw_seed, orthogonal_features

ATTENTIONS = ["softmax", "linformer", "cosformer", "performer"]
B, H, T, HS = 2, 2, 6, 4


def small_config(attention: str, **changes) -> ModelConfig:
    shape = dict(kind="dense", vocab_size=32, context_length=8, n_layer=1, d_model=H * HS,
                 n_head=H, attention=attention, attention_features=3)
    return ModelConfig(**{**shape, **changes})


def heads(seed: int = 0, shape=(B, H, T, HS), scale: float = 1.0) -> list[torch.Tensor]:
    """q, k, v (B, H, T, hs) float64, requiring grad."""
    g = torch.Generator().manual_seed(seed)
    return [(scale * torch.randn(shape, generator=g, dtype=torch.float64)).requires_grad_()
            for _ in range(3)]


# --- slow, obviously correct references: one position (pair) at a time --------------------

def softmax_reference(q, k, v):
    outs = []
    for t in range(q.size(2)):
        scores = (q[:, :, t, None] * k[:, :, : t + 1]).sum(-1) / math.sqrt(q.size(-1))
        outs.append((scores.softmax(-1)[..., None] * v[:, :, : t + 1]).sum(2))
    return torch.stack(outs, dim=2)


def linformer_reference(q, k, v, proj_k, proj_v):
    rows, hs = proj_k.size(0), q.size(-1)
    outs = []
    for t in range(q.size(2)):
        scale = math.sqrt(rows / (t + 1))
        keys = scale * sum(proj_k[:, j, None] * k[:, :, j, None] for j in range(t + 1))
        values = scale * sum(proj_v[:, j, None] * v[:, :, j, None] for j in range(t + 1))
        scores = (q[:, :, t, None] * keys).sum(-1) / math.sqrt(hs)  # (B, H, k)
        outs.append((scores.softmax(-1)[..., None] * values).sum(2))
    return torch.stack(outs, dim=2)


def cosformer_reference(q, k, v, context):
    outs = []
    for i in range(q.size(2)):
        num, den = 0.0, 0.0
        for j in range(i + 1):
            weight = math.cos(math.pi / 2 * (i - j) / context)
            s = (q[:, :, i].relu() * k[:, :, j].relu()).sum(-1) * weight  # (B, H)
            num, den = num + s[..., None] * v[:, :, j], den + s
        outs.append(num / den.clamp_min(COSFORMER_EPS)[..., None])
    return torch.stack(outs, dim=2)


def performer_reference(q, k, v, w):
    """FAVOR+ as written: phi(x) = exp(w^T x - |x|^2/2) / sqrt(m), x = q / hs^(1/4)."""
    hs, m = q.size(-1), w.size(0)

    def phi(x):
        x = x / hs**0.25
        return torch.exp(x @ w.T - (x * x).sum(-1, keepdim=True) / 2) / math.sqrt(m)

    outs = []
    for i in range(q.size(2)):
        num, den = 0.0, 0.0
        for j in range(i + 1):
            s = (phi(q[:, :, i]) * phi(k[:, :, j])).sum(-1)  # (B, H)
            num, den = num + s[..., None] * v[:, :, j], den + s
        outs.append(num / den[..., None])
    return torch.stack(outs, dim=2)


def reference(attention, module, q, k, v):
    if attention == "softmax":
        return softmax_reference(q, k, v)
    if attention == "linformer":
        return linformer_reference(q, k, v, module.proj_k, module.proj_v)
    if attention == "cosformer":
        return cosformer_reference(q, k, v, module.cos.size(0))
    return performer_reference(q, k, v, module.features * q.size(-1) ** 0.25)


def assert_same_values_and_gradients(fast, slow, inputs, rtol, atol):
    """fast == slow, and so are their gradients with respect to every input (one random
    weighting of the outputs, the same for both)."""
    weights = torch.randn(fast.shape, dtype=torch.float64)
    fast_grads = torch.autograd.grad((fast * weights).sum(), inputs)
    slow_grads = torch.autograd.grad((slow * weights).sum(), inputs)
    torch.testing.assert_close(fast, slow, rtol=rtol, atol=atol)
    for fast_grad, slow_grad in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(fast_grad, slow_grad, rtol=rtol, atol=atol)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_attend_equals_the_reference_in_values_and_gradients(attention):
    torch.manual_seed(0)
    module = build_attention(small_config(attention)).double()
    q, k, v = heads()
    params = list(module.parameters())
    # the modules' constant buffers (cos, sin, prefix scales) are computed in fp32
    assert_same_values_and_gradients(module.attend(q, k, v),
                                     reference(attention, module, q, k, v), [q, k, v, *params],
                                     rtol=1e-5, atol=1e-7)
    assert len(params) == (2 if attention == "linformer" else 0)  # E and F


def test_cosformer_zero_features_give_a_zero_output_not_nan():
    module = build_attention(small_config("cosformer")).double()
    q, k, v = heads()
    out = module.attend(-q.detach().abs(), k, v)  # relu(q) = 0: the denominator is clamped
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_forward_applies_rotary_to_q_and_k_then_attends(attention):
    module = build_attention(small_config(attention, rotary_pct=1.0)).double()
    assert module.rotary.dims == HS
    q, k, v = (t.detach() for t in heads())
    flat = [t.transpose(1, 2).reshape(B, T, H * HS) for t in (q, k, v)]  # (B, T, d)
    expected = module.attend(module.rotary(q), module.rotary(k), v)
    torch.testing.assert_close(module(*flat), expected.transpose(1, 2).reshape(B, T, H * HS))


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_no_output_depends_on_a_later_input(attention):
    module = build_attention(small_config(attention, rotary_pct=0.5)).double()
    q, k, v = heads(seed=1)
    flat = [t.detach().transpose(1, 2).reshape(B, T, H * HS).requires_grad_() for t in (q, k, v)]
    out = module(*flat)  # (B, T, d)
    for t in range(T - 1):
        grads = torch.autograd.grad(out[:, t].sum(), flat, retain_graph=True)
        assert all(torch.equal(g[:, t + 1:], torch.zeros_like(g[:, t + 1:])) for g in grads)
        assert grads[2][:, : t + 1].abs().sum() > 0  # it does read the values up to t
    # and by perturbation: new inputs after position 3 leave positions 0..3 bit for bit
    changed = [x.detach().clone() for x in flat]
    for x in changed:
        x[:, 4:] += 1.0
    with torch.no_grad():
        before, after = module(*flat), module(*changed)
    assert torch.equal(before[:, :4], after[:, :4])
    assert not torch.allclose(before[:, 4:], after[:, 4:])


@pytest.mark.parametrize("kind", ["dense", "memoryformer"])
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_language_model_of_each_kind_and_attention_trains(kind, attention):
    cfg = preset(f"{kind}-nano", n_layer=2, attention=attention)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert all(isinstance(block.attn, type(build_attention(cfg))) for block in model.blocks)
    tokens = torch.randint(0, cfg.vocab_size, (2, 33))
    logits = model(tokens[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    size = model_size(cfg)
    assert sum(p.numel() for p in model.parameters()) == size.total_params
    # the whole model stays causal
    model.eval()
    other = tokens.clone()
    other[:, 20:] = (other[:, 20:] + 1) % cfg.vocab_size
    with torch.no_grad():
        torch.testing.assert_close(model(tokens)[:, :20], model(other)[:, :20], rtol=0, atol=1e-6)


def test_linformer_memory_at_a_cpu_context():
    # T = 256, k = 64, d = 128 (the nano shape): one (k, hs) projection per chunk, not position
    cfg = preset("dense-nano", n_layer=1, attention="linformer", attention_features=64)
    model = build_model(cfg)
    model(torch.randint(0, cfg.vocab_size, (2, 256))).logsumexp(-1).mean().backward()
    assert model.blocks[0].attn.proj_k.grad.shape == (64, 256)


# --- the chunkwise form against the per-position prefix form it replaced ---------------------

def prefix_linear_attention(phi_q, phi_k, v, eps):
    """The kernelised causal attention as it ran before chunking: a state per position."""
    states = torch.einsum("bhtf,bhte->bhtfe", phi_k, v).cumsum(2)  # S_t: (B, H, T, f, hs)
    numerator = torch.einsum("bhtf,bhtfe->bhte", phi_q, states)
    denominator = torch.einsum("bhtf,bhtf->bht", phi_q, phi_k.cumsum(2))
    return numerator / denominator.clamp_min(eps).unsqueeze(-1)


def prefix_linformer(module, q, k, v):
    """LinformerAttention.attend as it ran before chunking: (B, H, T, k, hs) projections."""
    seq = q.size(-2)
    keys = torch.einsum("it,bhtd->bhtid", module.proj_k[:, :seq], k).cumsum(2)
    values = torch.einsum("it,bhtd->bhtid", module.proj_v[:, :seq], v).cumsum(2)
    scores = torch.einsum("bhtd,bhtid->bhti", q, keys)
    weights = (scores * module.score_scale[:seq].to(scores.dtype)).softmax(dim=-1)
    out = torch.einsum("bhti,bhtid->bhtd", weights, values)
    return out * module.value_scale[:seq].to(out.dtype)


def prefix_form(attention, module, q, k, v):
    if attention == "linformer":
        return prefix_linformer(module, q, k, v)
    if attention == "cosformer":
        return prefix_linear_attention(module.features(q), module.features(k), v, COSFORMER_EPS)
    # Performer's features, as attend computes them (no redraw: eval mode)
    features, bound = module.features.double(), module.feature_bound.double()
    half_square = (k * k).sum(-1, keepdim=True) * (0.5 / math.sqrt(q.size(-1)))
    keys = (torch.einsum("bhtd,md->bhtm", k, features) - bound - half_square).exp()
    logits = torch.einsum("bhtd,md->bhtm", q, features) + bound
    queries = (logits - logits.amax(-1, keepdim=True).detach()).exp()
    return prefix_linear_attention(queries, keys, v, torch.finfo(v.dtype).tiny)


@pytest.mark.parametrize("attention", ["linformer", "cosformer", "performer"])
@pytest.mark.parametrize("seq, chunk", [(1, 4), (7, 1), (7, 3), (16, 4), (16, 16), (37, 8),
                                        (37, 64), (40, 5)])
def test_chunkwise_form_equals_the_prefix_form_in_values_and_gradients(attention, seq, chunk):
    # lengths that are and are not a multiple of the chunk, one chunk, one position per chunk
    cfg = small_config(attention, context_length=40, attention_chunk=chunk, d_model=2 * 6,
                       attention_features=5)
    torch.manual_seed(seq)
    module = build_attention(cfg).double().eval()
    q, k, v = heads(seed=seq, shape=(2, 2, seq, 6))
    chunked = module.attend(q, k, v)
    assert chunked.shape == (2, 2, seq, 6)
    assert_same_values_and_gradients(chunked, prefix_form(attention, module, q, k, v),
                                     [q, k, v, *module.parameters()], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("attention", ["linformer", "cosformer", "performer"])
def test_chunk_length_changes_nothing_but_rounding_in_fp32(attention):
    q, k, v = (t.detach().float() for t in heads(seed=3, shape=(1, 2, 50, 6)))
    outs = []
    for chunk in (1, 7, 16, 64):
        cfg = small_config(attention, context_length=50, attention_chunk=chunk, d_model=12)
        torch.manual_seed(0)
        outs.append(build_attention(cfg).eval().attend(q, k, v))
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=1e-5, atol=1e-6)


def test_linear_attention_holds_a_state_per_chunk_not_per_position():
    # the saved tensors of autograd: at T = 512 and chunk 64, nothing of T x f x hs is kept
    cfg = small_config("cosformer", context_length=512, d_model=2 * 32, n_head=2)
    module = build_attention(cfg)
    q, k, v = (torch.randn(1, 2, 512, 32, requires_grad=True) for _ in range(3))
    largest = []

    def pack(tensor):
        largest.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module.attend(q, k, v).sum().backward()
    per_position_state = 2 * 512 * (2 * 32) * 32  # (B, H, T, f, hs) as the prefix form held it
    assert max(largest) * 8 <= per_position_state


# --- softmax, the default, is unchanged ----------------------------------------------------

def softmax_before(module, q, k, v):
    """CausalSelfAttention.forward as it was before the attention choice, verbatim."""
    batch, seq, width = q.shape
    q, k, v = (t.view(batch, seq, module.n_head, module.head_dim).transpose(1, 2)
               for t in (q, k, v))
    q, k = module.rotary(q), module.rotary(k)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return y.transpose(1, 2).reshape(batch, seq, width)


@pytest.mark.parametrize("kind", ["dense", "memoryformer"])
def test_softmax_is_the_default_and_bit_identical(kind):
    cfg = preset(f"{kind}-nano")
    assert cfg.attention == "softmax" and cfg.resolved_attention_features is None
    block = build_block(cfg)
    assert type(block.attn) is SoftmaxAttention
    assert not [key for key in block.state_dict() if key.startswith("attn.")]  # no new state
    q, k, v = torch.randn(3, 2, 40, cfg.d_model).unbind(0)
    assert torch.equal(block.attn(q, k, v), softmax_before(block.attn, q, k, v))


# --- Performer: features, convergence, redraw ----------------------------------------------

def test_performer_approaches_softmax_as_features_grow():
    q, k, v = (t.detach() for t in heads(seed=2, shape=(1, 2, 12, 16), scale=0.5))
    exact = softmax_reference(q, k, v)

    def error(m: int) -> float:
        errors = []
        for seed in range(3):
            cfg = small_config("performer", d_model=32, n_head=2, context_length=12,
                               attention_features=m, hash_seed=seed)
            module = build_attention(cfg).double()
            errors.append((module.attend(q, k, v) - exact).abs().mean().item())
        return sum(errors) / len(errors)

    few, some, many = error(16), error(256), error(4096)
    assert many < some < few
    assert many < few / 5 and many < 0.006  # about 1/sqrt(m): 0.04 at m = 16, 0.0035 at 4096


def test_orthogonal_features_are_orthogonal_seeded_and_gaussian_sized():
    w = orthogonal_features(10, 4, seed=3)
    assert w.shape == (10, 4)
    block = w[:4] / w[:4].norm(dim=1, keepdim=True)
    torch.testing.assert_close(block @ block.T, torch.eye(4))
    assert torch.equal(w, orthogonal_features(10, 4, seed=3))
    assert not torch.equal(w, orthogonal_features(10, 4, seed=4))
    big = orthogonal_features(4000, 8, seed=0)
    assert abs(big.square().sum(1).mean().item() - 8) < 0.3  # E|w|^2 = hs for w ~ N(0, I)
    # every direction is uniform: a plain Householder QR would give row 0 a negative entry 0
    first = torch.stack([orthogonal_features(4, 4, seed)[0] for seed in range(400)])
    assert (first / first.norm(dim=1, keepdim=True)).mean(0).abs().max() < 0.1
    assert draw_seed(0, 1, 0) != draw_seed(0, 0, 1) != draw_seed(1, 0, 0)


def test_performer_redraws_on_schedule_in_training_only():
    cfg = small_config("performer", feature_redraw=3)
    module = build_attention(cfg, index=2)
    q, k, v = (t.detach().float().transpose(1, 2).reshape(B, T, H * HS) for t in heads())
    draws = []
    for _ in range(7):
        module(q, k, v)
        draws.append(module.features.clone())
    # calls 0-2 use draw 0, calls 3-5 draw 1, call 6 draw 2
    assert [module.draw, module.calls] == [2, 7]
    assert torch.equal(draws[0], draws[2]) and torch.equal(draws[3], draws[5])
    assert not torch.equal(draws[2], draws[3]) and not torch.equal(draws[5], draws[6])
    expected = orthogonal_features(3, HS, draw_seed(cfg.hash_seed, 2, 1)) * HS**-0.25
    torch.testing.assert_close(draws[4], expected, rtol=0, atol=0)
    module.eval()
    for _ in range(5):
        module(q, k, v)
    assert module.calls == 7 and torch.equal(module.features, draws[6])
    never = build_attention(cfg.replace(feature_redraw=0), index=2)
    for _ in range(4):
        never(q, k, v)
    assert torch.equal(never.features, draws[0]) and never.calls == 4


def test_performer_state_round_trip_keeps_features_and_schedule(tmp_path):
    cfg = small_config("performer", feature_redraw=2)
    saved = build_attention(cfg)
    q, k, v = (t.detach().float().transpose(1, 2).reshape(B, T, H * HS) for t in heads())
    for _ in range(3):
        saved(q, k, v)
    torch.save(saved.state_dict(), tmp_path / "attn.pt")
    loaded = build_attention(cfg)  # a resumed run: same config, fresh module (draw 0)
    assert not torch.equal(loaded.features, saved.features)
    loaded.load_state_dict(torch.load(tmp_path / "attn.pt", weights_only=True))
    assert (loaded.calls, loaded.draw) == (saved.calls, saved.draw) == (3, 1)
    saved.eval(), loaded.eval()
    assert torch.equal(loaded(q, k, v), saved(q, k, v))
    saved.train(), loaded.train()
    for _ in range(2):  # call 3 uses draw 1, call 4 redraws draw 2 in both
        assert torch.equal(loaded(q, k, v), saved(q, k, v))
    assert torch.equal(loaded.features, saved.features) and loaded.draw == 2
    assert isinstance(build_attention(cfg), PerformerAttention)


# --- config ---------------------------------------------------------------------------------

def test_attention_features_defaults_follow_each_paper():
    assert preset("pythia-410m", attention="linformer").resolved_attention_features == 256
    assert preset("dense-nano", attention="linformer").resolved_attention_features == 32
    assert preset("pythia-410m", attention="performer").resolved_attention_features == 266
    assert preset("pythia-410m", attention="cosformer").resolved_attention_features is None
    assert preset("pythia-410m", attention="performer",
                  attention_features=64).resolved_attention_features == 64


@pytest.mark.parametrize("changes, field, allowed", [
    (dict(attention="flash"), "attention", "softmax, linformer, cosformer, performer"),
    (dict(attention="performer", attention_features=0), "attention_features", "integers >= 1"),
    (dict(attention_features=2.5), "attention_features", "integers >= 1"),
    (dict(attention="linformer", attention_features=4096), "attention_features", "1..2048"),
    (dict(feature_redraw=-1), "feature_redraw", "integers >= 0"),
    (dict(feature_redraw=True), "feature_redraw", "integers >= 0"),
    (dict(attention_chunk=0), "attention_chunk", "integers >= 1"),
])
def test_bad_attention_values_name_the_field_and_the_allowed_values(changes, field, allowed):
    with pytest.raises(ConfigError) as error:
        preset("memoryformer-tiny", **changes)
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}: ")
    assert allowed in str(error.value)
