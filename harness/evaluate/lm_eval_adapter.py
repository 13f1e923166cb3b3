"""Our checkpoints as an lm-evaluation-harness model, registered as "harness".

This is the only module that imports lm_eval (at its top: import it only when an lm-eval task is
asked for). evaluate() hands lm-eval a ready HarnessLM; lm-eval's own CLI can load a checkpoint
too, once this module is imported: `--model harness --model_args checkpoint=PATH`.

The paper's suite (PIQA, WinoGrande, WSC, ARC, LogiQA) loads its data from the Hugging Face hub:
where the hub is unreachable, the tasks are refused up front in one line instead of after
lm-eval's retries.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from lm_eval import simple_evaluate
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.tasks import TaskManager

from harness.errors import ConfigError
from harness.evaluate.perplexity import token_nll
from harness.evaluate.results import TaskResult
from harness.evaluate.scoring import Scorer
from harness.evaluate.tasks import allowed_tasks

HUB = "https://huggingface.co"
MAX_GEN_TOKS = 256  # lm-eval's default for generate_until
SKIPPED = ("alias", "sample_len")  # a name, and the count that TaskResult.n already holds
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")  # the user's datasets are cached


@register_model("harness")
class HarnessLM(LM):
    """loglikelihood, loglikelihood_rolling and greedy generate_until over a harness model."""

    def __init__(self, scorer: Scorer | None = None, checkpoint: str | None = None,
                 batch_size: int | str = 32, device: str | None = None,
                 stride: int | str | None = None, info: dict[str, Any] | None = None,
                 **_lm_eval_extras: Any):
        super().__init__()
        if scorer is None:
            if checkpoint is None:
                raise ConfigError("model_args", "names no model; allowed: checkpoint=PATH")
            from harness.evaluate.checkpoint import load_scorer

            scorer, info = load_scorer(Path(checkpoint), int(batch_size), device)
        self.scorer = scorer
        self.stride = int(stride) if stride else max(1, scorer.window // 2)
        self.info = info or {}

    @property
    def tokenizer_name(self) -> str:
        return self.scorer.tokenizer.name

    def get_model_info(self) -> dict[str, Any]:
        return dict(self.info)  # lm-eval adds it to the results' config

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False
                      ) -> list[tuple[float, bool]]:
        return self.scorer.loglikelihood([req.args for req in requests])

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False
                              ) -> list[float]:
        """Whole-text log-likelihood, from a document separator, by strided windows."""
        scorer, out = self.scorer, []
        for (text,) in (req.args for req in requests):
            tokens = torch.tensor([*scorer.tokenizer.separator, *scorer.tokenizer.encode(text)])
            nll = token_nll(scorer.model, tokens, scorer.window, self.stride, scorer.batch_size,
                            scorer.device)
            # Only the text's tokens: the separator's own later ids are context, not text.
            out.append(-float(nll[len(scorer.tokenizer.separator) - 1:].sum()))
        return out

    @torch.no_grad()
    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Greedy decoding until a stop string or max_gen_toks (sampling options are ignored)."""
        return [self._generate(context, dict(kwargs or {}))
                for context, kwargs in (req.args for req in requests)]

    def _generate(self, context: str, kwargs: dict[str, Any]) -> str:
        scorer = self.scorer
        until = kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        limit = int(kwargs.get("max_gen_toks", MAX_GEN_TOKS))
        tokens = scorer.tokenizer.encode(context) if context else list(scorer.tokenizer.separator)
        generated: list[int] = []
        text = ""
        for _ in range(limit):
            window = torch.tensor([(tokens + generated)[-scorer.window:]], device=scorer.device)
            generated.append(int(scorer.model(window)[0, -1].argmax()))
            text = scorer.tokenizer.decode(generated)
            stops = [text.index(stop) for stop in until if stop and stop in text]
            if stops:
                return text[:min(stops)]
        return text


def task_manager(names: Sequence[str], include_path: Path | None) -> TaskManager:
    """A TaskManager that knows every name, or ConfigError('tasks', ...) naming the unknown.

    With include_path, its own index is tried first: indexing lm-eval's ~15,000 built-in tasks
    takes seconds, and local tasks need none of them.
    """
    if include_path is not None:
        local = _task_manager(str(include_path), include_defaults=False)
        if all(name in local.all_tasks for name in names):
            return local
    manager = _task_manager(str(include_path) if include_path else None, include_defaults=True)
    unknown = [name for name in names if name not in manager.all_tasks]
    if unknown:
        hints = [f"{n}: did you mean {', '.join(close)}?" for n in unknown
                 if (close := _close(n, manager.all_tasks))]
        raise ConfigError("tasks", f"{', '.join(unknown)}: not a harness or lm-eval task; "
                          f"{allowed_tasks()}" + (f"; {'; '.join(hints)}" if hints else ""))
    return manager


def check_hub(names: Sequence[str], manager: TaskManager, include_path: Path | None) -> None:
    """Refuse hub-backed tasks up front when the hub cannot be reached (unless offline mode says
    the datasets are cached). Tasks from include_path are taken to be local."""
    if any(os.environ.get(var, "").lower() in ("1", "true", "yes") for var in OFFLINE_VARIABLES):
        return
    local = set()
    if include_path is not None:
        local = set(_task_manager(str(include_path), include_defaults=False).all_tasks)
    remote = [name for name in names if name not in local]
    if not remote:
        return
    endpoint = os.environ.get("HF_ENDPOINT", HUB)
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=5).close()
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise ConfigError("tasks", f"{', '.join(remote)} load their data from the Hugging Face "
                          f"hub ({endpoint}), which is unreachable from here ({reason}); allowed: "
                          "a machine that reaches the hub, HF_DATASETS_OFFLINE=1 with the "
                          "datasets cached, or tasks that need no download: "
                          "ppl:*, mc:*, bigbench:*") from None


def run_lm_eval(lm: HarnessLM, names: Sequence[str], manager: TaskManager,
                limit: int | None = None) -> dict[str, TaskResult]:
    """Run lm-eval tasks zero-shot; one TaskResult per task or group lm-eval reports."""
    try:
        results = simple_evaluate(model=lm, tasks=list(names), task_manager=manager,
                                  limit=limit, log_samples=False, num_fewshot=None)
    except ConnectionError as error:  # a dataset that needs the hub after all
        raise ConfigError("tasks", f"lm-eval could not load {', '.join(names)}: {error}; "
                          "allowed: a machine that reaches the Hugging Face hub") from None
    assert results is not None  # None only on ranks > 0 of a distributed run
    out = {}
    for task, values in results["results"].items():
        metrics = {}
        for key, value in values.items():
            metric, _, filter_name = key.partition(",")
            if metric in SKIPPED or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if filter_name not in ("", "none"):
                metric = f"{metric}.{filter_name}"
            metrics[metric] = float(value)
        n = results.get("n-samples", {}).get(task, {}).get("effective", 0)
        version = results.get("versions", {}).get(task)
        out[task] = TaskResult(task, int(n), metrics, "" if version is None else str(version),
                               source="lm-evaluation-harness")
    return out


@lru_cache(maxsize=4)
def _task_manager(include_path: str | None, include_defaults: bool) -> TaskManager:
    # Indexing lm-eval's built-in tasks takes seconds: once per process (a study evaluates often).
    return TaskManager(include_path=include_path, include_defaults=include_defaults)


def _close(name: str, known: Sequence[str]) -> list[str]:
    return difflib.get_close_matches(name, list(known), 3)
