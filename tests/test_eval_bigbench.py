"""BIG-bench JSON tasks: the loader on task files written here, and extraction from a small
.tar.gz laid out like the bigbench 1.0.0 sdist (no network: pip is never called)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile

import pytest

from harness.errors import ConfigError
from harness.evaluate.bigbench import (
    TASKS_IN_SDIST,
    extract_tasks,
    fetch_bigbench,
    load_bigbench_task,
)
from harness.evaluate.multiple_choice import MCExample

TASK = {
    "name": "tiny_task",
    "examples": [
        {"input": "2 + 2 =", "target_scores": {"4": 1, "5": 0}},
        {"input": "Capital of France?", "target_scores": {"Lyon": 0, "Paris": 1, "Nice": 0}},
        {"input": "free text", "target": "no target_scores: not multiple choice"},
    ],
}


def write_task(folder, data=TASK):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "task.json").write_text(json.dumps(data))
    return folder


def test_loader_formats_examples_as_big_bench_does(tmp_path):
    task = load_bigbench_task(write_task(tmp_path / "tiny_task"))
    assert task.name == "tiny_task" and len(task.examples) == 2  # the free-text one is left out
    assert task.examples[0] == MCExample(
        "\nQ: 2 + 2 =\n  choice: 4\n  choice: 5\nA: ", ("4", "5"), (0,))
    assert task.examples[1].gold == (1,)


def test_loader_honours_the_task_formatting_fields(tmp_path):
    data = {**TASK, "task_prefix": "Answer.", "example_input_prefix": "\nIn: ",
            "example_output_prefix": "\nOut:", "append_choices_to_input": False}
    task = load_bigbench_task(write_task(tmp_path / "t", data))
    assert task.examples[0].context == "Answer.\nIn: 2 + 2 =\nOut:"


def test_loader_reads_subtasks_and_refuses_tasks_without_choices(tmp_path):
    write_task(tmp_path / "parent" / "sub_a")
    write_task(tmp_path / "parent" / "sub_b")
    (tmp_path / "parent" / "task.json").write_text(json.dumps({"name": "parent"}))
    assert len(load_bigbench_task(tmp_path / "parent").examples) == 4
    write_task(tmp_path / "free", {"examples": [{"input": "x", "target": "y"}]})
    with pytest.raises(ConfigError, match="no multiple-choice examples"):
        load_bigbench_task(tmp_path / "free")
    with pytest.raises(ConfigError, match="harness data bigbench --tasks missing") as error:
        load_bigbench_task(tmp_path / "missing")
    assert error.value.field == "tasks"


def small_sdist(path):
    """A .tar.gz with the sdist's layout: two tasks (one with a subtask) and other files."""
    files = {
        f"{TASKS_IN_SDIST}/tiny_task/task.json": json.dumps(TASK),
        f"{TASKS_IN_SDIST}/tiny_task/README.md": "not copied",
        f"{TASKS_IN_SDIST}/other_task/task.json": json.dumps({"name": "other", "examples": []}),
        f"{TASKS_IN_SDIST}/split_task/part_one/task.json": json.dumps(TASK),
        "bigbench-1.0.0/setup.py": "",
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_fetch_extracts_only_the_named_tasks(tmp_path, monkeypatch):
    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when an sdist is given")

    monkeypatch.setattr(subprocess, "run", no_pip)
    sdist = small_sdist(tmp_path / "bigbench-1.0.0.tar.gz")
    cache = tmp_path / "cache"
    folders = fetch_bigbench(["tiny_task", "split_task"], cache, sdist_path=sdist)
    assert folders == {"tiny_task": cache / "tiny_task", "split_task": cache / "split_task"}
    copied = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())
    assert copied == ["split_task/part_one/task.json", "tiny_task/task.json"]
    assert len(load_bigbench_task(folders["split_task"]).examples) == 2
    # Cached tasks are not fetched again: no sdist and no pip needed.
    assert fetch_bigbench(["tiny_task"], cache) == {"tiny_task": cache / "tiny_task"}


def test_fetch_refuses_unknown_and_malformed_names(tmp_path):
    sdist = small_sdist(tmp_path / "bigbench-1.0.0.tar.gz")
    with pytest.raises(ConfigError, match=r"not in bigbench-1\.0\.0\.tar\.gz: tiny_tsk; .* 3 tasks"
                       r".*did you mean tiny_task") as error:
        extract_tasks(sdist, ["tiny_tsk"], tmp_path / "cache")
    assert error.value.field == "tasks"
    with pytest.raises(ConfigError, match="not a BIG-bench task name"):
        fetch_bigbench(["../etc"], tmp_path / "cache", sdist_path=sdist)
    with pytest.raises(ConfigError, match="is not a file") as error:
        fetch_bigbench(["tiny_task"], tmp_path / "cache", sdist_path=tmp_path / "none.tar.gz")
    assert error.value.field == "sdist_path"
