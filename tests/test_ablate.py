"""The study runner end to end: real Optuna and MLflow SQLite stores, real training."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from harness.ablate.runner import run_study
from harness.ablate.status import study_status
from harness.ablate.study_file import load_study, parse_study
from harness.tracking.client import Tracker

# every shipped study file but the tune-then-compare ones (test_protocol.py runs those shrunk)
STUDIES = sorted(p for p in Path(__file__).parent.parent.glob("ablations/*.yaml")
                 if yaml.safe_load(p.read_text()).get("kind") is None)


def assert_recorded(settings, study, cells) -> None:
    """Every trial has a child run of one parent; both point at each other; none RUNNING."""
    tracker = Tracker(settings.tracking_uri)
    runs = tracker.runs(study.name)
    parents = [r for r in runs if r.data.tags.get("harness.role") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = {r.info.run_id: r for r in runs if r.data.tags.get("harness.role") == "trial"}
    assert all(r.info.status != "RUNNING" for r in runs)
    for cell in cells:
        run = children[cell.trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["harness.trial"] == str(cell.trial.number)
        assert run.data.tags["harness.study"] == study.name


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_a_shrunk_copy_of_every_shipped_study_runs_end_to_end(path, shrink, settings):
    study = shrink(load_study(path))
    cells = run_study(study, settings)
    expected = len(study.cells()) if study.is_grid else study.search.n_trials
    assert len(cells) == expected
    assert all(c.trial.state in (TrialState.COMPLETE, TrialState.PRUNED) for c in cells)
    complete = [c for c in cells if c.trial.state == TrialState.COMPLETE]
    assert complete and all(len(c.trial.values) == len(study.objectives) for c in complete)
    if study.is_grid:  # every cell exactly once
        assert sorted(c.trial.user_attrs["cell"] for c in cells) == sorted(
            ",".join(f"{k.split('.')[-1]}={v}" for k, v in cell.items())
            for cell in study.cells())
    assert_recorded(settings, study, cells)


def test_rerunning_continues_and_reruns_nothing(shrink, settings):
    study = shrink(load_study(STUDIES[0].parent / "quickstart.yaml"))
    first = run_study(study, settings)
    again = run_study(study, settings)
    assert [c.trial.number for c in again] == [c.trial.number for c in first]
    assert [row.state for row in study_status(study, settings.storage)] == ["COMPLETE"] * len(first)


def test_a_failing_trial_is_recorded_with_its_reason_and_the_study_goes_on(shrink, settings,
                                                                          tmp_path):
    raw = {"name": "fails", "base": {"preset": "memoryformer-nano"}, "budget": {"steps": 3},
           "axes": {"model.init_std": [0.02, 1.0e38]}}  # 1e38 overflows fp32: a NaN loss
    study = shrink(parse_study(raw), steps=3)
    cells = {c.trial.params["model.init_std"]: c.trial for c in run_study(study, settings)}
    assert cells[0.02].state == TrialState.COMPLETE
    assert cells[1.0e38].state == TrialState.FAIL
    assert "training loss is nan" in cells[1.0e38].user_attrs["failure_reason"]
    run = Tracker(settings.tracking_uri).run(cells[1.0e38].user_attrs["mlflow_run_id"])
    assert run.info.status == "FAILED" and "nan" in run.data.tags["failure_reason"]
    rows = {r.cell: r for r in study_status(study, settings.storage)}
    assert rows["init_std=1e+38,seed=0"].reason.startswith("TrainingFailed")


def test_pruned_trials_end_their_runs_as_killed(shrink, settings, tmp_path):
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tune", "base": {"preset": "memoryformer-nano"},
        "budget": {"steps": 6, "val_every": 1}, "pruner": "median",
        "search": {"sampler": "random", "n_trials": 6,
                   "params": {"optim.lr": {"low": 1.0e-6, "high": 1.0, "log": True}}}}))
    study = replace(shrink(load_study(path), steps=6), search=load_study(path).search)
    cells = run_study(study, settings)
    pruned = [c.trial for c in cells if c.trial.state == TrialState.PRUNED]
    assert pruned  # learning rates from 1e-6 to 1 lag each other: the median pruner stops some
    tracker = Tracker(settings.tracking_uri)
    for trial in pruned:
        run = tracker.run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "KILLED" and run.data.tags["stop_reason"].startswith("pruned")
    assert len(cells) == 6


def test_a_study_can_evaluate_each_trial_on_its_own_run(shrink, settings):
    raw = {"name": "evaluated", "base": {"preset": "memoryformer-nano"}, "budget": {"steps": 2},
           "axes": {"preset": ["dense-nano", "memoryformer-nano"]},
           "evaluate": ["ppl:heldout", "mc:next-line"]}
    study = shrink(parse_study(raw))
    cells = run_study(study, settings)
    tracker = Tracker(settings.tracking_uri)
    for cell in cells:
        metrics = tracker.run(cell.trial.user_attrs["mlflow_run_id"]).data.metrics
        assert metrics["eval/ppl.heldout/ppl"] > 1
        assert 0 <= metrics["eval/mc.next-line/acc"] <= 1
        assert metrics["eval/mc.next-line/acc_stderr"] > 0
