"""`harness ablate` as separate processes: a killed worker, two workers on PostgreSQL, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from harness.ablate.runner import cells
from harness.tracking.client import Tracker


def study_file(tmp_path: Path, tiny_set: dict, name: str, steps: int, val_every: int,
               axes: dict, seeds: list[int]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "base": {"preset": "memoryformer-nano", "set": tiny_set},
        "budget": {"steps": steps, "val_every": val_every}, "axes": axes, "seeds": seeds}))
    return path


def ablate(path: Path, cwd: Path, *args: str, wait: bool = True):
    command = [sys.executable, "-m", "harness", "ablate", str(path), "--quiet", *args]
    if not wait:
        return subprocess.Popen(command, cwd=cwd, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          check=False)


def storage_url(cwd: Path) -> str:
    return f"sqlite:///{(cwd / '.harness' / 'optuna.db').resolve()}"


def tracker(cwd: Path) -> Tracker:
    return Tracker(f"sqlite:///{(cwd / '.harness' / 'mlflow.db').resolve()}")


SIGNALS = [signal.SIGKILL, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)]


@pytest.mark.parametrize("sig", SIGNALS, ids=["SIGKILL", "SIGTERM"])
def test_a_worker_killed_mid_trial_is_resumed_from_its_checkpoint(tmp_path, tiny_set, sig):
    path = study_file(tmp_path, tiny_set, "killed", steps=80, val_every=4,
                      axes={"model.chunk_size": [4, 8]}, seeds=[0])
    beat = ["--heartbeat-interval", "1", "--grace-period", "3"]
    worker = ablate(path, tmp_path, *beat, wait=False)
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline and worker.poll() is None:
        time.sleep(0.2)
        try:  # only read: table creation is the worker's job
            storage = optuna.storages.RDBStorage(storage_url(tmp_path), skip_table_creation=True)
            study = optuna.load_study(study_name="killed", storage=storage)
        except Exception:  # not created yet
            continue
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            checkpoint = trial.user_attrs.get("checkpoint")
            if checkpoint and Path(checkpoint).is_file():
                victim = trial
    if victim is None:
        worker.kill()
        pytest.fail(f"no trial reached a checkpoint: {worker.communicate()[1]}")
    os.killpg(worker.pid, sig)  # the worker and anything it started, mid-trial
    worker.wait()
    worker.stderr.close()
    if sig == signal.SIGTERM:  # stopped cleanly: its runs are ended, none left RUNNING
        runs = tracker(tmp_path).runs("killed")
        assert {r.info.status for r in runs} <= {"KILLED", "FINISHED"}

    rerun = ablate(path, tmp_path, *beat)
    assert rerun.returncode == 0, rerun.stderr
    study = optuna.load_study(study_name="killed", storage=storage_url(tmp_path))
    final = cells(study)
    assert len(final) == 2 and all(c.trial.state == TrialState.COMPLETE for c in final)
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["cell"] for t in complete) == ["chunk_size=4,seed=0",
                                                              "chunk_size=8,seed=0"]
    retry = next(c.trial for c in final if c.lineage == victim.number)
    assert retry.number != victim.number and retry.system_attrs["failed_trial"] == victim.number
    assert study.trials[victim.number].state == TrialState.FAIL
    run_id = victim.user_attrs["mlflow_run_id"]
    assert retry.user_attrs["mlflow_run_id"] == run_id  # the same MLflow run continued
    run = tracker(tmp_path).run(run_id)
    assert int(run.data.tags["harness.resumed_from_step"]) >= 4  # from its checkpoint, not 0
    assert run.data.tags["harness.trial"] == str(retry.number)
    history = tracker(tmp_path).metric_history(run_id, "val/loss")
    assert max(step for step, _ in history) == 80
    runs = tracker(tmp_path).runs("killed")
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    assert len([r for r in runs if r.data.tags.get("harness.role") == "trial"]) == 2


# tests/test_tracking_server.py runs three workers on PostgreSQL (through a tracking server) in CI
@pytest.mark.slow
def test_two_workers_share_one_study_on_postgresql(tmp_path, tiny_set, scratch_databases):
    optuna_url, mlflow_url = scratch_databases
    path = study_file(tmp_path, tiny_set, "shared", steps=30, val_every=10,
                      axes={"model.chunk_size": [4, 8]}, seeds=[0, 1])
    args = ["--storage", optuna_url, "--tracking-uri", mlflow_url]
    workers = [ablate(path, tmp_path, *args, wait=False) for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read()
        worker.stderr.close()

    study = optuna.load_study(study_name="shared", storage=optuna_url)
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["cell"] for t in complete) == sorted(
        f"chunk_size={c},seed={s}" for c in (4, 8) for s in (0, 1))  # each cell exactly once
    store = Tracker(mlflow_url)
    runs = store.runs("shared")
    parents = [r for r in runs if r.data.tags.get("harness.role") == "study"]
    children = [r for r in runs if r.data.tags.get("harness.role") == "trial"]
    assert len(parents) == 1 and len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert all(r.info.status == "FINISHED" for r in runs)


def test_bad_input_exits_2_before_any_trial_and_changes_nothing(tmp_path, tiny_set, capsys,
                                                               monkeypatch):
    from harness.cli import main

    monkeypatch.chdir(tmp_path)  # the embedded stores under ./.harness, as for a user

    def ablate_here(path: Path, *args: str) -> tuple[int, str]:
        code = main(["ablate", str(path), "--quiet", *args])
        return code, capsys.readouterr().err

    path = study_file(tmp_path, tiny_set, "fixed", steps=2, val_every=1,
                      axes={"model.chunk_size": [4]}, seeds=[0])
    assert ablate_here(path)[0] == 0
    before = len(optuna.load_study(study_name="fixed", storage=storage_url(tmp_path)).trials)

    changed = study_file(tmp_path, tiny_set, "fixed", steps=3, val_every=1,
                         axes={"model.chunk_size": [4]}, seeds=[0])
    code, err = ablate_here(changed)
    assert code == 2
    assert "harness ablate: error: name: a study named 'fixed' already exists" in err
    unaffordable = study_file(tmp_path, tiny_set, "big", steps=2, val_every=1,
                              axes={"model.bucket_bits": [8, 40]}, seeds=[0])
    code, err = ablate_here(unaffordable)
    assert code == 2 and "= 1.5 PiB in fp32" in err
    code, err = ablate_here(path, "--storage", "postgresql://u:secret@127.0.0.1:1/none")
    assert code == 2 and "storage: postgresql://u:***@127.0.0.1:1/none is unreachable" in err
    assert "secret" not in err
    code, err = ablate_here(tmp_path / "missing.yaml")
    assert code == 2 and "study: " in err and "Traceback" not in err
    study = optuna.load_study(study_name="fixed", storage=storage_url(tmp_path))
    assert len(study.trials) == before
