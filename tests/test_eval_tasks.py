"""Task names: what each kind resolves to, and the messages for names that cannot work."""

from __future__ import annotations

import importlib.util

import pytest

from harness.errors import ConfigError
from harness.evaluate.tasks import TaskSpec, parse_tasks


def test_names_resolve_to_kinds(tmp_path):
    cache = tmp_path / "bigbench"
    specs = parse_tasks(["ppl:heldout", "ppl:bible", "mc:next-line", "bigbench:hyperbaton",
                         "bigbench:logical_deduction/three_objects",
                         f"bigbench:{tmp_path}/my_task", "piqa", "ppl:heldout"], cache)
    assert specs == [
        TaskSpec("ppl:heldout", "ppl", "heldout"), TaskSpec("ppl:bible", "ppl", "bible"),
        TaskSpec("mc:next-line", "mc", "mc:next-line"),
        TaskSpec("bigbench:hyperbaton", "bigbench", str(cache / "hyperbaton")),
        TaskSpec("bigbench:logical_deduction/three_objects", "bigbench",
                 str(cache / "logical_deduction" / "three_objects")),
        TaskSpec("bigbench:my_task", "bigbench", str(tmp_path / "my_task")),
        TaskSpec("piqa", "lm-eval", "piqa"),
    ]  # the repeated ppl:heldout is dropped


@pytest.mark.parametrize("names, message", [
    (["mc:next_line"], r"'mc:next_line' is not a task \(did you mean mc:next-line\?\)"),
    (["bigbench:a/../b"], "is not a BIG-bench task name"),
    (["bigbench:a b"], "is not a BIG-bench task name"),
    ([""], "is not a task name"),
    ("ppl:heldout", "names no task"),  # a string, not a list of names
])
def test_bad_names_are_refused_with_the_allowed_ones(tmp_path, names, message):
    with pytest.raises(ConfigError, match=message) as error:
        parse_tasks(names, tmp_path)
    assert error.value.field == "tasks"


def test_lm_eval_names_without_lm_eval_say_how_to_install_it(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "lm_eval" else real(name, *a))
    with pytest.raises(ConfigError, match=r"piqa is not a harness task, and lm-eval, which runs "
                       r"the others, is not installed \(pip install 'memoryformer-harness"
                       r"\[lm-eval\]'\); allowed: ppl:heldout"):
        parse_tasks(["ppl:heldout", "piqa"], tmp_path)
