"""End to end: `train()` on real text into a real MLflow SQLite store, resume, NaN handling;
the writes a run makes: one batch of metrics per step, checkpoints whole and fenced."""

from __future__ import annotations

import io
from pathlib import Path

import fsspec
import lightning.pytorch as pl
import pytest
import torch

from harness.runs.checkpoint import read_checkpoint
from harness.runs.checkpoint_store import AtomicCheckpointIO
from harness.runs.config import build_run_config
from harness.runs.workspace import Workspace
from harness.tracking.client import Tracker
from harness.train.fence import Fence, Fenced
from harness.train.logger import TrackerLogger
from harness.train.run import Recording, TrainingFailed, train

# A one-block MemoryFormer on Shakespeare bytes: real text, seconds per run.
TINY = ["model.n_layer=1", "model.d_model=32", "model.n_head=2", "data.tokenizer=byte",
        "data.seq_len=32", "data.batch_size=4", "data.val_batches=2", "train.val_every=3",
        "train.log_every=1", "train.throughput_warmup_steps=1"]


def tiny(tmp_path, *extra: str):
    return build_run_config("memoryformer-nano",
                            [*TINY, f"data.cache_dir={tmp_path / 'cache'}", *extra])


def run_train(tmp_path, config, **kwargs):
    return train(config, workspace=Workspace(tmp_path / "home"), progress_bar=None,
                 recording=Recording(experiment="test"), **kwargs)


def tracker(tmp_path) -> Tracker:
    return Tracker(Workspace(tmp_path / "home").tracking_uri)


def test_a_run_records_config_provenance_and_every_measurement(tmp_path):
    result = run_train(tmp_path, tiny(tmp_path, "train.max_steps=6", "train.log_checkpoint=true"))
    run = tracker(tmp_path).run(result.run_id)
    assert run.info.status == "FINISHED"
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["model.chunk_size"] == "8" and params["model.resolved_num_tables"] == "4"
    assert params["model.vocab_size"] == "256"  # resolved from the byte tokenizer
    assert params["optim.peak_lr"] == str(3e-3)
    for key in ("git.commit", "git.dirty", "version.torch", "version.mlflow", "torch.threads",
                "torch.device", "host.name", "seed", "data.corpus_digest",
                "data.tokenizer_digest"):
        assert tags[key], key
    for key in ("train/loss", "train/ppl", "val/loss", "val/ppl", "perf/tokens_per_s",
                "perf/wall_s", "perf/step_seconds", "perf/flops_per_token",
                "perf/train_flops_per_s", "mem/peak_bytes", "size/params", "size/table_bytes",
                "size/other_bytes", "buckets/unused_share", "buckets/entropy",
                "buckets/blocks.0.qkv/entropy", "buckets/blocks.0.ffn.layer_out/unused_share"):
        assert key in metrics, key
    assert metrics["perf/tokens_per_s"] > 0 and metrics["mem/peak_bytes"] > 2**20
    assert 0 < metrics["buckets/entropy"] <= 1
    assert [step for step, _ in tracker(tmp_path).metric_history(result.run_id, "val/loss")] == [
        3, 6]
    artifacts = set(tracker(tmp_path).artifacts(result.run_id))
    assert {"config.yaml", "checkpoint"} <= artifacts
    checkpoint = read_checkpoint(result.checkpoint)
    assert checkpoint.run_id == result.run_id and checkpoint.step == 6
    folder = Path(result.checkpoint).parent
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "last.ckpt"]  # no spare
    assert checkpoint.config.model.vocab_size == 256


def test_metrics_are_written_in_batches_each_ending_at_a_validation(tmp_path, monkeypatch):
    writes: list[dict[int, set[str]]] = []
    real = Tracker.log_metric_steps

    def spy(self, run_id: str, steps: dict[int, dict[str, float]]) -> None:
        writes.append({step: set(metrics) for step, metrics in steps.items()})
        real(self, run_id, steps)

    monkeypatch.setattr(Tracker, "log_metric_steps", spy)
    run_train(tmp_path, tiny(tmp_path, "train.max_steps=6"))
    # step 0: sizes and costs; then every step up to a validation in one write (a tiny run is
    # never due for a write between validations), written before that validation's checkpoint;
    # then the fit's wall time and where the time outside optimiser steps went
    assert [sorted(write) for write in writes] == [[0], [1, 2, 3], [4, 5, 6], [6], [6]]
    assert {"train/loss", "perf/tokens_per_s"} <= writes[1][3]
    assert {"val/loss", "mem/peak_bytes", "budget/steps_reached", "buckets/entropy"} <= writes[1][3]
    assert writes[3][6] == {"perf/wall_s"}
    assert writes[4][6] == {"perf/validation_s", "perf/checkpoint_s"}


def test_resume_continues_the_same_mlflow_run(tmp_path):
    first = run_train(tmp_path, tiny(tmp_path, "train.max_steps=3"))
    resumed = run_train(tmp_path, tiny(tmp_path, "train.max_steps=6"), resume=first.checkpoint)
    assert resumed.run_id == first.run_id
    assert tracker(tmp_path).run(first.run_id).data.tags["harness.resumed_from_step"] == "3"
    store = tracker(tmp_path)
    runs = store.runs("test")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    steps = [step for step, _ in store.metric_history(first.run_id, "train/loss")]
    assert steps == sorted(set(steps)) and max(steps) >= 5  # one history, no restart at 0
    assert torch.load(resumed.checkpoint, weights_only=False)["global_step"] == 6


class PoisonAt(pl.Callback):
    """Sets every weight to NaN before a given step: the loss of that step is NaN."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                for param in pl_module.parameters():
                    param.fill_(float("nan"))


def test_nan_loss_fails_the_run_with_a_reason_and_keeps_the_last_checkpoint(tmp_path):
    config = tiny(tmp_path, "train.max_steps=10")
    with pytest.raises(TrainingFailed, match="training loss is nan at step 4") as error:
        run_train(tmp_path, config, callbacks=[PoisonAt(4)])
    run = tracker(tmp_path).run(error.value.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "training loss is nan at step 4"
    kept = tmp_path / "home" / "checkpoints" / error.value.run_id / "last.ckpt"
    state = torch.load(kept, weights_only=False)
    assert state["global_step"] == 3  # the checkpoint of the last validation before the NaN
    weights = [v for v in state["state_dict"].values() if v.is_floating_point()]
    assert all(torch.isfinite(v).all() for v in weights)


class CallsTracker:
    """Stands in for Tracker under TrackerLogger: keeps every write, as (step, metrics) pairs."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[int, dict[str, float]]]] = []

    def log_metric_steps(self, run_id: str, steps: dict[int, dict[str, float]]) -> None:
        self.calls.append([(step, dict(metrics)) for step, metrics in steps.items()])


def test_the_logger_holds_metrics_until_a_write_is_asked_for_or_due():
    store = CallsTracker()
    logger = TrackerLogger(store, "run", "test", logged={"train/loss": 2}, flush_seconds=3600)
    logger.log_metrics({"train/loss": 1.0}, step=2)  # the run holds step 2 already
    logger.log_metrics({"train/loss": 1.0}, step=3)
    logger.log_metrics({"perf/rate": 5.0, "train/loss": 9.0}, step=3)  # the first value wins
    logger.log_metrics({"val/loss": 2.0}, step=4)
    logger.flush(due_only=True)  # not an hour since the last write
    assert store.calls == []
    logger.flush()
    logger.flush()
    assert store.calls == [[(3, {"train/loss": 1.0, "perf/rate": 5.0}), (4, {"val/loss": 2.0})]]
    eager = TrackerLogger(store, "run", "test", flush_seconds=0)
    eager.log_metrics({"train/loss": 1.5}, step=5)
    eager.flush(due_only=True)
    assert store.calls[1:] == [[(5, {"train/loss": 1.5})]]


def test_a_failing_trainer_writes_its_held_metrics_unless_the_run_is_lost():
    store = CallsTracker()
    logger = TrackerLogger(store, "run", "test")
    logger.log_metrics({"val/loss": 2.0}, step=4)
    logger.finalize("failed")  # a pruned trial keeps its last validation
    assert store.calls == [[(4, {"val/loss": 2.0})]]
    answers = iter([None, "taken over"])
    fence = Fence(lambda: next(answers), recheck_seconds=3600.0)
    fenced = TrackerLogger(store, "run", "test", fence=fence)
    fence.check(always=True)  # still this worker's
    fenced.log_metrics({"val/loss": 1.0}, step=5)
    with pytest.raises(Fenced, match="taken over"):
        fence.check(always=True)  # lost, as FenceCheck finds before a checkpoint
    fenced.finalize("failed")  # inside the recheck window, and still nothing is written
    assert store.calls == [[(4, {"val/loss": 2.0})]]


def torch_bytes(state: dict, crc32: bool = True) -> bytes:
    from torch.utils.serialization import config

    buffer = io.BytesIO()
    config.save.compute_crc32 = crc32
    try:
        torch.save(state, buffer)
    finally:
        config.save.compute_crc32 = True
    return buffer.getvalue()


def test_a_checkpoint_is_moved_into_place_whole_with_torch_saves_bytes(tmp_path):
    states = [{"state_dict": {"model.w": torch.arange(float(n))}, "global_step": n}
              for n in (60, 3, 40, 5)]  # longer and shorter than the spare they are written into
    saved: list[int] = []
    local = AtomicCheckpointIO(saved.append)
    target = tmp_path / "run" / "last.ckpt"
    for state in states:
        local.save_checkpoint(state, target)  # a local file: no CRC-32s, only a rename
        assert target.read_bytes() == torch_bytes(state, crc32=False)
        assert torch.load(target, weights_only=False)["global_step"] == state["global_step"]
    assert torch_bytes(states[0]) != torch_bytes(states[0], crc32=False)
    from torch.utils.serialization import config
    assert config.save.compute_crc32  # as it was: other torch.save calls keep their checksums
    spares = sorted(p.name for p in target.parent.iterdir() if p != target)
    assert len(spares) == 1 and spares[0].startswith("last.ckpt.spare-")  # the one before last
    assert (target.parent / spares[0]).read_bytes() == torch_bytes(states[-2], crc32=False)
    local.release()
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]
    remote = AtomicCheckpointIO(saved.append)
    remote.save_checkpoint(states[0], "memory://checkpoints/run/last.ckpt")
    fs, path = fsspec.core.url_to_fs("memory://checkpoints/run/last.ckpt")
    assert fs.cat_file(path) == torch_bytes(states[0])
    assert fs.ls(path.rpartition("/")[0], detail=False) == [path]  # no partial file left
    assert saved == [60, 3, 40, 5, 60]


def test_the_kernel_is_built_before_training_with_a_notice_only_when_it_builds(monkeypatch):
    from harness.models import fused_lookup
    from harness.train import kernel

    memory = build_run_config("memoryformer-nano", values={"train.accelerator": "cpu"})
    assert kernel.uses_kernel(memory)
    assert not kernel.uses_kernel(build_run_config("dense-nano"))
    assert not kernel.uses_kernel(build_run_config(
        "memoryformer-nano", values={"model.kernel": "reference"}))
    heard: list[str] = []
    kernel.prepare_kernel([memory], heard.append)  # built already (the suite has used it)
    assert heard == []
    monkeypatch.setattr(fused_lookup, "is_built", lambda: False)  # as in a new environment
    kernel.prepare_kernel([build_run_config("dense-nano")], heard.append)  # needs no kernel
    assert heard == []
    kernel.prepare_kernel([memory], heard.append)
    assert len(heard) == 2 and str(fused_lookup.build_folder()) in heard[0]
    assert heard[1].startswith("kernel built in ")
