"""Optuna storage and study: created once, shared by any number of workers, refused if a name is
reused with another definition.

Heartbeats mark a trial whose worker died: once its heartbeat is older than the grace period, the
next worker to look fails it and enqueues a retry that keeps its cell, its MLflow run and its
checkpoint (see runner.py).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna

from harness.ablate.study_file import Study
from harness.errors import ConfigError
from harness.tracking import HOME, check_database_reachable, redact

DEFINITION = "harness.definition"  # study user attrs
PARENT_RUN = "harness.parent_run_id"
MAX_RETRIES = 3


@dataclass(frozen=True)
class Heartbeat:
    interval: int = 10  # seconds between a running trial's heartbeats
    grace: int = 30  # a trial silent this long is taken for dead and retried


def default_storage(home: Path = HOME) -> str:
    return f"sqlite:///{(home / 'optuna.db').resolve()}"


def open_storage(url: str, heartbeat: Heartbeat) -> optuna.storages.RDBStorage:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Several local workers share one file: wait for the write lock instead of failing.
        engine = {"connect_args": {"timeout": 60}}
    else:
        check_database_reachable("storage", url)
        engine = {"pool_pre_ping": True}
    for attempt in range(3):
        try:
            return _rdb_storage(url, engine, heartbeat)
        except Exception as error:  # SQLAlchemy and drivers raise many types
            # Workers started together on a fresh database race to create its tables; the
            # loser finds them made on a second look.
            if attempt == 2:
                raise ConfigError("storage", f"{redact(url)} cannot be opened: "
                                  f"{redact(str(error)).splitlines()[0]}") from None
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def _rdb_storage(url: str, engine: dict, heartbeat: Heartbeat) -> optuna.storages.RDBStorage:
    with warnings.catch_warnings():
        # Heartbeats and their retry callback are "experimental" since Optuna 2.8; they are the
        # documented way to recover a dead worker's trial, and what we test.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine, heartbeat_interval=heartbeat.interval,
            grace_period=heartbeat.grace,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=MAX_RETRIES, inherit_intermediate_values=True),
        )


def sampler_for(study: Study) -> optuna.samplers.BaseSampler:
    if study.is_grid:
        # Trial n < number of cells takes cell n: each cell once, whatever the number of workers.
        return optuna.samplers.GridSampler(study.grid_space(), seed=0)
    assert study.search is not None
    if study.search.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=0)
    if study.search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=0)
    return optuna.samplers.TPESampler(seed=0, multivariate=True)


def pruner_for(study: Study) -> optuna.pruners.BasePruner:
    if study.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=study.val_every)
    if study.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=study.val_every,
                                              max_resource=study.steps)
    return optuna.pruners.NopPruner()


def open_study(study: Study, storage: optuna.storages.RDBStorage) -> tuple[optuna.Study, bool]:
    """(the Optuna study, whether this call created it). Refuses another definition's name."""
    kwargs = dict(study_name=study.name, storage=storage, sampler=sampler_for(study),
                  pruner=pruner_for(study))
    try:
        created = optuna.create_study(directions=study.directions, **kwargs)
        created.set_user_attr(DEFINITION, study.digest())
        return created, True
    except optuna.exceptions.DuplicatedStudyError:
        pass
    existing = optuna.load_study(**kwargs)
    digest = wait_for_attr(existing, DEFINITION)
    if digest != study.digest():
        raise ConfigError("name", f"a study named {study.name!r} already exists in this storage "
                          "with a different definition (axes, seeds, budget, base or objectives);"
                          " allowed: the same definition to continue it, or a new name")
    return existing, False


def wait_for_attr(study: optuna.Study, key: str, timeout: float = 60.0) -> str:
    """A study attribute its creating worker sets right after creating it."""
    deadline = time.monotonic() + timeout
    while True:
        value = study.user_attrs.get(key)
        if value is not None or time.monotonic() > deadline:
            if value is None:
                raise ConfigError("storage", f"study {study.study_name!r} has no {key}; was it "
                                  "made by another tool? allowed: a study made by harness ablate")
            return value
        time.sleep(0.5)
