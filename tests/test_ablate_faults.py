"""Faults a cluster does to a study: kills at every phase, a retry on another machine, a paused
worker, retries that run out. Real processes, real SIGKILL and SIGSTOP, real stores."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from harness.ablate.cells import cells
from harness.ablate.runner import Settings, run_study
from harness.ablate.study_file import load_study
from harness.faults import POINTS, VARIABLE
from harness.runs.workspace import Workspace
from harness.tracking.client import Tracker

BEAT = ["--heartbeat-interval", "1", "--grace-period", "3"]


def write_study(folder: Path, tiny_set: dict, name: str, steps: int, val_every: int,
                chunks: tuple[int, ...] = (4, 8), **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "base": {"preset": "memoryformer-nano", "set": tiny_set},
        "budget": {"steps": steps, "val_every": val_every},
        "axes": {"model.chunk_size": list(chunks)}, "seeds": [0], **extra}))
    return path


class Stores:
    """One Optuna and one MLflow store that several working directories (machines) share."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.optuna = f"sqlite:///{folder / 'optuna.db'}"
        self.mlflow = f"sqlite:///{folder / 'mlflow.db'}"

    def args(self) -> list[str]:
        return ["--storage", self.optuna, "--tracking-uri", self.mlflow]

    def study(self, name: str) -> optuna.Study:
        return optuna.load_study(study_name=name, storage=self.optuna)

    def tracker(self) -> Tracker:
        return Tracker(self.mlflow)

    def runs(self, name: str) -> list:
        tracker = self.tracker()
        return tracker.runs(name)


def ablate(path: Path, cwd: Path, *args: str, crash_at: str | None = None,
           wait: bool = True):
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    if crash_at:
        env[VARIABLE] = crash_at
    command = [sys.executable, "-m", "harness", "ablate", str(path), "--quiet", *BEAT, *args]
    cwd.mkdir(parents=True, exist_ok=True)
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def assert_clean(stores: Stores, name: str, chunks: tuple[int, ...] = (4, 8)
                 ) -> dict[str, float]:
    """Every cell COMPLETE exactly once, no run RUNNING, one value per metric step; returns
    each cell's final val/loss."""
    study = stores.study(name)
    final = cells(study)
    assert all(c.trial.state == TrialState.COMPLETE for c in final), [
        (c.trial.number, c.trial.state.name, c.trial.user_attrs) for c in final]
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["cell"] for t in complete) == [f"chunk_size={c},seed=0"
                                                              for c in chunks]
    runs = stores.runs(name)
    assert [r.info.run_id for r in runs if r.info.status == "RUNNING"] == []
    assert len([r for r in runs if r.data.tags.get("harness.role") == "study"]) == 1
    trials = [r for r in runs if r.data.tags.get("harness.role") == "trial"]
    assert sorted(r.info.run_id for r in trials) == sorted(
        t.user_attrs["mlflow_run_id"] for t in complete)
    tracker = stores.tracker()
    for run in trials:
        assert run.info.status == "FINISHED"
        for key in run.data.metrics:
            steps = [step for step, _ in tracker.metric_history(run.info.run_id, key)]
            assert len(steps) == len(set(steps)), f"{key} logged twice at a step: {steps}"
    return {t.user_attrs["cell"]: t.values[0] for t in complete}


# Each kill must land at its point (the worker exits by SIGKILL); the order makes each point
# reachable in what is left of the study. Creation first, then one cell's life, then the other.
SHORT_KILLS = ["parent.created:1", "run.started:1", "checkpoint.write:2", "trial.finished:1"]
FULL_KILLS = ["study.created:1", "study.defined:1", "parent.created:1", "trial.started:1",
              "run.started:1", "step:3", "validation:2", "checkpoint.write:2", "log:5",
              "validation:1", "step:2", "trial.finished:1"]


@pytest.mark.parametrize("kills", [SHORT_KILLS, pytest.param(FULL_KILLS, marks=pytest.mark.slow)],
                         ids=["4-kills", "12-kills"])
def test_kills_at_every_phase_lose_nothing_and_change_no_result(tmp_path, tiny_set, kills):
    assert {kill.partition(":")[0] for kill in kills} <= set(POINTS)
    baseline = Stores(tmp_path / "baseline")
    path = write_study(tmp_path, tiny_set, "faults", steps=12, val_every=4)
    run_study(load_study(path), Settings(baseline.optuna, baseline.mlflow, progress=False,
                                         workspace=Workspace(tmp_path / "baseline" / ".harness")))
    expected = assert_clean(baseline, "faults")  # the same study, never killed

    stores = Stores(tmp_path / "killed")
    for kill in kills:
        result = ablate(path, tmp_path / "killed", *stores.args(), crash_at=kill)
        assert result.returncode == -signal.SIGKILL, f"{kill} not reached: {result.stderr}"
    rerun = ablate(path, tmp_path / "killed", *stores.args())
    assert rerun.returncode == 0, rerun.stderr
    values = assert_clean(stores, "faults")
    assert values.keys() == expected.keys()
    for cell, value in values.items():
        assert value == pytest.approx(expected[cell], abs=1e-6)
    study = stores.study("faults")
    assert sum(c.trial.user_attrs.get("worker_deaths", 0) for c in cells(study)) >= 2


def test_a_retry_on_another_machine_resumes_from_the_shared_checkpoint(tmp_path, tiny_set):
    stores = Stores(tmp_path / "db")
    shared = (tmp_path / "nfs").as_uri()  # an fsspec URL, as s3://bucket/prefix would be
    path = write_study(tmp_path, tiny_set, "moved", steps=12, val_every=4, chunks=(4,))
    first = ablate(path, tmp_path / "machine-a", *stores.args(), "--checkpoint-dir", shared,
                   crash_at="validation:2")  # dies validating step 8: its checkpoint is step 4's
    assert first.returncode == -signal.SIGKILL, first.stderr
    victim = next(t for t in stores.study("moved").trials if t.state == TrialState.RUNNING)
    assert victim.user_attrs["checkpoint"].startswith(str(tmp_path / "nfs"))
    assert victim.user_attrs["checkpoint_step"] == 4

    second = ablate(path, tmp_path / "machine-b", *stores.args(), "--checkpoint-dir", shared)
    assert second.returncode == 0, second.stderr
    assert_clean(stores, "moved", chunks=(4,))
    run_id = victim.user_attrs["mlflow_run_id"]
    run = stores.tracker().run(run_id)
    assert int(run.data.tags["harness.resumed_from_step"]) == 4
    assert "harness.restart_reason" not in run.data.tags
    history = stores.tracker().metric_history(run_id, "val/loss")
    assert [step for step, _ in history] == [4, 8, 12]  # continued, not restarted
    assert [step for step, _ in stores.tracker().metric_history(run_id, "train/loss")] == list(
        range(1, 13))  # steps 5-8, trained twice, logged once
    assert not (tmp_path / "machine-b" / ".harness" / "checkpoints").exists()


def test_a_checkpoint_another_machine_cannot_read_is_named_in_the_run(tmp_path, tiny_set):
    stores = Stores(tmp_path / "db")
    path = write_study(tmp_path, tiny_set, "local", steps=8, val_every=4, chunks=(4,))
    first = ablate(path, tmp_path / "machine-a", *stores.args(), crash_at="validation:2")
    assert first.returncode == -signal.SIGKILL, first.stderr
    shutil.rmtree(tmp_path / "machine-a" / ".harness" / "checkpoints")  # its local disk, gone
    second = ablate(path, tmp_path / "machine-b", *stores.args())
    assert second.returncode == 0, second.stderr
    assert_clean(stores, "local", chunks=(4,))
    retried = [c.trial for c in cells(stores.study("local")) if "failed_trial" in
               c.trial.system_attrs]
    assert len(retried) == 1
    run = stores.tracker().run(retried[0].user_attrs["mlflow_run_id"])
    reason = run.data.tags["harness.restart_reason"]
    assert "the checkpoint of step 4" in reason and "not readable from this machine" in reason
    assert "--checkpoint-dir" in reason and "restarts the cell from step 0" in reason


def test_a_paused_worker_is_fenced_off_when_it_wakes(tmp_path, tiny_set):
    stores = Stores(tmp_path / "db")
    quick_logs = {**tiny_set, "train.log_every": 5}
    path = write_study(tmp_path, quick_logs, "paused", steps=150, val_every=10, chunks=(4,))
    zombie = ablate(path, tmp_path / "a", *stores.args(), wait=False)
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and zombie.poll() is None:
        time.sleep(0.2)
        try:
            study = stores.study("paused")
        except Exception:  # not created yet
            continue
        victim = next((t for t in study.get_trials(states=(TrialState.RUNNING,))
                       if t.user_attrs.get("checkpoint_step")), None)
    assert victim is not None, zombie.communicate()[1]
    os.killpg(zombie.pid, signal.SIGSTOP)  # longer than the grace period: taken for dead
    try:
        other = ablate(path, tmp_path / "b", *stores.args(), wait=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until the other worker has taken the cell over
            trials = stores.study("paused").get_trials()
            if any(t.system_attrs.get("failed_trial") == victim.number
                   and t.state != TrialState.WAITING for t in trials):
                break
            time.sleep(0.2)
        else:
            pytest.fail("nobody retried the paused worker's trial")
    finally:
        os.killpg(zombie.pid, signal.SIGCONT)
    stderr = other.communicate(timeout=600)[1]
    assert other.returncode == 0, stderr
    woke = zombie.communicate(timeout=600)[1]
    assert zombie.returncode == 0, woke
    assert f"trial {victim.number} stopped, nothing written" in woke
    assert_clean(stores, "paused", chunks=(4,))  # one value per step: the woken one wrote none
    run = stores.tracker().run(victim.user_attrs["mlflow_run_id"])
    assert run.data.tags["harness.trial"] != str(victim.number)  # the retry owns the run


def test_retries_that_run_out_end_the_cell_failed_and_the_command_non_zero(tmp_path, tiny_set,
                                                                          capsys):
    from harness.cli import main

    stores = Stores(tmp_path / "db")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # every checkpoint write raises NotADirectoryError
    path = write_study(tmp_path, tiny_set, "raises", steps=2, val_every=1,
                       checkpoint_dir=str(blocker / "checkpoints"))
    code = main(["ablate", str(path), "--quiet", *BEAT, *stores.args()])
    err = capsys.readouterr().err
    assert code == 1
    line = [x for x in err.splitlines() if x.startswith("harness ablate: study raises:")]
    assert len(line) == 1 and "2 of 2 cells failed" in line[0] and "NotADirectoryError" in line[0]
    trials = stores.study("raises").trials
    assert len(trials) == 6  # 3 attempts of each cell, then FAIL for good
    last = [c.trial for c in cells(stores.study("raises"))]
    assert all(t.user_attrs["final"] and t.user_attrs["raised_attempts"] == 3 for t in last)
    for trial in last:
        run = stores.tracker().run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FAILED" and "NotADirectoryError" in run.data.tags[
            "failure_reason"]
    parent = next(r for r in stores.runs("raises") if r.data.tags["harness.role"] == "study")
    assert parent.info.status == "FAILED" and "2 of 2 cells failed" in parent.data.tags[
        "failure_reason"]
    assert main(["status", str(path), "--storage", stores.optuna]) == 0
    status = capsys.readouterr().out
    assert status.count("NotADirectoryError") == 2 and "0/2 cells" not in status

    again = main(["ablate", str(path), "--quiet", *BEAT, *stores.args()])  # nothing rerun
    assert again == 1 and len(stores.study("raises").trials) == 6


def test_a_database_blip_takes_no_live_worker_for_dead(tmp_path, tiny_set, make_database):
    import psycopg2
    from conftest import PG

    optuna_url = make_database("optuna")
    name = optuna_url.rsplit("/", 1)[1]
    mlflow_url = f"sqlite:///{tmp_path / 'mlflow.db'}"
    quick_logs = {**tiny_set, "train.log_every": 5}
    # long enough to be mid-trial all through the blip
    path = write_study(tmp_path, quick_logs, "blip", steps=1500, val_every=20, chunks=(4,))
    worker = ablate(path, tmp_path / "w", "--storage", optuna_url, "--tracking-uri", mlflow_url,
                    "--heartbeat-interval", "1", "--grace-period", "20", wait=False)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name="blip", storage=optuna_url)
        except Exception:  # not created yet
            continue
        if any(t.user_attrs.get("checkpoint_step") for t in study.get_trials(
                states=(TrialState.RUNNING,))):
            break
    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:  # 6 s in which the storage refuses every connection
            cursor.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = %s", (name,))
            time.sleep(6)
            cursor.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    finally:
        admin.close()
    stderr = worker.communicate(timeout=600)[1]
    assert worker.returncode == 0, stderr
    assert "not recorded" in stderr or "could not check" in stderr  # it did see the outage
    study = optuna.load_study(study_name="blip", storage=optuna_url)
    assert all(c.trial.state == TrialState.COMPLETE for c in cells(study))
    assert not [t.number for t in study.trials if "failed_trial" in t.system_attrs]  # no retry
    tracker = Tracker(mlflow_url)
    runs = tracker.runs("blip")
    assert {r.info.status for r in runs} == {"FINISHED"}
