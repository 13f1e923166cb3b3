"""Optuna storage and study: created once, shared by any number of workers, refused if a name is
reused with another definition.

Heartbeats mark a trial whose worker died: once its heartbeat is older than the grace period, the
next worker to look fails it and enqueues a retry that keeps its cell, its MLflow run and its
checkpoint (see runner.py and retry.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path

import optuna
from optuna.trial import TrialState

from harness.ablate.study_file import Study
from harness.errors import ConfigError
from harness.faults import crash_point
from harness.runs.workspace import Workspace
from harness.tracking.stores import check_database_reachable, redact

_log = logging.getLogger(__name__)

DEFINITION = "harness.definition"  # study user attrs
PARENT_RUN = "harness.parent_run_id"


@dataclass(frozen=True)
class Heartbeat:
    """How a dead worker is told from a slow one.

    On the embedded SQLite file nothing can interrupt the heartbeats of a live worker, so 30 s of
    silence means it died. A database server can fail over or restart: a managed PostgreSQL
    failover takes 60-120 s, during which no worker records a heartbeat, and the first worker to
    reconnect must not take the others for dead. Against a server the grace is therefore 180 s,
    beats come every 20 s, and a worker survives an outage of up to 160 s (grace less one beat);
    a worker that really died has its cell retried 3 minutes later.
    """

    interval: int = 10  # seconds between a running trial's heartbeats
    grace: int = 30  # a trial silent this long is taken for dead and retried

    @classmethod
    def for_storage(cls, url: str, interval: int | None = None,
                    grace: int | None = None) -> Heartbeat:
        default = cls() if url.startswith("sqlite:") else cls(interval=20, grace=180)
        return cls(interval or default.interval, grace or default.grace)


def default_storage(workspace: Workspace | None = None) -> str:
    return (workspace or Workspace()).optuna_storage


class HarnessStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage with two gaps in dead-worker detection closed.

    - Optuna's heartbeat thread dies at the first failed write (a database blip), after which a
      live worker's trial goes stale: here a failed beat is logged and the next one tried.
    - A trial whose worker died before its first beat has no heartbeat row and would stay
      RUNNING forever: here it is stale once its start is older than the grace period.
    """

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception as error:  # SQLAlchemy and drivers raise many types
            if trial_id not in self._missed:  # once per outage
                _log.warning("heartbeat of trial id %d not recorded (%s); retrying every %s s",
                             trial_id, redact(str(error)).splitlines()[0], self.heartbeat_interval)
            self._missed.add(trial_id)
        else:
            self._missed.discard(trial_id)

    @cached_property
    def _missed(self) -> set[int]:
        return set()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        assert self.grace_period is not None
        # datetime_start is the creating worker's local clock, as datetime.now() reads it here
        cutoff = datetime.now() - timedelta(seconds=self.grace_period)
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            if (trial._trial_id not in stale and trial.datetime_start is not None
                    and trial.datetime_start < cutoff and not self._has_heartbeat(trial._trial_id)):
                stale.append(trial._trial_id)
        return stale

    def _has_heartbeat(self, trial_id: int) -> bool:
        from optuna.storages._rdb import models

        with _session(self) as session:
            return models.TrialHeartbeatModel.where_trial_id(trial_id, session) is not None


def _session(storage: optuna.storages.RDBStorage):
    from optuna.storages._rdb.storage import _create_scoped_session

    return _create_scoped_session(storage.scoped_session)


def open_storage(url: str, heartbeat: Heartbeat) -> optuna.storages.RDBStorage:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        # Several local workers share one file: wait for the write lock instead of failing.
        engine: dict = {"connect_args": {"timeout": 60}}
    else:
        check_database_reachable("storage", url)
        # A worker holds one connection for its loop and one for its heartbeat thread; a small
        # pool keeps N workers at about 2N server connections (PostgreSQL allows 100 by default:
        # beyond ~40 workers raise max_connections or put PgBouncer in front).
        engine = {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 1800}
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
        # Heartbeats are "experimental" since Optuna 2.8; they are the documented way to find a
        # dead worker's trial, and what we test. Its retry is ours (runner.py), not a callback.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        return HarnessStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat.interval,
                              grace_period=heartbeat.grace)


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


@dataclass(frozen=True)
class Definition:
    """What the creating worker records on a new study, in one attribute write: the definition's
    digest, a unique id its parent run is tagged with, and who is creating it."""

    digest: str
    uid: str
    host: str
    pid: int

    @classmethod
    def mine(cls, study: Study) -> Definition:
        return cls(study.digest(), uuid.uuid4().hex, socket.gethostname(), os.getpid())

    def creator_is_dead(self) -> bool:
        """Known dead only on this host; elsewhere the grace period decides."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def read_definition(optuna_study: optuna.Study) -> Definition | None:
    raw = optuna_study.user_attrs.get(DEFINITION)
    if raw is None:
        return None
    try:
        return Definition(**json.loads(raw))
    except (ValueError, TypeError):  # written by an older harness: the digest alone
        return Definition(str(raw), "", "", 0)


def open_study(study: Study, storage: optuna.storages.RDBStorage) -> tuple[optuna.Study, bool]:
    """(the Optuna study, whether this call created it). Refuses another definition's name.

    Creating a study takes several writes (the study, its definition, the MLflow parent run,
    the run's id on the study) and a worker can die between any two. The unique study name is
    the one atomic step, so a half-made study is never finished by someone else: the caller
    (runner.prepare_study) deletes it, by id, once its creator is known dead or silent for the
    grace period, and every worker tries to create it again; exactly one succeeds.
    """
    kwargs = dict(study_name=study.name, storage=storage, sampler=sampler_for(study),
                  pruner=pruner_for(study))
    try:
        created = optuna.create_study(directions=study.directions, **kwargs)
    except optuna.exceptions.DuplicatedStudyError:
        pass
    else:
        crash_point("study.created")
        created.set_user_attr(DEFINITION, json.dumps(asdict(Definition.mine(study))))
        crash_point("study.defined")
        return created, True
    existing = optuna.load_study(**kwargs)
    definition = read_definition(existing)
    complete = existing.user_attrs.get(PARENT_RUN) is not None
    if definition is None and existing.trials:
        raise ConfigError("storage", f"study {study.name!r} has trials but no {DEFINITION}: it "
                          "was made by another tool; allowed: a study made by harness ablate, "
                          "or a new name")
    if complete and definition is not None and definition.digest != study.digest():
        raise ConfigError("name", f"a study named {study.name!r} already exists in this storage "
                          "with a different definition (axes, seeds, budget, base or objectives);"
                          " allowed: the same definition to continue it, or a new name")
    return existing, False


def discard_half_made(optuna_study: optuna.Study) -> None:
    """Delete a study whose creator died before it was complete (it has no trials). By id: a
    study of the same name made since by another worker is left alone."""
    if optuna_study.get_trials(deepcopy=False):
        raise ConfigError("storage", f"study {optuna_study.study_name!r} has trials but no "
                          f"{PARENT_RUN}; allowed: a study made by harness ablate")
    with contextlib.suppress(KeyError):  # another worker deleted it first
        optuna_study._storage.delete_study(optuna_study._study_id)
