"""The fused kernel of MemoryLayer against its reference path: values, gradients, fallbacks."""

from __future__ import annotations

import warnings

import pytest
import torch

from harness.models import MemoryLayer, fused_lookup

# (in, out, chunk_size, bucket_bits, num_tables, weighting, temperature): the paper's tie;
# out not a multiple of a cache line (a narrow last tile); SimHash bits (b != c); K*c > d
# (permuted inputs); l1 weighting; 2**10-row tables in several table groups; a wide layer.
CASES = [
    (64, 64, 8, None, None, "paper", 1.0),
    (48, 40, 8, None, None, "paper", 0.5),
    (64, 24, 4, 6, None, "l1", 1.0),
    (32, 17, 4, None, 12, "paper", 2.0),
    (64, 72, 2, 10, 48, "paper", 1.0),
    (256, 256, 8, None, None, "l1", 1.0),
]


@pytest.fixture(scope="module", autouse=True)
def kernel() -> None:
    ready, reason = fused_lookup.available()
    assert ready, f"the fused kernel should build on the test machine: {reason}"


def pair(case: tuple, seed: int = 0) -> tuple[MemoryLayer, MemoryLayer]:
    """Two identical layers, one on each path."""
    in_f, out_f, c, b, k, weighting, temperature = case
    layers = []
    for kernel in ("fused", "reference"):
        torch.manual_seed(seed)
        layers.append(MemoryLayer(in_f, out_f, chunk_size=c, bucket_bits=b, num_tables=k,
                                  weighting=weighting, temperature=temperature, bias=True,
                                  seed=seed, kernel=kernel))
    return layers[0], layers[1]


@pytest.mark.parametrize("case", CASES)
def test_fused_matches_reference_values_and_gradients(case: tuple) -> None:
    fused, reference = pair(case)
    torch.manual_seed(1)
    x = torch.randn(3, 37, case[0])  # 111 tokens: not a multiple of the kernel's token block
    x[0, 0, :4] = 0.0  # sign(0) counts as +1; its weight gradient is 0 on both paths
    outputs, grads = [], []
    for layer in (fused, reference):
        xi = x.clone().requires_grad_(True)
        y = layer(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outputs.append(y)
        grads.append((xi.grad, layer.tables.grad, layer.bias.grad))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    for got, want in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_rows_no_token_reads_get_zero_gradient() -> None:
    fused, _ = pair(CASES[0])
    x = torch.randn(5, 64)
    fused(x).sum().backward()
    hit = torch.zeros(fused.num_tables, 2**fused.bucket_bits, dtype=torch.bool)
    hit[torch.arange(fused.num_tables), fused.bucket_indices(x)] = True
    rows_with_grad = fused.tables.grad.abs().sum(-1) > 0  # (K, R)
    assert torch.equal(rows_with_grad, hit)


def test_bf16_tables_for_inference_read_in_fp32() -> None:
    fused, reference = pair(CASES[1])
    for layer in (fused, reference):
        layer.tables.data = layer.tables.data.to(torch.bfloat16)
    x = torch.randn(50, 48)
    with torch.no_grad():
        y_fused, y_ref = fused(x), reference(x)
    assert y_fused.dtype == torch.float32
    torch.testing.assert_close(y_fused, y_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES[:4])
def test_bf16_mixed_training_runs_fused_and_matches_the_fp32_reference(case: tuple) -> None:
    """Lightning's bf16-mixed: fp32 master tables, bf16 activations out of an autocast matmul.

    The bf16 inputs upcast exactly, so the fp32 reference path on them is the exact math; the
    fused path differs from it by bf16 rounding of its output and of the incoming gradient.
    """
    in_f, out_f, c, b, k, weighting, temperature = case
    layers = []
    for kernel in ("fused", "reference"):
        torch.manual_seed(0)
        layers.append(MemoryLayer(in_f, out_f, chunk_size=c, bucket_bits=b, num_tables=k,
                                  weighting=weighting, temperature=temperature, kernel=kernel))
    fused, reference = layers
    torch.manual_seed(1)
    projection = torch.nn.Linear(in_f, in_f)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        a = projection(torch.randn(111, in_f))  # (111, in) bf16, as the layer sees it
    assert a.dtype == torch.bfloat16
    mix = torch.linspace(-1, 1, 111 * out_f).view(111, out_f)

    x_fused = a.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_fused = fused(x_fused)  # kernel="fused" raises where the kernel does not apply
    assert y_fused.dtype == torch.bfloat16 and fused.tables.dtype == torch.float32
    (y_fused * mix.bfloat16()).sum().backward()  # the gradient arrives in bf16 too

    x_ref = a.float().requires_grad_(True)
    y_ref = reference(x_ref)
    (y_ref * mix).sum().backward()

    assert x_fused.grad.dtype == torch.bfloat16 and fused.tables.grad.dtype == torch.float32
    for got, want in ((y_fused, y_ref), (x_fused.grad, x_ref.grad),
                      (fused.tables.grad, reference.tables.grad)):
        # bf16 keeps 8 bits: relative 2**-8 per rounding, a few roundings, against the scale
        torch.testing.assert_close(got.float(), want, rtol=1.6e-2,
                                   atol=1.6e-2 * want.abs().max().item())


def test_trainable_bf16_tables_use_the_reference_path() -> None:
    fused, _ = pair(CASES[1])
    fused.tables.data = fused.tables.data.to(torch.bfloat16)
    assert not fused_lookup.supports(torch.randn(4, 6, 8), fused.tables)
    with pytest.raises(RuntimeError, match="does not apply"):
        fused(torch.randn(4, 48))


def test_float64_takes_the_reference_path() -> None:
    # (Traced graphs, as FLOP counting makes them, also take it: tests/test_flops.py counts
    # embedding_bag in every memory layer.)
    _, reference = pair(CASES[0])
    auto = MemoryLayer(64, 64, bias=True, kernel="auto").double()
    auto.load_state_dict(reference.double().state_dict())
    x = torch.randn(7, 64, dtype=torch.float64)
    torch.testing.assert_close(auto(x), reference(x))


@pytest.fixture
def no_kernel(monkeypatch: pytest.MonkeyPatch):
    """The process as on a machine where the kernel cannot build."""
    fused_lookup._build.cache_clear()
    fused_lookup.warn_unavailable.cache_clear()
    monkeypatch.setenv(fused_lookup.DISABLE_ENV, "0")
    yield
    fused_lookup._build.cache_clear()
    fused_lookup.warn_unavailable.cache_clear()


def test_without_kernel_auto_layers_warn_once_and_match(no_kernel: None) -> None:
    ready, reason = fused_lookup.available()
    assert not ready and fused_lookup.DISABLE_ENV in reason
    auto = MemoryLayer(64, 64, seed=3)
    reference = MemoryLayer(64, 64, seed=3, kernel="reference")
    reference.load_state_dict(auto.state_dict())
    x = torch.randn(9, 64)
    with pytest.warns(RuntimeWarning, match="fused kernel unavailable") as caught:
        y = auto(x)
        auto(x)
    assert len(caught) == 1
    torch.testing.assert_close(y, reference(x), rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="fused"):
        MemoryLayer(64, 64, kernel="fused")(x)


def test_kernel_name_is_checked() -> None:
    with pytest.raises(ValueError, match="kernel: 'cuda' is not allowed; allowed: auto, fused"):
        MemoryLayer(8, 8, kernel="cuda")


def test_a_failed_build_gives_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils import cpp_extension

    def broken(**_: object) -> None:
        raise RuntimeError("Error building extension\nmemory_lookup.cpp:1: error: no compiler")

    fused_lookup._build.cache_clear()
    monkeypatch.setattr(cpp_extension, "load_inline", broken)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ready, reason = fused_lookup.available()
        assert not ready and "error: no compiler" in reason
    finally:
        fused_lookup._build.cache_clear()


@pytest.mark.parametrize("storage", ["bf16", "int8"])
def test_stored_tables_match_between_paths_and_stay_close(storage: str) -> None:
    fused, reference = pair(CASES[4])
    x = torch.randn(30, 64)
    with torch.no_grad():
        exact = reference(x)
        for layer in (fused, reference):
            layer.store_tables(storage)
        y_fused, y_ref = fused(x), reference(x)
    assert fused.tables.dtype == {"bf16": torch.bfloat16, "int8": torch.int8}[storage]
    assert not fused.tables.requires_grad and fused.table_storage == storage
    torch.testing.assert_close(y_fused, y_ref, rtol=1e-5, atol=1e-6)
    # bf16 keeps 8 bits of mantissa, int8 7 bits of each row's largest value
    assert (y_fused - exact).abs().max() < 0.01 * exact.abs().max()


def test_int8_tables_still_pass_gradient_to_the_inputs() -> None:
    fused, reference = pair(CASES[0])
    for layer in (fused, reference):
        layer.store_tables("int8")
    x = torch.randn(20, 64)
    grads = []
    for layer in (fused, reference):
        xi = x.clone().requires_grad_(True)
        layer(xi).square().sum().backward()
        grads.append(xi.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_table_storage_name_is_checked() -> None:
    with pytest.raises(ValueError, match="table storage: 'fp8' is not allowed; allowed: fp32"):
        MemoryLayer(8, 8).store_tables("fp8")
