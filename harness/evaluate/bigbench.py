"""BIG-bench JSON tasks: load a task folder's task.json as multiple-choice examples, and fetch
the task files from the `bigbench==1.0.0` sdist (which holds all 1,041 task.json files; it is never
installed: it pulls TensorFlow).

A BIG-bench JSON task is {"examples": [{"input": ..., "target_scores": {choice: score}}], ...}
plus optional formatting fields; a task split into subtasks keeps one task.json per subtask
folder. Examples without target_scores (free-text tasks) are left out.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.evaluate.multiple_choice import MCExample
from harness.runs.workspace import Workspace

REQUIREMENT = "bigbench==1.0.0"
SDIST_NAME = "bigbench-1.0.0.tar.gz"
TASKS_IN_SDIST = "bigbench-1.0.0/bigbench/benchmark_tasks"
TASK_FILE = "task.json"
CACHE = Workspace().cache / "bigbench"  # where evaluate() looks for bigbench:TASK by default
TASK_NAME = re.compile(r"^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)?$")  # task, or task/subtask
# BIG-bench's JSON-task formatting fields and the defaults its json_task.py uses.
DEFAULTS = {"task_prefix": "", "example_input_prefix": "\nQ: ", "example_output_prefix": "\nA: ",
            "choice_prefix": "\n  choice: ", "append_choices_to_input": True}


@dataclass(frozen=True)
class BigBenchTask:
    name: str
    examples: tuple[MCExample, ...]
    digest: str  # of the task file(s): the version of a BIG-bench task


def load_bigbench_task(folder: Path, name: str | None = None) -> BigBenchTask:
    """The multiple-choice examples of a task folder (its task.json, else its subtasks')."""
    folder = Path(folder)
    name = name or folder.name
    files = [folder / TASK_FILE] if (folder / TASK_FILE).is_file() else []
    data = [_read(path) for path in files]
    if not data or "examples" not in data[0]:  # a task split into subtasks
        files = sorted(folder.glob(f"*/{TASK_FILE}"))
        data = [_read(path) for path in files]
    if not files:
        raise ConfigError("tasks", f"bigbench:{name}: no {TASK_FILE} in {folder}; allowed: a task "
                          f"fetched with `harness data bigbench --tasks {name.split('/')[0]}`, "
                          "or a folder holding a BIG-bench task.json")
    examples = tuple(ex for task in data for ex in task_examples(task))
    if not examples:
        raise ConfigError("tasks", f"bigbench:{name} has no multiple-choice examples "
                          "(target_scores); allowed: a multiple-choice BIG-bench task")
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()[:16]
    return BigBenchTask(name, examples, digest)


def task_examples(task: dict[str, Any]) -> list[MCExample]:
    """One task.json's examples with target_scores, formatted as BIG-bench formats them.

    Prompt: task_prefix + input_prefix + input [+ choice_prefix + choice ...] + output_prefix;
    each choice is scored as the continuation. Correct: the choices with the top score (BIG-bench's
    multiple_choice_grade with 0/1 scores). Choices are listed in the file's order.
    """
    fields = {key: task.get(key, default) for key, default in DEFAULTS.items()}
    out = []
    for example in task.get("examples", []):
        scores = example.get("target_scores")
        if not scores or len(scores) < 2:
            continue
        choices = tuple(str(c) for c in scores)
        listing = ""
        if fields["append_choices_to_input"]:
            listing = "".join(fields["choice_prefix"] + c for c in choices)
        context = (str(fields["task_prefix"]) + str(fields["example_input_prefix"])
                   + str(example["input"]) + listing + str(fields["example_output_prefix"]))
        best = max(float(s) for s in scores.values())
        gold = tuple(i for i, s in enumerate(scores.values()) if float(s) == best)
        if best > 0 and len(gold) < len(choices):
            out.append(MCExample(context, choices, gold))
    return out


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError("tasks", f"{path} is not a readable JSON task ({error})") from None


def fetch_bigbench(tasks: Sequence[str], cache_dir: Path = CACHE, *,
                   sdist_path: Path | None = None, keep_sdist: bool = True) -> dict[str, Path]:
    """Put the named tasks' task.json files (subtasks included) under cache_dir/<task>/.

    Tasks already there are not fetched again. Otherwise the sdist is read from `sdist_path`,
    else from cache_dir/_sdist/, else downloaded there once with `pip download` (358 MB; kept
    unless keep_sdist=False). Returns {task: folder}.
    """
    names = list(dict.fromkeys(tasks))
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise ConfigError("tasks", f"{name!r} is not a BIG-bench task name; allowed: names "
                              "of folders in bigbench/benchmark_tasks, e.g. hyperbaton")
    cache_dir = Path(cache_dir)
    missing = [n for n in names if not any((cache_dir / n).glob(f"**/{TASK_FILE}"))]
    if missing:
        downloaded = sdist_path is None and not (cache_dir / "_sdist" / SDIST_NAME).is_file()
        sdist = Path(sdist_path) if sdist_path is not None else _sdist(cache_dir / "_sdist")
        try:
            extract_tasks(sdist, missing, cache_dir)
        finally:
            if downloaded and not keep_sdist:
                sdist.unlink(missing_ok=True)
    return {name: cache_dir / name for name in names}


def extract_tasks(sdist: Path, tasks: Sequence[str], cache_dir: Path) -> None:
    """Copy <task>/**/task.json of each task out of the sdist, reading it once as a stream."""
    if not Path(sdist).is_file():
        raise ConfigError("sdist_path", f"{sdist} is not a file; allowed: {SDIST_NAME} as "
                          f"`pip download {REQUIREMENT} --no-deps --no-binary :all:` saves it")
    wanted, found, available = set(tasks), set(), set()
    prefix = TASKS_IN_SDIST + "/"
    try:
        with tarfile.open(sdist, "r:*") as archive:
            for member in archive:  # streamed: a 358 MB archive is never held in memory
                if not member.name.startswith(prefix):
                    continue
                parts = member.name[len(prefix):].split("/")
                available.add(parts[0])
                if member.isfile() and parts[-1] == TASK_FILE and parts[0] in wanted:
                    _write(archive, member, cache_dir, parts)
                    found.add(parts[0])
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ConfigError("sdist_path", f"{sdist} is not a readable .tar.gz ({error})") from None
    unknown = [name for name in tasks if name not in found]
    if unknown:
        suggestions = {n: difflib.get_close_matches(n, sorted(available), 3) for n in unknown}
        hint = "; ".join(f"{n}: did you mean {', '.join(s)}?" for n, s in suggestions.items() if s)
        raise ConfigError("tasks", f"not in {sdist.name}: {', '.join(unknown)}; allowed: one of "
                          f"its {len(available)} tasks (bigbench/benchmark_tasks/*)"
                          + (f"; {hint}" if hint else ""))


def _write(archive: tarfile.TarFile, member: tarfile.TarInfo, cache_dir: Path,
           parts: list[str]) -> None:
    # Our own path from checked name parts, never the member's: no "..", links or absolute paths.
    if any(not re.fullmatch(r"[A-Za-z0-9_.-]+", p) or p in (".", "..") for p in parts):
        return
    source = archive.extractfile(member)
    if source is None:
        return
    target = cache_dir.joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")  # write then rename: readers never see half
    tmp.write_bytes(source.read())
    os.replace(tmp, target)


def _sdist(folder: Path) -> Path:
    """The cached sdist, downloaded with pip on first use (source only, no dependencies)."""
    path = folder / SDIST_NAME
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--dest", str(folder), REQUIREMENT]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not path.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError("tasks", f"`pip download {REQUIREMENT}` failed ({last}); allowed: a "
                          "machine that reaches PyPI, or sdist_path= a downloaded " + SDIST_NAME)
    return path
