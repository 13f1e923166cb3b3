"""One Optuna trial = one training run, a child of the study's MLflow parent run.

The trial and its run point at each other: the trial's user attrs hold the run id and its
checkpoint; the run's tags hold the study, the trial number and the cell. A retried trial (its
worker died) inherits those attrs from the dead one and resumes its checkpoint in its run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import optuna

from harness.ablate.study_file import Study
from harness.models.sizes import model_size
from harness.tracking import Tracker
from harness.train.config import RunConfig
from harness.train.run import RunStopped, TrainResult, end_with_reason, train

# trial user attrs
RUN_ID, CHECKPOINT, CELL, REASON, SURPLUS = ("mlflow_run_id", "checkpoint", "cell",
                                             "failure_reason", "surplus")
INTERRUPTED = "interrupted"  # stopped by Ctrl-C or SIGTERM: retried when the study is rerun


class PrunedRun(RunStopped):
    status = "KILLED"


class ReportToPruner(pl.Callback):
    """Reports val/loss at every validation, at the optimiser step, and stops a pruned trial.

    Optuna's stock Lightning callback reports per epoch; LM training has one long epoch.
    """

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.sanity_checking or loss is None:
            return
        step = trainer.global_step
        self.trial.report(float(loss), step)
        if self.trial.should_prune():
            raise PrunedRun(f"pruned at step {step} (val/loss {float(loss):.4f})")


@dataclass
class TrialRunner:
    """The objective Optuna calls: builds the cell's config, trains, returns the objectives."""

    study: Study
    tracker: Tracker
    home: Path
    parent_run_id: str
    runtime_overrides: tuple[str, ...] = ()

    def __call__(self, trial: optuna.Trial) -> list[float]:
        params = self.suggest(trial)
        inherited = dict(trial.user_attrs)  # a retry carries the dead trial's attrs
        if self.study.is_grid and is_surplus(trial):
            trial.set_user_attr(SURPLUS, True)
            raise optuna.TrialPruned("this cell is already held by an earlier trial")
        label = cell_label(params)
        trial.set_user_attr(CELL, label)
        try:
            return self._run(trial, params, label, inherited)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr(INTERRUPTED, True)
            trial.set_user_attr(REASON, "interrupted (Ctrl-C or SIGTERM)")
            raise
        except Exception as error:  # TrainingFailed (NaN) and anything else: the trial FAILs
            trial.set_user_attr(REASON, f"{type(error).__name__}: {error}"[:1000])
            raise

    def _run(self, trial: optuna.Trial, params: dict[str, Any], label: str,
             inherited: dict[str, Any]) -> list[float]:
        config = self.study.run_config(params)
        resume = self._resume_point(inherited, trial)
        tags = {"harness.study": self.study.name, "harness.trial": str(trial.number),
                "harness.cell": label, "harness.cell_params": json.dumps(params, sort_keys=True),
                "harness.role": "trial"}

        def started(run_id: str, checkpoint: Path) -> None:
            trial.set_user_attr(RUN_ID, run_id)
            trial.set_user_attr(CHECKPOINT, str(checkpoint))
            self.tracker.set_tags(run_id, {"harness.trial": str(trial.number)})

        callbacks = [ReportToPruner(trial)] if self.study.pruner != "none" else []
        start = time.perf_counter()
        try:
            result = train(self._with_runtime(config), tracking_uri=self.tracker.uri,
                           experiment=self.study.name, run_name=label, home=self.home,
                           resume=resume, parent_run_id=self.parent_run_id, tags=tags,
                           callbacks=callbacks, progress_bar=False, on_run_started=started)
        except PrunedRun as stop:
            raise optuna.TrialPruned(str(stop)) from None
        if self.study.evaluate:  # logged as eval/* metrics on the trial's own run
            from harness.evaluate import evaluate

            evaluate(result.run_id, list(self.study.evaluate), tracking_uri=self.tracker.uri,
                     home=self.home)
        seconds = time.perf_counter() - start
        self.tracker.log_metrics(result.run_id, {
            "perf/trial_seconds": seconds,
            "perf/trial_overhead_s": seconds - result.metrics.get("perf/step_seconds", 0.0),
        }, step=config.train.max_steps)
        return [objective_value(o.metric, result, config) for o in self.study.objectives]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        if self.study.is_grid:
            space = self.study.grid_space()
            return {name: trial.suggest_categorical(name, values) for name, values in space.items()}
        assert self.study.search is not None
        params: dict[str, Any] = {}
        for p in self.study.search.params:
            if p.choices is not None:
                params[p.name] = trial.suggest_categorical(p.name, list(p.choices))
            elif isinstance(p.low, int) and isinstance(p.high, int) and not p.log:
                params[p.name] = trial.suggest_int(p.name, p.low, p.high, step=int(p.step or 1))
            else:
                params[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log,
                                                     step=p.step)
        params["seed"] = self.study.seeds[0]  # tuning: one run per sampled point
        return params

    def _resume_point(self, inherited: dict[str, Any], trial: optuna.Trial) -> Path | None:
        """The dead trial's checkpoint, or None; a run that never checkpointed is closed."""
        run_id, checkpoint = inherited.get(RUN_ID), inherited.get(CHECKPOINT)
        if checkpoint and Path(checkpoint).is_file():
            return Path(checkpoint)
        if run_id:
            end_with_reason(self.tracker, run_id, "its worker died before the first checkpoint;"
                            f" trial {trial.number} starts the cell again", status="KILLED")
        return None

    def _with_runtime(self, config: RunConfig) -> RunConfig:
        if not self.runtime_overrides:
            return config
        from harness.train.config import apply_overrides, parse_overrides

        return apply_overrides(config, parse_overrides(self.runtime_overrides))


def is_surplus(trial: optuna.Trial) -> bool:
    """Whether an earlier trial already holds this trial's grid cell.

    The grid sampler gives trial n cell n while it can, then a random unclaimed cell; two workers
    racing for the last cell, or a finished grid, give a duplicate. A retry owns its cell.
    """
    trials = trial.study.get_trials(deepcopy=False)
    attrs = next(t.system_attrs for t in trials if t.number == trial.number)
    if "failed_trial" in attrs:
        return False
    return any(t.number < trial.number and not t.user_attrs.get(SURPLUS)
               and t.system_attrs.get("grid_id") == attrs.get("grid_id") for t in trials)


def cell_label(params: dict[str, Any]) -> str:
    """`model.chunk_size=4,seed=0` with section prefixes dropped: a readable run name."""
    return ",".join(f"{k.split('.')[-1]}={v}" for k, v in params.items())


def objective_value(metric: str, result: TrainResult, config: RunConfig) -> float:
    if metric == "val_loss":
        return result.metrics["val/loss"]
    if metric == "flops_per_token":
        return result.metrics["perf/flops_per_token"]
    if metric == "table_bytes":
        return float(model_size(config.model).table_bytes)
    if metric == "tokens_per_s":
        return result.metrics["perf/tokens_per_s"]
    raise KeyError(metric)
