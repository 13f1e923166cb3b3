"""`evaluate()`: a trained run's checkpoint -> task scores, logged on that same MLflow run.

Order matters as in training: task names, the target, the tracking store, the tokenizer and
every task's data are checked before the model is loaded, so bad input fails in seconds with a
ConfigError that names the field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import torch

from harness.data import Tokenizer, documents_digest, encode_documents
from harness.errors import ConfigError
from harness.evaluate.bigbench import load_bigbench_task
from harness.evaluate.checkpoint import (
    Checkpoint,
    default_device,
    load_model,
    model_info,
    read_checkpoint,
    resolve_target,
)
from harness.evaluate.multiple_choice import examples_digest, score_examples
from harness.evaluate.perplexity import perplexity
from harness.evaluate.play_tasks import BuiltTask, build_play_task
from harness.evaluate.results import TaskResult
from harness.evaluate.run_data import corpus_split, run_tokenizer
from harness.evaluate.scoring import Scorer
from harness.evaluate.tasks import TaskSpec, parse_tasks
from harness.models.memory_layer import TABLE_STORAGES, store_all_tables
from harness.runs import records
from harness.runs.config import RunConfig
from harness.runs.workspace import Workspace
from harness.tracking.client import Tracker
from harness.tracking.stores import check_tracking_uri, redact, resolve_tracking_uri
from harness.validate import check_choice, check_int

PLAY_CORPUS = "shakespeare"  # the mc:* tasks are built from its held-out plays
PPL_VERSION = "1"  # bump when what ppl:* scores changes (windows, separator prefix, bytes)
Runner = Callable[[Scorer], dict[str, TaskResult]]


@dataclass(frozen=True)
class Settings:
    limit: int | None  # examples per multiple-choice task, tokens per perplexity task
    stride: int  # sliding-window stride for perplexity
    device: str


def evaluate(
    target: str,
    tasks: Sequence[str],
    *,
    tracking_uri: str | None = None,
    workspace: Workspace = Workspace(),
    limit: int | None = None,
    batch_size: int = 32,
    stride: int | None = None,
    log: bool = True,
    device: str | None = None,
    lm_eval_include: Path | None = None,
    bigbench_dir: Path | None = None,
    table_storage: str = "fp32",
) -> dict[str, TaskResult]:
    """Score a run (MLflow run id) or a checkpoint file on `tasks` (see harness.evaluate.tasks).

    With log=True (the default) every result goes onto the run that trained the checkpoint as
    metrics eval/<task>/<metric> (plus eval/<task>/n) at the checkpoint's step, with the task's
    version, source and digest as tags; no new run is created.

    table_storage `bf16` or `int8` scores a MemoryFormer with its hash tables stored that way
    (MemoryLayer.store_tables); its results are logged as task "<task>.<storage>-tables".
    """
    check_choice("table_storage", table_storage, tuple(TABLE_STORAGES))
    specs = parse_tasks(tasks, Path(bigbench_dir) if bigbench_dir
                        else workspace.cache / "bigbench")
    _check_numbers(limit, batch_size, stride)
    tracker, checkpoint, run = _target(target, tracking_uri, workspace, log)
    config = checkpoint.config
    if table_storage != "fp32" and config.model.kind != "memoryformer":
        raise ConfigError("table_storage", f"{table_storage!r} applies to hash tables and this "
                          f"run's model is {config.model.kind}; allowed: fp32")
    settings = Settings(limit, _stride(stride, config.seq_len), default_device(device))
    digest = run.data.tags.get(records.TOKENIZER_DIGEST) if run is not None else None
    tokenizer = run_tokenizer(config.data, config.model.vocab_size, digest)
    runners = _runners(specs, checkpoint, tokenizer, settings, lm_eval_include)

    model = load_model(checkpoint, torch.device(settings.device))
    if table_storage != "fp32":
        store_all_tables(model, table_storage)
    scorer = Scorer(model, tokenizer, config.seq_len, batch_size, settings.device)
    results = _with_storage({name: result for runner in runners
                             for name, result in runner(scorer).items()}, table_storage)
    if run is not None:
        _log(tracker, run.info.run_id, checkpoint.step, results)
    return results


def _with_storage(results: dict[str, TaskResult], storage: str) -> dict[str, TaskResult]:
    """Results of a model with non-fp32 tables, named as such: `ppl:heldout.int8-tables`."""
    if storage == "fp32":
        return results
    return {f"{name}.{storage}-tables": replace(result, task=f"{result.task}.{storage}-tables")
            for name, result in results.items()}


def _target(target: str, tracking_uri: str | None, workspace: Workspace, log: bool):
    """(tracker, checkpoint, the run to log on or None): the store checked before it is used."""
    uri = resolve_tracking_uri(tracking_uri, workspace)
    if log or not Path(target).expanduser().exists():  # the store is needed: check it first
        check_tracking_uri(uri)
    tracker = Tracker(uri, artifact_root=workspace.artifacts)
    checkpoint = read_checkpoint(resolve_target(target, workspace, tracker))
    return tracker, checkpoint, _run_to_log(tracker, checkpoint) if log else None


def _stride(stride: int | None, window: int) -> int:
    stride = stride or max(1, window // 2)
    if stride > window:
        raise ConfigError("stride", f"{stride} is longer than the window of {window} tokens (the "
                          f"run's seq_len); allowed: 1..{window}")
    return stride


def _runners(specs: list[TaskSpec], checkpoint: Checkpoint, tokenizer: Tokenizer,
             settings: Settings, lm_eval_include: Path | None) -> list[Runner]:
    """Every task's data loaded or built now, so bad input fails before the model loads."""
    runners = [_prepare(spec, checkpoint, tokenizer, settings) for spec in specs
               if spec.kind != "lm-eval"]
    lm_eval_names = [spec.name for spec in specs if spec.kind == "lm-eval"]
    if lm_eval_names:
        runners.append(_prepare_lm_eval(lm_eval_names, lm_eval_include, checkpoint, settings))
    return runners


def _check_numbers(limit: int | None, batch_size: int, stride: int | None) -> None:
    if limit is not None:
        check_int("limit", limit, 1)
    check_int("batch_size", batch_size, 1)
    if stride is not None:
        check_int("stride", stride, 1)


def _run_to_log(tracker: Tracker, checkpoint: Checkpoint):
    run = tracker.find_run(checkpoint.run_id) if checkpoint.run_id else None
    if run is None:
        raise ConfigError("tracking_uri", f"the run that wrote {checkpoint.path} "
                          f"({checkpoint.run_id or 'no run id'}) is not in {redact(tracker.uri)}, "
                          "so results cannot be logged on it; allowed: the store it was trained "
                          "with (--tracking-uri), or log=False (--no-log) to only print them")
    return run


def _prepare(spec: TaskSpec, checkpoint: Checkpoint, tokenizer: Tokenizer,
             settings: Settings) -> Runner:
    """Load or build the task's data now (errors surface before the model loads); score later."""
    config = checkpoint.config
    if spec.kind == "ppl":
        return _prepare_ppl(spec, config, tokenizer, settings)
    if spec.kind == "mc":
        data = config.data
        built = _play_task(spec.name, data.corpus, data.val_fraction, data.split_seed)
        examples = built.examples[:settings.limit]
        source = built.source
        extra = {"dropped_overlap": str(built.dropped)}
        version = built.version
    else:
        task = load_bigbench_task(Path(spec.argument), spec.name.removeprefix("bigbench:"))
        examples = task.examples[:settings.limit]
        source, extra, version = f"BIG-bench task.json in {spec.argument}", {}, task.digest

    def run(scorer: Scorer) -> dict[str, TaskResult]:
        metrics = score_examples(examples, lambda pairs: [ll for ll, _ in
                                                          scorer.loglikelihood(pairs)])
        return {spec.name: TaskResult(spec.name, len(examples), metrics, version, source,
                                      examples_digest(examples), extra)}

    return run


@lru_cache(maxsize=8)
def _play_task(name: str, corpus: str, val_fraction: float, split_seed: int) -> BuiltTask:
    """Built once per process for a split: a study evaluates every trial on the same examples."""
    held_out = corpus_split(PLAY_CORPUS, val_fraction, split_seed)[1]
    return build_play_task(name, held_out, corpus_split(corpus, val_fraction, split_seed)[0])


def _prepare_ppl(spec: TaskSpec, config: RunConfig, tokenizer: Tokenizer,
                 settings: Settings) -> Runner:
    data = config.data
    corpus = data.corpus if spec.argument == "heldout" else spec.argument
    documents = corpus_split(corpus, data.val_fraction, data.split_seed)[1]
    stream = encode_documents(documents, tokenizer, data.cache_dir, "val")  # the training cache
    prefix = len(tokenizer.separator)  # scored from a document start, like the first document
    tokens = [*tokenizer.separator, *stream[:settings.limit].tolist()]
    scored = tokens[prefix:]
    num_bytes = len(scored) if tokenizer.backend is None else len(
        tokenizer.decode(scored).encode("utf-8"))
    domain = "in" if corpus == data.corpus else "out"
    names = ", ".join(d.name for d in documents)
    source = (f"{corpus}: held-out documents (val_fraction {data.val_fraction}, split_seed "
              f"{data.split_seed}), {len(documents)} of them: {names}; first {len(scored)} of "
              f"{len(stream)} tokens")
    extra = {"domain": domain, "window": str(config.seq_len), "stride": str(settings.stride)}
    digest = f"{documents_digest(documents)}-{len(scored)}"

    def run(scorer: Scorer) -> dict[str, TaskResult]:
        result = perplexity(scorer.model, tokens, scorer.window, settings.stride, prefix,
                            num_bytes, scorer.batch_size, scorer.device)
        return {spec.name: TaskResult(spec.name, result.n, result.metrics(), PPL_VERSION,
                                      source, digest, extra)}

    return run


def _prepare_lm_eval(names: list[str], include: Path | None, checkpoint: Checkpoint,
                     settings: Settings) -> Runner:
    from harness.evaluate.lm_eval_adapter import HarnessLM, check_hub, run_lm_eval, task_manager

    manager = task_manager(names, include)
    check_hub(names, manager, include)

    def run(scorer: Scorer) -> dict[str, TaskResult]:
        lm = HarnessLM(scorer=scorer, stride=settings.stride, info=model_info(checkpoint))
        return run_lm_eval(lm, names, manager, settings.limit)

    return run


def _log(tracker: Tracker, run_id: str, step: int, results: dict[str, TaskResult]) -> None:
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    for result in results.values():
        metrics.update(result.metric_dict())
        tags.update(result.tag_dict())
    tracker.log_metrics(run_id, metrics, step=step)
    tracker.set_tags(run_id, tags)
