"""`train()`: one training run, validated up front, fully tracked, resumable.

The order matters: everything that can be wrong with the input (config, corpus, tokenizer,
tracking store) is checked before the MLflow run is created and before step 0, so bad input
costs nothing and leaves no half-made run behind.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import fsspec
import lightning.pytorch as pl

from harness.allocator import keep_freed_memory
from harness.data.datamodule import TextDataModule
from harness.errors import ConfigError
from harness.faults import crash_point
from harness.metrics.memory import adamw_state_bytes
from harness.models.cost import flops_per_token
from harness.models.sizes import model_size
from harness.tracking import HOME, Tracker, check_tracking_uri, provenance, resolve_tracking_uri
from harness.train import checkpoint_store
from harness.train.callbacks import (
    BucketUsageMonitor,
    CrashPoints,
    PeakMemory,
    SaveAfterValidation,
    Throughput,
)
from harness.train.checkpoint import CHECKPOINT, WRITTEN_BY, read_checkpoint
from harness.train.checkpoint_store import AtomicCheckpointIO
from harness.train.config import RunConfig
from harness.train.fence import Fence, FenceCheck, Fenced
from harness.train.logger import TrackerLogger
from harness.train.module import CausalLM, NonFiniteLossError


class TrainingFailed(RuntimeError):
    """The run started but could not finish; its MLflow run is marked FAILED with the reason."""

    def __init__(self, run_id: str, reason: str):
        super().__init__(reason)
        self.run_id = run_id


class RunStopped(Exception):
    """Raised by a callback to end a run early on purpose (e.g. a pruner): not a failure.

    The run is ended with `status` and the message as its stop reason.
    """

    status = "KILLED"


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    experiment: str
    tracking_uri: str
    metrics: dict[str, float]
    checkpoint: str  # its location: a path, or a URL of a shared checkpoint store


def train(
    config: RunConfig,
    *,
    tracking_uri: str | None = None,
    experiment: str = "train",
    run_name: str | None = None,
    home: Path = HOME,
    resume: Path | str | None = None,
    continue_run: str | None = None,
    checkpoint_root: Path | str | None = None,
    parent_run_id: str | None = None,
    tags: dict[str, str] | None = None,
    callbacks: list[pl.Callback] | None = None,
    progress_bar: bool = True,
    fence: Fence | None = None,
    on_run_started: Callable[[str, str], None] | None = None,
    on_checkpoint: Callable[[int], None] | None = None,
    tracking_patience: float = 0.0,
) -> TrainResult:
    """Train `config` and record it; with `resume`, continue a checkpoint in its own MLflow run.

    `continue_run` trains from step 0 in an existing run (a retry whose checkpoint is missing):
    the steps it already logged are not logged twice. Checkpoints go to
    `checkpoint_root/RUN_ID/` (default HOME/checkpoints; a shared path or an fsspec URL lets
    another machine resume them). `fence` (see fence.py) is asked before every write; when it
    raises `Fenced` the run and its checkpoint are left as they are. `on_run_started(run_id,
    checkpoint_location)` is called once the MLflow run exists, before step 0 (the study runner
    records both on its trial, so a retry can resume them); `on_checkpoint(step)` once each
    checkpoint is in place. `tracking_patience`: seconds to wait for a tracking server that does
    not answer before giving up (0: fail at once, before anything else).
    """
    uri = resolve_tracking_uri(tracking_uri, home)
    check_tracking_uri(uri, tracking_patience)
    keep_freed_memory()  # reuse each step's freed buffers instead of faulting them in again
    run_id = continue_run
    resumed_step = 0
    if resume is not None:
        config, run_id, resumed_step = resume_point(resume, config)
    datamodule = TextDataModule(config.data, seq_len=config.seq_len, order_seed=config.train.seed)
    try:
        datamodule.prepare()  # corpus, split, tokenizer, token cache: all checked up front
    except ConfigError as error:
        raise ConfigError(f"data.{error.field}", str(error).removeprefix(f"{error.field}: ")
                          ) from None
    config = dataclasses.replace(
        config, model=config.model.replace(vocab_size=datamodule.tokenizer.vocab_size))

    tracker = Tracker(uri, artifact_root=home / "artifacts")
    root = checkpoint_store.root_location(checkpoint_root or home / "checkpoints")
    logged: dict[str, int] = {}
    if run_id is None:
        run_id = _start_run(tracker, config, datamodule, experiment, run_name, parent_run_id,
                            tags or {})
        crash_point("run.started")
    else:
        if fence is not None:
            fence.check(always=True)
        logged = tracker.logged_steps(run_id)
        tracker.reopen_run(run_id)
        tracker.set_tags(run_id, {"harness.resumed_from_step": resumed_step})
    checkpoint_dir = checkpoint_store.join(root, run_id)
    checkpoint = checkpoint_store.join(checkpoint_dir, CHECKPOINT)
    tracker.set_tags(run_id, {"harness.checkpoint": checkpoint})
    if on_run_started is not None:
        on_run_started(run_id, checkpoint)
    throughput = Throughput(config.train.throughput_warmup_steps, config.train.log_every,
                            flops_per_token(config.model, config.seq_len))
    try:  # from here on, whatever goes wrong ends the run with its reason
        checkpoint_store.write_text(checkpoint_store.join(checkpoint_dir, "config.yaml"),
                                    config.to_yaml())
        pl.seed_everything(config.train.seed, workers=True, verbose=False)
        module = CausalLM(config)
        module.run_id = run_id
        extra = [throughput, CrashPoints(), *(callbacks or [])]
        if fence is not None:
            extra.append(FenceCheck(fence, config.train.val_every))
        logger = TrackerLogger(tracker, run_id, experiment, logged, fence)
        local_root = home if checkpoint_store.is_url(checkpoint_dir) else Path(checkpoint_dir)
        trainer = _trainer(config, logger, local_root, progress_bar,
                           [*extra, SaveAfterValidation(checkpoint)],
                           AtomicCheckpointIO(on_checkpoint))
        with warnings.catch_warnings():
            _quiet_known_lightning_warnings()
            trainer.fit(module, datamodule=datamodule,
                        ckpt_path=str(resume) if resume is not None else None)
            ended_unvalidated = trainer.global_step % config.train.val_every
            if ended_unvalidated or "val/loss" not in trainer.callback_metrics:
                trainer.validate(module, datamodule=datamodule, verbose=False)
        if fence is not None:
            fence.check(always=True)
        trainer.save_checkpoint(checkpoint)
        if config.train.log_checkpoint:
            _log_checkpoint(tracker, run_id, checkpoint_dir)
    except Fenced:
        raise  # another worker owns the run now: touch nothing
    except RunStopped as stop:
        end_with_reason(tracker, run_id, str(stop), status=stop.status)
        raise
    except NonFiniteLossError as error:
        end_with_reason(tracker, run_id, str(error))
        raise TrainingFailed(run_id, str(error)) from error
    except (KeyboardInterrupt, SystemExit):
        # Lightning turns Ctrl-C (and our SIGTERM) into SystemExit(1) after its own teardown.
        end_with_reason(tracker, run_id, "interrupted (Ctrl-C or SIGTERM)", status="KILLED")
        raise KeyboardInterrupt from None
    except Exception as error:
        end_with_reason(tracker, run_id, f"{type(error).__name__}: {error}")
        raise

    metrics = {**{k: float(v) for k, v in trainer.callback_metrics.items()},
               **throughput.metrics()}
    tracker.end_run(run_id, "FINISHED")
    return TrainResult(run_id, experiment, uri, metrics, checkpoint)


def _log_checkpoint(tracker: Tracker, run_id: str, checkpoint_dir: str) -> None:
    """The final checkpoint and its config as the run's `checkpoint/` artifacts."""
    with tempfile.TemporaryDirectory() as scratch:
        for name in (CHECKPOINT, "config.yaml"):
            local = Path(scratch) / name
            with fsspec.open(checkpoint_store.join(checkpoint_dir, name), "rb") as source:
                local.write_bytes(source.read())
            tracker.log_artifact(run_id, local, "checkpoint")


def resume_point(path: Path | str, requested: RunConfig) -> tuple[RunConfig, str, int]:
    """(config, MLflow run id, step) to resume: the checkpoint's own config, with the larger of
    its max_steps and the requested one (a resumed run may be given more steps)."""
    checkpoint = read_checkpoint(path)
    if not checkpoint.run_id:
        raise ConfigError("resume", f"{path} names no MLflow run; allowed: {WRITTEN_BY}")
    config = checkpoint.config
    steps = max(config.train.max_steps, requested.train.max_steps)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, max_steps=steps))
    return config, checkpoint.run_id, checkpoint.step


def _start_run(tracker: Tracker, config: RunConfig, datamodule: TextDataModule, experiment: str,
               run_name: str | None, parent_run_id: str | None, extra_tags: dict[str, str]) -> str:
    size = model_size(config.model)
    tags = {
        **provenance(),
        "seed": str(config.train.seed),
        "preset": config.preset,
        "model.kind": config.model.kind,
        "data.corpus_digest": datamodule.corpus_digest,
        "data.tokenizer_digest": datamodule.tokenizer_digest,
        **extra_tags,
    }
    name = run_name or f"{config.preset}-s{config.train.seed}"
    run_id = tracker.start_run(experiment, name, tags, parent_run_id)
    tracker.log_params(run_id, config.flat_params())
    tracker.log_text(run_id, config.to_yaml(), "config.yaml")
    tracker.log_metrics(run_id, {
        "size/params": size.total_params,
        "size/table_params": size.table_params,
        "size/other_params": size.other_params,
        "size/table_bytes": size.table_bytes,
        "size/other_bytes": size.other_bytes,
        "size/optimizer_state_bytes": adamw_state_bytes(size.total_params),
        "data/train_tokens": datamodule.train_tokens,
        "data/val_tokens": datamodule.val_tokens,
    }, step=0)
    return run_id


def _trainer(config: RunConfig, logger: TrackerLogger, local_root: Path, progress_bar: bool,
             callbacks: list[pl.Callback], checkpoint_io: AtomicCheckpointIO) -> pl.Trainer:
    """`callbacks` run in their order: the fence before the checkpoint it guards, given last."""
    train = config.train
    return pl.Trainer(
        max_steps=train.max_steps,
        val_check_interval=train.val_every,
        check_val_every_n_epoch=None,  # validation by optimiser step: LM training has no epochs
        limit_val_batches=config.data.val_batches,
        num_sanity_val_steps=0,
        gradient_clip_val=config.optim.grad_clip or None,
        precision="bf16-mixed" if train.precision == "bf16" else "32-true",
        accelerator=train.accelerator,
        devices=train.devices,
        strategy=train.strategy,
        logger=logger,
        plugins=[checkpoint_io],  # checkpoints moved into place whole, on any fsspec store
        callbacks=[PeakMemory(), BucketUsageMonitor(), *callbacks],
        enable_checkpointing=False,  # SaveAfterValidation is the one checkpoint writer
        log_every_n_steps=train.log_every,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        default_root_dir=local_root,
    )


def end_with_reason(tracker: Tracker, run_id: str, reason: str, status: str = "FAILED") -> None:
    """End a run that did not finish: FAILED with `failure_reason`, KILLED with `stop_reason`."""
    tracker.set_tags(run_id, {"failure_reason" if status == "FAILED" else "stop_reason": reason})
    tracker.end_run(run_id, status)


def _quiet_known_lightning_warnings() -> None:
    # The token loaders do no per-item work worth parallelising; Lightning suggests workers anyway.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # Lightning 2.6 calls a torch.utils._pytree API that torch 2.13 deprecates; nothing to act on.
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
