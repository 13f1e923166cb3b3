"""Bucket-usage statistics (the paper's Figure 4) on known counts and on a real layer."""

from __future__ import annotations

import pytest
import torch

from harness.models import MemoryLayer
from harness.train.buckets import BucketCounter, usage


def test_usage_of_known_counts():
    uniform = usage(torch.full((3, 8), 5))
    assert (uniform.unused_share, uniform.entropy) == (0.0, pytest.approx(1.0))
    one_bucket = usage(torch.tensor([[0, 0, 9, 0]]))
    assert (one_bucket.unused_share, one_bucket.entropy) == (0.75, pytest.approx(0.0))
    half = usage(torch.tensor([[4, 4, 0, 0]]))
    assert (half.unused_share, half.entropy) == (0.5, pytest.approx(0.5))


def test_counter_counts_every_selected_bucket_while_attached():
    model = torch.nn.Sequential(MemoryLayer(16, 4, chunk_size=4), MemoryLayer(4, 4, chunk_size=2))
    counter = BucketCounter(model)
    x = torch.randn(3, 5, 16)
    counter.attach()
    model(x)
    counter.detach()
    model(x)  # not counted
    assert set(counter.counts) == {"0", "1"}
    assert counter.counts["0"].shape == (4, 16) and counter.counts["0"].sum() == 15 * 4
    expected = torch.zeros(4, 16, dtype=torch.int64)
    for k, row in enumerate(model[0].bucket_indices(x).reshape(-1, 4).T):
        expected[k] += torch.bincount(row, minlength=16)
    assert torch.equal(counter.counts["0"], expected)
    assert counter.counts["1"].sum() == 15 * 2
