"""MemoryLayer against a brute-force reference that takes the softmax over all 2**b sign codes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.models import MemoryLayer

# (in, out, chunk_size, bucket_bits, num_tables): the paper's tie, b != c both ways,
# K*c < d (a prefix of the inputs), K*c > d (identity then seeded permutations).
SHAPES = [
    (16, 8, 4, None, None),
    (16, 8, 4, 6, None),
    (16, 8, 4, 2, None),
    (16, 8, 5, None, 3),
    (16, 8, 4, None, 7),
    (12, 5, 3, 5, 9),
]


def sign_codes(bits: int) -> torch.Tensor:
    """(2**b, b) float64: row i is the +-1 code whose bit j is set exactly when i has bit j set."""
    return torch.tensor([[1.0 if (i >> j) & 1 else -1.0 for j in range(bits)]
                         for i in range(2**bits)], dtype=torch.float64)


def reference(layer: MemoryLayer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 8-11 literally: softmax over every sign code, the selected code is the most likely one.

    x (N, d) float64 -> (y (N, out), selected bucket (N, K)).
    """
    k, c, b = layer.num_tables, layer.chunk_size, layer.bucket_bits
    stream = layer.input_index if layer.input_index is not None else torch.arange(k * c)
    z = x[:, stream].view(-1, k, c)  # (N, K, c)
    h = z if layer.hyperplanes is None else torch.einsum("nkc,kcb->nkb", z, layer.hyperplanes)
    probs = torch.softmax(h @ sign_codes(b).T / layer.temperature, dim=-1)  # (N, K, 2**b)
    selected = probs.argmax(-1)  # (N, K): the code sign(h) maximises <h, code>
    weight = probs.gather(-1, selected.unsqueeze(-1)).squeeze(-1)  # (N, K)
    if layer.weighting == "l1":
        weight = weight * h.abs().sum(-1)
    rows = layer.tables[torch.arange(k), selected]  # (N, K, out)
    y = (weight.unsqueeze(-1) * rows).sum(1)
    if layer.bias is not None:
        y = y + layer.bias
    return y, selected


def away_from_zero(*shape: int, seed: int = 0) -> torch.Tensor:
    """Random float64 values with |x| >= 0.05, so a finite-difference step cannot flip a sign."""
    g = torch.Generator().manual_seed(seed)
    magnitude = 0.05 + torch.rand(*shape, generator=g, dtype=torch.float64)
    sign = torch.randint(0, 2, shape, generator=g) * 2 - 1
    return magnitude * sign


def double_layer(*shape, **kwargs) -> MemoryLayer:
    d_in, d_out, c, b, k = shape
    layer = MemoryLayer(d_in, d_out, chunk_size=c, bucket_bits=b, num_tables=k, **kwargs)
    nn.init.normal_(layer.tables)  # larger than the 0.02 init so differences are visible
    return layer.double()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kwargs", [{}, {"weighting": "l1"}, {"temperature": 0.5, "bias": True}])
def test_forward_and_gradients_match_brute_force_softmax(shape, kwargs):
    layer = double_layer(*shape, **kwargs)
    x = away_from_zero(20, shape[0]).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()

    y = layer(x)
    y_ref, selected = reference(layer, x_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(layer.bucket_indices(x), selected)

    upstream = torch.randn_like(y)
    (y * upstream).sum().backward()
    table_grad, layer.tables.grad = layer.tables.grad.clone(), None
    (y_ref * upstream).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(table_grad, layer.tables.grad, rtol=1e-10, atol=1e-12)


def test_bucket_index_bit_order_and_sign_of_zero():
    layer = MemoryLayer(8, 4, chunk_size=8)
    # bits (element 0 first): 1 0 1 1 0 0 1 0, zero counting as positive
    x = torch.tensor([[0.5, -1.0, 0.0, 2.0, -0.1, -0.2, 3.0, -4.0]])
    assert layer.bucket_indices(x).tolist() == [[1 + 4 + 8 + 64]]
    assert layer.bucket_indices(torch.zeros(1, 8)).tolist() == [[255]]


def test_bucket_weights_closed_form_is_product_of_sigmoids():
    layer = MemoryLayer(6, 3, chunk_size=3, temperature=0.7)
    x = torch.tensor([[0.3, -1.2, 0.0, 2.0, -0.4, 0.9]])
    expected = [torch.sigmoid(2 * x[0, 3 * k:3 * k + 3].abs() / 0.7).prod() for k in range(2)]
    torch.testing.assert_close(layer.bucket_weights(x)[0], torch.stack(expected))


@pytest.mark.parametrize("shape", [(16, 8, 4, None, None), (16, 8, 4, 6, 5)])
@pytest.mark.parametrize("weighting", ["paper", "l1"])
def test_gradcheck_weight_path(shape, weighting):
    layer = double_layer(*shape, weighting=weighting)
    x = away_from_zero(6, shape[0], seed=1).requires_grad_()
    assert torch.autograd.gradcheck(layer.bucket_weights, (x,))
    assert torch.autograd.gradcheck(layer, (x,))


def test_table_gradient_only_in_selected_rows():
    layer = MemoryLayer(32, 16, chunk_size=8)
    x = torch.randn(5, 7, 32)
    layer(x).pow(2).sum().backward()
    touched = layer.tables.grad.abs().sum(-1) != 0  # (K, 2**b)
    expected = torch.zeros_like(touched)
    idx = layer.bucket_indices(x).reshape(-1, layer.num_tables)  # (N, K)
    expected[torch.arange(layer.num_tables).expand_as(idx), idx] = True
    assert torch.equal(touched, expected)
    assert touched.sum() < touched.numel() / 4  # 35 tokens touch at most 35 of 256 rows a table


def test_defaults_reduce_to_the_paper():
    layer = MemoryLayer(512, 512)
    assert (layer.chunk_size, layer.bucket_bits, layer.num_tables) == (8, 8, 64)
    assert layer.tables.shape == (64, 256, 512)
    assert layer.input_index is None and layer.hyperplanes is None and layer.bias is None
    x = torch.randn(4, 512)
    z = x.view(4, 64, 8)  # tau = 8 contiguous values per table
    idx = ((z >= 0).long() * 2 ** torch.arange(8)).sum(-1)
    p = torch.sigmoid(2 * z.abs()).prod(-1)
    y = (p.unsqueeze(-1) * layer.tables[torch.arange(64), idx]).sum(1)
    torch.testing.assert_close(layer(x), y)
    assert [n for n, _ in layer.named_parameters()] == ["tables"]


def test_called_like_linear_for_any_leading_shape():
    x = torch.randn(2, 3, 5, 24)
    for module in (nn.Linear(24, 10), MemoryLayer(24, 10, chunk_size=6)):
        assert module(x).shape == (2, 3, 5, 10)
    assert MemoryLayer(24, 10, chunk_size=6)(torch.randn(24)).shape == (10,)


def test_state_dict_round_trip_hashes_identically():
    kwargs = dict(chunk_size=4, bucket_bits=6, num_tables=7)  # permutation stream and hyperplanes
    saved = MemoryLayer(16, 8, seed=1, **kwargs)
    other = MemoryLayer(16, 8, seed=2, **kwargs)
    x = torch.randn(10, 16)
    assert not torch.equal(saved.bucket_indices(x), other.bucket_indices(x))
    assert set(saved.state_dict()) == {"tables", "input_index", "hyperplanes"}
    other.load_state_dict(saved.state_dict())
    assert torch.equal(other.bucket_indices(x), saved.bucket_indices(x))
    assert torch.equal(other(x), saved(x))


def test_seeded_hash_state_is_reproducible_and_stream_starts_with_identity():
    a = MemoryLayer(16, 8, chunk_size=4, bucket_bits=6, num_tables=9, seed=3)
    b = MemoryLayer(16, 8, chunk_size=4, bucket_bits=6, num_tables=9, seed=3)
    assert torch.equal(a.input_index, b.input_index) and torch.equal(a.hyperplanes, b.hyperplanes)
    assert a.input_index.tolist()[:16] == list(range(16))
    assert sorted(a.input_index.tolist()[16:32]) == list(range(16))  # a permutation of the inputs
    assert set(a.hyperplanes.unique().tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("bad, field", [
    (dict(chunk_size=0), "chunk_size"),
    (dict(chunk_size=17), "chunk_size"),
    (dict(bucket_bits=0), "bucket_bits"),
    (dict(bucket_bits=63), "bucket_bits"),
    (dict(num_tables=0), "num_tables"),
    (dict(temperature=0.0), "temperature"),
    (dict(weighting="softmax"), "weighting"),
])
def test_bad_arguments_name_the_field_and_allowed_values(bad, field):
    with pytest.raises(ValueError, match=rf"^{field}: .*allowed"):
        MemoryLayer(16, 8, **bad)
