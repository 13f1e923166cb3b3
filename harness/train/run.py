"""`train()`: one training run, validated up front, fully tracked, resumable.

The order matters: everything that can be wrong with the input (config, corpus, tokenizer,
tracking store) is checked before the MLflow run is created and before step 0, so bad input
costs nothing and leaves no half-made run behind.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl

from harness.allocator import keep_freed_memory
from harness.data.datamodule import TextDataModule
from harness.errors import ConfigError
from harness.faults import crash_point
from harness.models.cost import flops_per_token
from harness.runs import checkpoint_store, records
from harness.runs.budget import resolve_budget
from harness.runs.checkpoint import CHECKPOINT, WRITTEN_BY, read_checkpoint
from harness.runs.checkpoint_store import AtomicCheckpointIO
from harness.runs.config import RunConfig
from harness.runs.workspace import Workspace
from harness.tracking.client import Tracker
from harness.tracking.stores import check_tracking_uri, resolve_tracking_uri
from harness.train.budget import BudgetClock
from harness.train.callbacks import (
    BucketUsageMonitor,
    CrashPoints,
    PeakMemoryMonitor,
    SaveAfterValidation,
    Throughput,
    ValidationClock,
)
from harness.train.fence import FenceCheck, Fenced
from harness.train.kernel import prepare_kernel
from harness.train.logger import FlushMetrics, TrackerLogger
from harness.train.module import CausalLM, NonFiniteLossError
from harness.train.progress import TRAIN_BAR, BarStyle, StepBar
from harness.train.recording import (
    Recording,
    RunStopped,
    Supervisor,
    TrainingFailed,
    end_with_reason,
    log_checkpoint,
    start_run,
)

__all__ = ["Recording", "RunStopped", "Supervisor", "TrainResult", "TrainingFailed",
           "end_with_reason", "resume_point", "train"]


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    experiment: str
    tracking_uri: str
    metrics: dict[str, float]
    checkpoint: str  # its location: a path, or a URL of a shared checkpoint store
    steps: int = 0  # optimiser steps reached (what a budget let the run take)


@dataclass(frozen=True)
class _Run:
    """The MLflow run a training writes into, and where its checkpoints go."""

    tracker: Tracker
    experiment: str
    run_id: str
    checkpoint_dir: str
    logged: dict[str, int]  # metric -> last step the run already holds (a continued run)

    @property
    def checkpoint(self) -> str:
        return checkpoint_store.join(self.checkpoint_dir, CHECKPOINT)


def train(
    config: RunConfig,
    *,
    workspace: Workspace = Workspace(),
    recording: Recording = Recording(),
    resume: Path | str | None = None,
    continue_run: str | None = None,
    callbacks: list[pl.Callback] | None = None,
    supervisor: Supervisor | None = None,
    progress_bar: BarStyle | None = TRAIN_BAR,
    announce: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train `config` and record it; with `resume`, continue a checkpoint in its own MLflow run.

    `continue_run` trains from step 0 in an existing run (a retry whose checkpoint is missing):
    the steps it already logged are not logged twice. Checkpoints go to
    `workspace.checkpoints/RUN_ID/` (a shared path or an fsspec URL lets another machine resume
    them). A `supervisor` (the study runner) hears of the run and its checkpoints and may fence
    it off (see recording.Supervisor). `announce` hears the lines meant for a person: the
    fused kernel's first build, and a header (model, data, store, run) before training starts.
    `progress_bar` draws one bar of optimiser steps (None: no bar).
    """
    uri = resolve_tracking_uri(recording.tracking_uri, workspace)
    check_tracking_uri(uri, recording.patience)
    if config.train.keep_freed_memory:
        keep_freed_memory()  # reuse each step's freed buffers instead of faulting them in again
    run_id, resumed_step = continue_run, 0
    if resume is not None:
        config, run_id, resumed_step = resume_point(resume, config)
    datamodule = _prepared_data(config)
    config = resolve_budget(dataclasses.replace(  # the vocabulary moves a FLOPs budget's steps
        config, model=config.model.replace(vocab_size=datamodule.tokenizer.vocab_size)))
    supervisor = supervisor or Supervisor()
    prepare_kernel([config], announce)  # setup, not the first optimiser step
    run = _open_run(Tracker(uri, artifact_root=workspace.artifacts), config, datamodule,
                    recording, workspace, run_id, resumed_step, supervisor)
    if announce is not None:
        for line in _header(config, datamodule, run):
            announce(line)
    throughput = Throughput(config.train.throughput_warmup_steps, config.train.log_every,
                            flops_per_token(config.model, config.seq_len))
    validation = ValidationClock()
    checkpoint_io = AtomicCheckpointIO(supervisor.checkpointed)
    with _ends_on_error(run.tracker, run.run_id):
        checkpoint_store.write_text(checkpoint_store.join(run.checkpoint_dir, "config.yaml"),
                                    config.to_yaml())
        trainer = _fit(config, datamodule, run, workspace, supervisor, checkpoint_io,
                       [throughput, validation, BudgetClock(config), CrashPoints(),
                        *(callbacks or [])], progress_bar, resume)
        if config.train.log_checkpoint:
            log_checkpoint(run.tracker, run.run_id, run.checkpoint_dir)
        # where the time outside optimiser steps went (this process's share, as step_seconds);
        # a run resumed at its last step (its worker died after training) keeps its first values
        spent = {records.VALIDATION_SECONDS: validation.seconds,
                 records.CHECKPOINT_SECONDS: checkpoint_io.seconds}
        if not all(run.logged.get(key, -1) >= trainer.global_step for key in spent):
            run.tracker.log_metrics(run.run_id, spent, step=trainer.global_step)
    metrics = {**{k: float(v) for k, v in trainer.callback_metrics.items()},
               **throughput.metrics(), **spent}
    run.tracker.end_run(run.run_id, "FINISHED")
    return TrainResult(run.run_id, recording.experiment, uri, metrics, run.checkpoint,
                       trainer.global_step)


PRECISIONS = {"32": "fp32", "bf16": "bf16-mixed"}


def _header(config: RunConfig, datamodule: TextDataModule, run: _Run) -> list[str]:
    """Three lines: what trains, on what, and where it is recorded."""
    from harness.models.sizes import model_size
    from harness.tracking.stores import redact

    model, data, size = config.model, config.data, model_size(config.model)
    tables = (f", {size.table_params / 1e6:.2f}M in tables ({size.table_params * 4 / 2**20:.1f}"
              " MiB in fp32)" if size.table_params else "")
    budget = (f"{config.train.seconds_budget:g} s of steps" if config.train.seconds_budget
              else f"{config.train.max_steps} steps")
    return [f"model: {model.name or model.kind} ({model.kind}, {model.n_layer} blocks, d "
            f"{model.d_model}), {size.total_params / 1e6:.2f}M params{tables}",
            f"data:  {data.corpus}, {data.tokenizer} tokenizer, "
            f"{datamodule.train_tokens / 1e6:.2f}M training tokens; {budget} of "
            f"{data.batch_size} x {config.seq_len} tokens, {PRECISIONS[config.train.precision]}",
            f"store: {redact(run.tracker.uri)}, experiment '{run.experiment}', run {run.run_id}"]


def _prepared_data(config: RunConfig) -> TextDataModule:
    """Corpus, split, tokenizer and token cache, all checked before any run exists."""
    datamodule = TextDataModule(config.data, seq_len=config.seq_len, order_seed=config.train.seed)
    try:
        datamodule.prepare()
    except ConfigError as error:
        raise error.within("data") from None
    return datamodule


def _open_run(tracker: Tracker, config: RunConfig, datamodule: TextDataModule,
              recording: Recording, workspace: Workspace, run_id: str | None, resumed_step: int,
              supervisor: Supervisor) -> _Run:
    """A new run, or the existing one reopened; its supervisor told where its checkpoint is."""
    logged: dict[str, int] = {}
    if run_id is None:
        run_id = start_run(tracker, config, datamodule, recording)
        crash_point("run.started")
    else:
        if supervisor.fence is not None:
            supervisor.fence.check(always=True)
        logged = tracker.logged_steps(run_id)
        tracker.reopen_run(run_id)
        tracker.set_tags(run_id, {records.RESUMED_FROM: resumed_step})
    root = checkpoint_store.root_location(workspace.checkpoints)
    run = _Run(tracker, recording.experiment, run_id, checkpoint_store.join(root, run_id),
               logged)
    tracker.set_tags(run_id, {records.CHECKPOINT: run.checkpoint})
    supervisor.started(run_id, run.checkpoint)
    return run


@contextmanager
def _ends_on_error(tracker: Tracker, run_id: str) -> Iterator[None]:
    """Whatever stops the run from here on ends it, with its reason and the right status."""
    try:
        yield
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


def _fit(config: RunConfig, datamodule: TextDataModule, run: _Run, workspace: Workspace,
         supervisor: Supervisor, checkpoint_io: AtomicCheckpointIO, callbacks: list[pl.Callback],
         progress_bar: BarStyle | None, resume: Path | str | None) -> pl.Trainer:
    """Fit to max_steps, validate the final step, and write the final checkpoint."""
    pl.seed_everything(config.train.seed, workers=True, verbose=False)
    module = CausalLM(config)
    module.run_id = run.run_id
    fence = supervisor.fence
    if fence is not None:
        callbacks.append(FenceCheck(fence, config.train.val_every))
    if progress_bar is not None:
        total = None if config.train.seconds_budget else config.train.max_steps
        callbacks.append(StepBar(progress_bar, total))
    callbacks.append(FlushMetrics())  # each step's metrics in one write, before its checkpoint
    callbacks.append(SaveAfterValidation(run.checkpoint))  # last: after the fence it guards
    logger = TrackerLogger(run.tracker, run.run_id, run.experiment, run.logged, fence)
    local_root = (workspace.root if checkpoint_store.is_url(run.checkpoint_dir)
                  else Path(run.checkpoint_dir))
    try:
        with warnings.catch_warnings(), _quiet_lightning():
            trainer = _trainer(config, logger, local_root, callbacks, checkpoint_io)
            _quiet_known_lightning_warnings()
            trainer.fit(module, datamodule=datamodule,
                        ckpt_path=str(resume) if resume is not None else None)
            ended_unvalidated = trainer.global_step % config.train.val_every
            if ended_unvalidated or records.VAL_LOSS not in trainer.callback_metrics:
                trainer.validate(module, datamodule=datamodule, verbose=False)
        if fence is not None:
            fence.check(always=True)
        if checkpoint_io.saved_step != trainer.global_step:  # not just saved by the validation
            trainer.save_checkpoint(run.checkpoint, weights_only=False)
    finally:
        checkpoint_io.release()  # its spare file: the run's folder keeps the checkpoint alone
    return trainer


def resume_point(path: Path | str, requested: RunConfig) -> tuple[RunConfig, str, int]:
    """(config, MLflow run id, step) to resume: the checkpoint's own config, with the larger of
    its max_steps and the requested one (a resumed run may be given more steps, unless a budget
    set them)."""
    checkpoint = read_checkpoint(path)
    if not checkpoint.run_id:
        raise ConfigError("resume", f"{path} names no MLflow run; allowed: {WRITTEN_BY}")
    config = checkpoint.config
    if config.budget == "steps":  # a budget's steps were set by the budget, not by the caller
        steps = max(config.train.max_steps, requested.train.max_steps)
        config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                       max_steps=steps))
    return config, checkpoint.run_id, checkpoint.step


def _trainer(config: RunConfig, logger: TrackerLogger, local_root: Path,
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
        callbacks=[PeakMemoryMonitor(), BucketUsageMonitor(), *callbacks],
        enable_checkpointing=False,  # SaveAfterValidation is the one checkpoint writer
        log_every_n_steps=train.log_every,
        enable_progress_bar=False,  # StepBar: one bar of steps, none per validation
        enable_model_summary=False,
        default_root_dir=local_root,
    )


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's INFO lines off while it runs: "GPU available: False", "TPU available", tips
    advertising other products, "`max_steps` reached"; its warnings still show."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _quiet_known_lightning_warnings() -> None:
    # The token loaders do no per-item work worth parallelising; Lightning suggests workers anyway.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # Lightning 2.6 calls a torch.utils._pytree API that torch 2.13 deprecates; nothing to act on.
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
