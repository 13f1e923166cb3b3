"""Bucket-usage statistics (the paper's Figure 4) on known counts, on a real layer, and as the
training callbacks log them (with peak memory and throughput)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from harness.models import MemoryLayer
from harness.models.cost import flops_per_token
from harness.runs import records
from harness.runs.config import build_run_config
from harness.train.buckets import BucketCounter, bucket_rows, usage
from harness.train.callbacks import BucketUsageMonitor, PeakMemoryMonitor, Throughput
from harness.train.fence import Fence, Fenced
from harness.train.logger import TrackerLogger
from harness.train.module import CausalLM


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


class RecordingTracker:
    """Stands in for Tracker under TrackerLogger: keeps each metric and each artifact's arrays
    (read at once: the callback writes the file into a temporary directory)."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.artifacts: list[tuple[str | None, str, dict[str, np.ndarray]]] = []

    def log_metric_steps(self, run_id: str, steps: dict[int, dict[str, float]]) -> None:
        for metrics in steps.values():
            self.metrics.update(metrics)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        with np.load(path) as arrays:
            self.artifacts.append((artifact_path, path.name, {k: arrays[k] for k in arrays}))


SEQ, VAL_SEQUENCES = 16, 8


@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
def test_fit_end_logs_every_layers_counts_as_buckets_npz(tmp_path):
    config = build_run_config("memoryformer-nano", [
        "model.n_layer=1", "model.d_model=32", "model.n_head=2", "model.vocab_size=64",
        "model.kernel=reference", "train.max_steps=4"])
    module = CausalLM(config)
    train = DataLoader(torch.randint(0, 64, (16, SEQ + 1)), batch_size=4)
    val = DataLoader(torch.randint(0, 64, (VAL_SEQUENCES, SEQ + 1)), batch_size=4)
    tracker = RecordingTracker()
    flops = flops_per_token(config.model, SEQ)
    trainer = pl.Trainer(
        max_steps=4, val_check_interval=2, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        logger=TrackerLogger(tracker, "run", "test"), accelerator="cpu", log_every_n_steps=1,
        callbacks=[PeakMemoryMonitor(), BucketUsageMonitor(), Throughput(1, 1, flops)],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=train, val_dataloaders=val)

    assert len(tracker.artifacts) == 1  # at the end of the fit, not at each validation
    artifact_path, name, counts = tracker.artifacts[0]
    assert (artifact_path, name) == (None, "buckets.npz")
    layers = {n: m for n, m in module.model.named_modules() if isinstance(m, MemoryLayer)}
    assert set(counts) == set(layers) == {"blocks.0.qkv", "blocks.0.ffn.layer_in",
                                          "blocks.0.ffn.layer_out"}
    for layer_name, layer in layers.items():
        hits = counts[layer_name]
        assert hits.dtype == np.int64 and hits.shape == (layer.num_tables, 2**layer.bucket_bits)
        # the last validation pass: each table picks one bucket per token it saw
        assert (hits.sum(-1) == VAL_SEQUENCES * SEQ).all()
    assert tracker.metrics[records.PEAK_BYTES] > 0
    assert tracker.metrics[records.TRAIN_FLOPS_PER_S] == pytest.approx(
        3 * flops * tracker.metrics[records.TOKENS_PER_S])

    trainer.validate(module, dataloaders=val, verbose=False)  # as train() does after an odd end
    assert len(tracker.artifacts) == 2 and set(tracker.artifacts[1][2]) == set(layers)


def test_logged_artifacts_are_fenced(tmp_path):
    tracker = RecordingTracker()
    logger = TrackerLogger(tracker, "run", "test", fence=Fence(lambda: "taken over", 0.0))
    path = tmp_path / "buckets.npz"
    np.savez(path, layer=np.zeros(3, dtype=np.int64))
    with pytest.raises(Fenced, match="taken over"):
        logger.log_artifact(path)
    assert tracker.artifacts == []
    TrackerLogger(tracker, "run", "test").log_artifact(path, "extra")
    assert tracker.artifacts[0][:2] == ("extra", "buckets.npz")


def test_counted_rows_are_the_layers_own_buckets():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 24)
    x[0, 0, :6] = 0.0  # sign(0) counts as +1
    for layer in (MemoryLayer(24, 8, chunk_size=4), MemoryLayer(24, 8, chunk_size=3, bucket_bits=5),
                  MemoryLayer(24, 8, chunk_size=4, num_tables=9),
                  MemoryLayer(24, 8, chunk_size=4, kernel="reference")):  # torch's codes
        expected = layer.bucket_indices(x) + layer.row_offsets
        rows = bucket_rows(layer, layer.hash_values(x))
        assert rows.dtype == expected.dtype and torch.equal(rows, expected)


def test_hash_hooks_see_the_forwards_hash_values_until_removed():
    torch.manual_seed(0)
    layer, x = MemoryLayer(24, 8, chunk_size=4), torch.randn(3, 24)
    seen = []
    handle = layer.register_hash_hook(lambda module, h: seen.append((module, h)))
    layer(x)
    assert len(seen) == 1 and seen[0][0] is layer
    assert torch.equal(seen[0][1], layer.hash_values(x))  # (3, K, b): what picked the rows
    handle.remove()
    layer(x)
    assert len(seen) == 1
