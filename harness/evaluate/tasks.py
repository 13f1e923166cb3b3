"""Task names: what each one means, and their validation before any model is loaded.

    ppl:heldout        the run's own held-out documents (never trained on)
    ppl:<corpus>       a built-in corpus's held-out documents under the run's split settings:
                       in-domain if the run trained on it, out-of-domain otherwise
    mc:next-line       multiple choice built from held-out plays (play_tasks.py)
    mc:speaker
    bigbench:<task>    a BIG-bench JSON task fetched into the cache (or a folder path)
    anything else      an lm-evaluation-harness task (piqa, arc_easy, ...), if lm-eval is installed
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.data import CORPORA
from harness.errors import ConfigError
from harness.evaluate.bigbench import TASK_NAME
from harness.evaluate.play_tasks import VERSIONS as PLAY_TASKS

PPL = ("ppl:heldout", *(f"ppl:{corpus}" for corpus in CORPORA))
OWN_TASKS = (*PPL, *PLAY_TASKS)
BIGBENCH = "bigbench:"
# `harness eval` without --tasks: in- and out-of-domain perplexity for either built-in corpus,
# and the two play tasks; all offline.
DEFAULT_TASKS = ("ppl:shakespeare", "ppl:bible", "mc:next-line", "mc:speaker")
PAPER_SUITE = ("piqa", "winogrande", "wsc", "arc_easy", "arc_challenge", "logiqa")  # Table 2
LM_EVAL_EXTRA = "memoryformer-harness[lm-eval]"
KINDS = ("ppl", "mc", "bigbench", "lm-eval")


@dataclass(frozen=True)
class TaskSpec:
    name: str  # as the user wrote it; bigbench:PATH becomes bigbench:<folder name>
    kind: str  # one of KINDS
    argument: str  # corpus for ppl (or "heldout"), folder for bigbench, the name otherwise


def allowed_tasks() -> str:
    return (f"allowed: {', '.join(OWN_TASKS)}, {BIGBENCH}TASK (fetched with `harness data "
            f"bigbench`), or an lm-eval task such as {', '.join(PAPER_SUITE)}")


def parse_tasks(names: Sequence[str], bigbench_dir: Path) -> list[TaskSpec]:
    """Specs in the order given (duplicates dropped); ConfigError('tasks', ...) on a bad name.

    lm-eval names are checked here only for lm-eval being installed; check_lm_eval_tasks (in
    lm_eval_adapter) looks them up in its task index.
    """
    if isinstance(names, str) or not names:
        raise ConfigError("tasks", f"{names!r} names no task; {allowed_tasks()}")
    specs = []
    for name in dict.fromkeys(names):
        specs.append(_spec(name, bigbench_dir))
    lm_eval = [s.name for s in specs if s.kind == "lm-eval"]
    if lm_eval and importlib.util.find_spec("lm_eval") is None:
        close = {n: difflib.get_close_matches(n, OWN_TASKS, 1) for n in lm_eval}
        hint = "".join(f" (did you mean {c[0]}?)" for c in close.values() if c)
        verb = "is not a harness task" if len(lm_eval) == 1 else "are not harness tasks"
        raise ConfigError("tasks", f"{', '.join(lm_eval)} {verb}{hint}, and lm-eval, which runs "
                          f"the others, is not installed (pip install '{LM_EVAL_EXTRA}'); "
                          f"{allowed_tasks()}")
    return specs


def _spec(name: str, bigbench_dir: Path) -> TaskSpec:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("tasks", f"{name!r} is not a task name; {allowed_tasks()}")
    if name in PPL:
        return TaskSpec(name, "ppl", name.removeprefix("ppl:"))
    if name in PLAY_TASKS:
        return TaskSpec(name, "mc", name)
    if name.startswith(BIGBENCH):
        task = name.removeprefix(BIGBENCH)
        if task.startswith(("/", "./", "../", "~")):  # a task folder given by path
            folder = Path(task).expanduser()  # results are named by the folder's name alone
            return TaskSpec(f"{BIGBENCH}{folder.name}", "bigbench", str(folder))
        if not TASK_NAME.match(task):
            raise ConfigError("tasks", f"{name!r}: {task!r} is not a BIG-bench task name; "
                              "allowed: bigbench:TASK or bigbench:TASK/SUBTASK (letters, digits, "
                              "_), or bigbench:PATH of a task folder (/..., ./..., ~/...)")
        folder = bigbench_dir / task
        return TaskSpec(name, "bigbench", str(folder))
    if name.startswith(("ppl:", "mc:")):
        close = difflib.get_close_matches(name, OWN_TASKS, 1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError("tasks", f"{name!r} is not a task{hint}; {allowed_tasks()}")
    return TaskSpec(name, "lm-eval", name)
