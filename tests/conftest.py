"""Shared fixtures: the one place that makes any study tiny enough for CI."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from harness.ablate.runner import Settings
from harness.ablate.study_file import Search, Study
from harness.runs.workspace import Workspace

# A one-block, 32-wide model on Shakespeare bytes: a trial takes a couple of seconds.
TINY_SET = {"model.n_layer": 1, "model.d_model": 32, "model.n_head": 2, "data.tokenizer": "byte",
            "data.seq_len": 16, "data.batch_size": 2, "data.val_batches": 1,
            "train.log_every": 1, "train.throughput_warmup_steps": 0}


# A few steps of the tiny model: FLOPs budgets of 2-5 steps, seconds budgets of a second.
TINY_BUDGETS = {"flops": (2.0e7, 4.0e7), "seconds": (1.0, 1.5),
                "train.flops_budget": (2.0e7, 4.0e7), "train.seconds_budget": (1.0, 1.5)}


@pytest.fixture(scope="session", autouse=True)
def fused_kernel() -> None:
    """Build the fused memory-layer kernel once, first: no test's subprocess (some are killed on
    purpose) should be the one compiling it."""
    from harness.models import fused_lookup

    fused_lookup.available()


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """Token caches shared by every test of the session (encoding is the slow part of a run)."""
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture
def tiny_set(data_cache) -> dict:
    """`base.set` of a tiny study whose token cache is shared across the session."""
    return {**TINY_SET, "data.cache_dir": str(data_cache)}


@pytest.fixture
def shrink(data_cache):
    """shrink(study) -> the same study with every axis cut to 2 values, 1 seed, a few steps."""

    def cut(study: Study, steps: int = 2, val_every: int = 1, values: int = 2) -> Study:
        overrides = {**dict(study.overrides), **TINY_SET, "data.cache_dir": str(data_cache)}
        search = study.search
        if search is not None:
            search = Search(search.sampler, min(search.n_trials, 2), search.params)
        axes = tuple((name, TINY_BUDGETS.get(name, vals)[:values]) for name, vals in study.axes)
        return replace(study, overrides=tuple(sorted(overrides.items())), steps=steps,
                       val_every=val_every, seeds=study.seeds[:1], search=search, axes=axes,
                       budget_amount=TINY_BUDGETS.get(study.budget, (None,))[0],
                       arms=study.arms[:3])

    return cut


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Embedded stores under the test's own folder, no progress output."""
    return Settings(storage=f"sqlite:///{tmp_path}/optuna.db",
                    tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                    workspace=Workspace(tmp_path / "home"), progress=False, poll_seconds=0.5)


@pytest.fixture
def shrink_protocol(data_cache):
    """shrink_protocol(raw file) -> the tune-then-compare Protocol in miniature: the tiny model,
    two-step sweeps of two values with one extension round, tiny budgets, one seed."""
    from harness.ablate.protocol import parse_protocol

    def cut(raw: dict) -> object:
        base = {**(raw.get("base") or {})}
        base["set"] = {**(base.get("set") or {}), **TINY_SET, "data.cache_dir": str(data_cache)}
        tune = {**raw["tune"], "values": raw["tune"]["values"][:2], "seeds": [0], "extend": 1,
                "budget": {"steps": 2, "val_every": 1}}
        compare = {"budgets": [{"flops": TINY_BUDGETS["flops"][0], "validations": 1},
                               {"seconds": TINY_BUDGETS["seconds"][0], "val_every": 50}],
                   "seeds": [0]}
        return parse_protocol({**raw, "base": base, "tune": tune, "compare": compare})

    return cut


PG = "postgresql://postgres@127.0.0.1:5432"  # trust auth on the test machine and in CI


def postgres_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def make_database():
    """make_database(kind) -> the URL of a fresh PostgreSQL database, dropped after the test."""
    if not postgres_answers():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL does not answer on 127.0.0.1:5432, and CI must run this test")
        pytest.skip("no PostgreSQL on 127.0.0.1:5432 (start one to test many workers)")
    import psycopg2

    names: list[str] = []
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True

    def make(kind: str) -> str:
        name = f"harness_{kind}_{uuid.uuid4().hex[:8]}"
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        names.append(name)
        return f"{PG}/{name}"

    yield make
    with admin.cursor() as cursor:
        for name in names:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.close()


@pytest.fixture
def scratch_databases(make_database) -> list[str]:
    """Two fresh PostgreSQL databases (Optuna and MLflow), dropped afterwards."""
    return [make_database("optuna"), make_database("mlflow")]
