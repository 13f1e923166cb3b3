"""evaluate() end to end: a checkpoint from a real tiny training run, results logged on that run
in the real MLflow SQLite store, and bad input refused before any model is loaded."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import harness.evaluate.run as run_module
from harness.errors import ConfigError
from harness.evaluate import evaluate, format_results
from harness.runs.config import build_run_config
from harness.runs.workspace import Workspace
from harness.tracking.client import Tracker
from harness.train.run import Recording, TrainResult, train

TINY = ["model.n_layer=1", "model.d_model=32", "model.n_head=2", "data.tokenizer=byte",
        "data.seq_len=32", "data.batch_size=4", "data.val_batches=1", "train.val_every=2",
        "train.max_steps=2"]
BIGBENCH_TASK = {"examples": [{"input": "To be, or not to", "target_scores": {"be": 1, "go": 0}},
                              {"input": "My kingdom for a", "target_scores": {"cow": 0,
                                                                              "horse": 1}}]}


@dataclass(frozen=True)
class Trained:
    tmp: Path
    workspace: Workspace
    result: TrainResult

    @property
    def tracker(self) -> Tracker:
        return Tracker(self.workspace.tracking_uri)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    tmp = tmp_path_factory.mktemp("eval")
    config = build_run_config("memoryformer-nano",
                              [*TINY, f"data.cache_dir={tmp}", "train.log_checkpoint=true"])
    workspace = Workspace(tmp / "home")
    result = train(config, workspace=workspace, progress_bar=None)
    return Trained(tmp, workspace, result)


@pytest.fixture
def bigbench_folder(tmp_path) -> Path:
    folder = tmp_path / "tiny_task"
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps(BIGBENCH_TASK))
    return folder


def test_metrics_land_on_the_evaluated_run(trained, bigbench_folder):
    run_id = trained.result.run_id
    tasks = ["ppl:heldout", "ppl:bible", "mc:speaker", f"bigbench:{bigbench_folder}"]
    results = evaluate(run_id, tasks, workspace=trained.workspace, limit=24, batch_size=16)
    assert list(results) == [*tasks[:3], "bigbench:tiny_task"]  # a path is named by its folder
    store = trained.tracker
    metrics, tags = store.run(run_id).data.metrics, store.run(run_id).data.tags
    for key in ("ppl", "ppl_stderr", "nll", "nll_stderr", "bpb"):
        assert metrics[f"eval/ppl.heldout/{key}"] == pytest.approx(
            results["ppl:heldout"].metrics[key])
    assert metrics["eval/ppl.heldout/n"] == 24 and metrics["eval/ppl.bible/n"] == 24
    assert 100 < metrics["eval/ppl.heldout/ppl"] < 256  # two steps: a little under uniform bytes
    for key in ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr"):
        assert 0 <= metrics[f"eval/mc.speaker/{key}"] <= 1
    assert metrics["eval/mc.speaker/n"] == 24
    bigbench = "eval/bigbench.tiny_task"
    assert metrics[f"{bigbench}/n"] == 2 and metrics[f"{bigbench}/chance"] == 0.5
    assert tags["eval/ppl.heldout/domain"] == "in" and tags["eval/ppl.bible/domain"] == "out"
    assert tags["eval/mc.speaker/version"] == "1" and tags["eval/mc.speaker/digest"]
    assert "held-out plays" in tags["eval/mc.speaker/source"]
    assert store.metric_history(run_id, "eval/mc.speaker/acc")[0][0] == 2  # at the ckpt's step
    assert len(store.runs("train")) == 1  # no new run
    table = format_results(results)
    assert "mc:speaker" in table and "acc_norm" in table and "±" in table


def test_a_checkpoint_path_evaluates_the_same_without_logging(trained, tmp_path):
    by_path = evaluate(str(trained.result.checkpoint), ["ppl:heldout"], limit=40, log=False,
                       tracking_uri=f"sqlite:///{tmp_path}/unused.db", workspace=trained.workspace)
    by_run = evaluate(trained.result.run_id, ["ppl:heldout"], limit=40, log=False,
                      workspace=trained.workspace)
    assert by_path["ppl:heldout"] == by_run["ppl:heldout"]
    assert not (tmp_path / "unused.db").exists()


def test_a_run_whose_checkpoint_is_only_an_artifact(trained):
    local = trained.workspace.root / "checkpoints" / trained.result.run_id
    moved = local.with_name("moved-away")
    local.rename(moved)
    try:
        results = evaluate(trained.result.run_id, ["ppl:heldout"], workspace=trained.workspace,
                           limit=8, log=False)
    finally:
        moved.rename(local)
    assert results["ppl:heldout"].n == 8
    assert list((trained.workspace.cache / "checkpoints" / trained.result.run_id).rglob("*.ckpt"))


def test_a_run_id_finds_a_checkpoint_written_to_a_shared_folder(trained, tmp_path):
    config = build_run_config("memoryformer-nano", [*TINY, f"data.cache_dir={trained.tmp}"])
    shared = tmp_path / "nfs"
    result = train(config, workspace=Workspace(tmp_path / "machine-a", shared.as_uri()),
                   progress_bar=None, recording=Recording(tracking_uri=trained.tracker.uri))
    assert result.checkpoint.startswith(str(shared))
    results = evaluate(result.run_id, ["ppl:heldout"], workspace=Workspace(tmp_path / "machine-b"),
                       limit=8, tracking_uri=trained.tracker.uri)  # another machine: no local copy
    assert results["ppl:heldout"].n == 8
    assert trained.tracker.run(result.run_id).data.metrics["eval/ppl.heldout/n"] == 8


@pytest.fixture
def no_model(monkeypatch):
    """Bad input must fail before a model is loaded, let alone run."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(run_module, "load_model", refuse)


def test_bad_task_names_list_the_allowed_ones(trained, no_model):
    with pytest.raises(ConfigError, match=r"did you mean ppl:bible.*allowed: ppl:heldout, "
                       r"ppl:shakespeare, ppl:bible, mc:next-line, mc:speaker") as error:
        evaluate(trained.result.run_id, ["ppl:heldout", "ppl:bibel"], workspace=trained.workspace)
    assert error.value.field == "tasks"
    with pytest.raises(ConfigError, match=r"no task\.json in .*harness data bigbench"):
        evaluate(trained.result.run_id, ["bigbench:not_fetched"], workspace=trained.workspace)
    with pytest.raises(ConfigError, match="names no task"):
        evaluate(trained.result.run_id, [], workspace=trained.workspace)


def test_targets_without_a_harness_checkpoint_are_refused(trained, tmp_path, no_model):
    store = trained.tracker
    empty_run = store.start_run("other", "no-checkpoint", {})
    with pytest.raises(ConfigError, match=f"run {empty_run} has no checkpoint") as error:
        evaluate(empty_run, ["ppl:heldout"], workspace=trained.workspace)
    assert error.value.field == "target"
    with pytest.raises(ConfigError, match="neither a checkpoint file nor a run in sqlite"):
        evaluate("0" * 32, ["ppl:heldout"], workspace=trained.workspace)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    for path in ("notes.txt", "foreign.ckpt"):
        with pytest.raises(ConfigError, match=r"not .*written by `harness train`"):
            evaluate(str(tmp_path / path), ["ppl:heldout"], workspace=trained.workspace)
    with pytest.raises(ConfigError, match="is not a file"):
        evaluate(str(tmp_path / "missing.ckpt"), ["ppl:heldout"], workspace=trained.workspace)


def test_results_cannot_go_to_a_store_without_the_run(trained, tmp_path, no_model):
    copy = shutil.copy(trained.result.checkpoint, tmp_path / "copied.ckpt")
    with pytest.raises(ConfigError, match=r"is not in sqlite.*--no-log") as error:
        evaluate(str(copy), ["ppl:heldout"], workspace=Workspace(tmp_path / "elsewhere"))
    assert error.value.field == "tracking_uri"


@pytest.mark.parametrize("kwargs, field", [({"stride": 33}, "stride"), ({"limit": 0}, "limit"),
                                           ({"batch_size": 0}, "batch_size")])
def test_bad_numbers_are_refused(trained, no_model, kwargs, field):
    with pytest.raises(ConfigError) as error:
        evaluate(trained.result.run_id, ["ppl:heldout"], workspace=trained.workspace, **kwargs)
    assert error.value.field == field


def test_table_storage_scores_the_same_model_with_smaller_tables(trained):
    scores = {storage: evaluate(trained.result.run_id, ["ppl:heldout"], workspace=trained.workspace,
                                limit=64, table_storage=storage)
              for storage in ("fp32", "bf16", "int8")}
    exact = scores["fp32"]["ppl:heldout"].metrics["nll"]
    for storage in ("bf16", "int8"):
        result = scores[storage][f"ppl:heldout.{storage}-tables"]
        assert result.task == f"ppl:heldout.{storage}-tables"
        assert abs(result.metrics["nll"] - exact) < 0.01 * exact  # rounding, not a new model
    logged = trained.tracker.find_run(trained.result.run_id).data.metrics
    assert "eval/ppl.heldout.int8-tables/nll" in logged


def test_table_storage_is_checked_before_the_model_loads(trained, no_model):
    with pytest.raises(ConfigError, match="fp8' is not allowed; allowed: fp32, bf16, int8"):
        evaluate(trained.result.run_id, ["ppl:heldout"], workspace=trained.workspace,
                 table_storage="fp8")
