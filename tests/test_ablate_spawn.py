"""`harness ablate --jobs N`: every worker gets every runtime setting of the first."""

from __future__ import annotations

from pathlib import Path

from harness.ablate.runner import Settings
from harness.ablate.storage import Heartbeat
from harness.ablate.workers import worker_command
from harness.cli import build_parser

# ablate flags that describe the study or this process only, not how its workers run trials
NOT_PASSED = {"jobs", "file", "quiet", "run", "command"}


def test_a_worker_command_carries_every_runtime_flag(tmp_path):
    settings = Settings(storage="postgresql://u@db/optuna", tracking_uri="http://mlflow:5000",
                        heartbeat=Heartbeat(interval=7, grace=99), devices=2, strategy="ddp",
                        checkpoint_dir="s3://bucket/ckpt")
    command = worker_command(Path("study.yaml"), settings, seeds=(3, 4))
    assert command[1:4] == ["-m", "harness", "ablate"]
    parsed = build_parser().parse_args(command[3:])
    assert parsed.file == Path("study.yaml") and parsed.quiet
    assert (parsed.storage, parsed.tracking_uri) == (settings.storage, settings.tracking_uri)
    assert (parsed.heartbeat_interval, parsed.grace_period) == (7, 99)
    assert (parsed.devices, parsed.strategy) == (2, "ddp")
    assert parsed.checkpoint_dir == "s3://bucket/ckpt" and parsed.seeds == [3, 4]
    # a flag added to `harness ablate` later must be passed on too, or listed as not passed
    ablate = next(a for a in build_parser()._subparsers._group_actions[0].choices.items()
                  if a[0] == "ablate")[1]
    flags = {action.dest for action in ablate._actions if action.dest != "help"}
    checked = {"storage", "tracking_uri", "heartbeat_interval", "grace_period", "devices",
               "strategy", "checkpoint_dir", "seeds"}
    assert flags - NOT_PASSED == checked


def test_unset_runtime_flags_stay_unset_in_workers():
    settings = Settings(storage="sqlite:///o.db", tracking_uri="sqlite:///m.db")
    parsed = build_parser().parse_args(worker_command(Path("s.yaml"), settings)[3:])
    assert parsed.devices is None and parsed.strategy is None and parsed.checkpoint_dir is None
    assert parsed.seeds is None
    assert settings.runtime_values == {}
    assert Settings("s", "t", devices=4, strategy="ddp").runtime_values == {
        "train.devices": 4, "train.strategy": "ddp"}


def test_a_database_server_gets_a_grace_period_that_rides_out_a_failover():
    assert Heartbeat.for_storage("sqlite:///o.db") == Heartbeat(interval=10, grace=30)
    assert Heartbeat.for_storage("postgresql://db/optuna") == Heartbeat(interval=20, grace=180)
    assert Heartbeat.for_storage("postgresql://db/optuna", 5, 60) == Heartbeat(5, 60)
