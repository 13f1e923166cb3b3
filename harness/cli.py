"""The `harness` command: parses arguments and calls one library function per subcommand."""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
from pathlib import Path

from harness import __version__
from harness.errors import ConfigError


def _presets(args: argparse.Namespace) -> int:
    from harness.models import preset, preset_names
    from harness.models.config import format_bytes
    from harness.models.sizes import describe

    rows = [describe(preset(name)) for name in preset_names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows)
    print(f"{'preset':<{width}} {'kind':<13} {'attention':<10} {'L':>3} {'d':>5} {'H':>3} "
          f"{'c/b/K':>10} {'params':>9} {'tables':>9} {'fp32 size':>11}")
    for row in rows:
        knobs = (f"{row['chunk_size']}/{row['bucket_bits']}/{row['num_tables']}"
                 if row["kind"] == "memoryformer" else "-")
        print(f"{row['name']:<{width}} {row['kind']:<13} {row['attention']:<10} "
              f"{row['n_layer']:>3} {row['d_model']:>5} "
              f"{row['n_head']:>3} {knobs:>10} {row['params'] / 1e6:>8.1f}M "
              f"{row['table_params'] / 1e6:>8.1f}M {format_bytes(row['total_bytes']):>11}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from harness.runs import records
    from harness.runs.config import build_run_config
    from harness.train.run import Recording, TrainingFailed, train

    flags = {"train.max_steps": args.max_steps, "train.seed": args.seed,
             "data.corpus": args.corpus, "data.tokenizer": args.tokenizer,
             "train.precision": args.precision, "train.flops_budget": args.flops,
             "train.seconds_budget": args.seconds}
    # Typed values, never re-parsed: `--corpus on` is the file "on", not True.
    config = build_run_config(args.preset, args.set,
                              {key: value for key, value in flags.items() if value is not None})
    recording = Recording(tracking_uri=args.tracking_uri, experiment=args.experiment,
                          run_name=args.run_name)
    _quiet_libraries()
    try:
        result = train(config, recording=recording, resume=args.resume, announce=_notice)
    except TrainingFailed as error:
        print(f"harness train: run {error.run_id} FAILED: {error}", file=sys.stderr)
        return 1
    val = result.metrics.get(records.VAL_LOSS)
    print(f"run {result.run_id} finished" + (f": val/loss {val:.4f}" if val is not None else ""))
    print(f"checkpoint: {result.checkpoint}")
    print(f"browse it:  harness ui{_uri_flag(args.tracking_uri)}  "
          f"(experiment '{result.experiment}')")
    return 0


def _quiet_libraries() -> None:
    """MLflow's and alembic's INFO lines off (the study runner quiets Optuna's itself)."""
    from harness.tracking.client import quiet_store_logs

    quiet_store_logs()


def _notice(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _uri_flag(uri: str | None) -> str:
    from harness.tracking.stores import redact

    return f" --tracking-uri '{redact(uri)}'" if uri else ""


def _ui(args: argparse.Namespace) -> int:
    from harness.tracking.client import Tracker
    from harness.tracking.stores import resolve_tracking_uri
    from harness.tracking.ui import experiment_page, start_ui, stop_ui, wait_until_up

    uri = resolve_tracking_uri(args.tracking_uri)
    process = start_ui(uri, args.host, args.port)
    url = f"http://{args.host}:{args.port}"
    try:
        wait_until_up(url, process=process)
        print(f"MLflow UI on {url} (Ctrl-C stops it)", flush=True)
        tracker = Tracker(uri)
        for name, experiment_id in tracker.experiments():
            page = experiment_page(url, experiment_id, tracker.experiment_tags(experiment_id))
            print(f"  {name}: {page}", flush=True)
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_ui(process)
    return 0


def _server(args: argparse.Namespace) -> int:
    from harness.runs.workspace import Workspace
    from harness.tracking.server import ServerConfig, start_server, stop_server

    config = ServerConfig(args.backend_store_uri or Workspace().tracking_uri,
                          args.artifacts_destination, args.host, args.port, args.workers,
                          args.allowed_hosts)
    try:
        process = start_server(config)  # ConfigError here: bad input, nothing started
    except (RuntimeError, TimeoutError) as error:
        print(f"harness server: error: {error} (its log is above)", file=sys.stderr)
        return 1
    try:
        print(f"MLflow tracking server on {config.url}: workers pass --tracking-uri "
              f"{config.url} (Ctrl-C stops it)", flush=True)
        code = process.wait()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see main)
        return 0
    finally:
        stop_server(process)
    print(f"harness server: the MLflow server exited with code {code}", file=sys.stderr)
    return 1


def _flops(args: argparse.Namespace) -> int:
    from harness.metrics.accounting import flops_report, format_flops
    from harness.runs.config import parse_overrides

    if args.figure is not None:
        from harness.metrics import figure1

        written = figure1.write(args.figure)
        print(f"Figure 1 (block FLOPs against width): {', '.join(map(str, written))}")
        if not args.presets:
            return 0
    if not args.presets:
        raise ConfigError("presets", "missing; allowed: names from `harness presets`, or "
                          "--figure DIR")
    changes = parse_overrides(args.set)
    other = sorted(set(changes) - {"model"})
    if other:
        raise ConfigError("set", f"harness flops counts a model: {other[0]}.* is not allowed; "
                          "allowed: model.FIELD=VALUE")
    overrides = changes.get("model", {})
    reports = [flops_report(name, args.seq_len, fvcore=args.fvcore, **overrides)
               for name in args.presets]
    if args.json:
        print(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    else:
        print(format_flops(reports))
        if args.fvcore:
            print("fvcore: the count of one built block equals the formulas for every preset")
    return 0


def _match(args: argparse.Namespace) -> int:
    """The dense model closest to a MemoryFormer preset on one quantity, as an arm's settings."""
    from harness.models.matching import match_dense
    from harness.models.presets import pair_of
    from harness.runs.config import build_run_config

    target = build_run_config(args.preset, args.set)
    measure = None
    if args.on == "throughput":
        from harness.metrics.throughput import throughput_measure

        measure = throughput_measure(batch=target.data.batch_size, seq_len=target.seq_len)
    match = match_dense(target.model, args.on, target.seq_len, measure)
    c = match.config
    print(f"dense closest to {args.preset} on {args.on}: {c.n_layer} layers x {c.d_model} wide, "
          f"{c.n_head} heads: {match.matched_value:.4g} against {match.target_value:.4g} "
          f"({match.ratio:.3f}x)")
    print(f"as a study arm:  {{preset: {pair_of(args.preset)}, set: {{model.n_layer: "
          f"{c.n_layer}, model.d_model: {c.d_model}, model.n_head: {c.n_head}}}}}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from harness import bench, bench_attention, bench_model

    if args.attention and args.model:
        raise ConfigError("bench", "--attention and --model are separate benches; allowed: "
                          "one of them, or neither (the layer bench)")
    return (bench_attention if args.attention else bench_model if args.model else bench).main(args)


def _load_study(args: argparse.Namespace):
    """The file's Study, or its tune-then-compare Protocol."""
    from harness.ablate.protocol import load

    seeds = getattr(args, "seeds", None)
    return load(args.file, tuple(seeds) if seeds else None)


def _storage(args: argparse.Namespace) -> str:
    from harness.ablate.storage import default_storage

    return args.storage or default_storage()


def _ablate(args: argparse.Namespace) -> int:
    from harness.ablate.protocol import Protocol
    from harness.ablate.runner import (
        Settings,
        prepare_study,
        run_protocol,
        run_study,
        unfinished_summary,
    )
    from harness.ablate.storage import Heartbeat
    from harness.ablate.workers import spawn_workers
    from harness.tracking.stores import resolve_tracking_uri

    study = _load_study(args)  # validates every cell (of every phase) before anything runs
    storage = _storage(args)
    _quiet_libraries()
    checkpoint_dir = args.checkpoint_dir or study.checkpoint_dir
    settings = Settings(storage=storage, tracking_uri=resolve_tracking_uri(args.tracking_uri),
                        heartbeat=Heartbeat.for_storage(storage, args.heartbeat_interval,
                                                        args.grace_period),
                        progress=not args.quiet, devices=args.devices, strategy=args.strategy,
                        checkpoint_dir=checkpoint_dir)
    _prepare_kernel(study)
    started = datetime.datetime.now()  # Optuna's trial times: the local clock, naive
    # A study's stores are made before any other worker starts; a protocol's phases one by one.
    prepared = None if isinstance(study, Protocol) else prepare_study(study, settings)
    seeds = tuple(args.seeds) if args.seeds else None
    workers = spawn_workers(args.file, settings, args.jobs - 1, seeds) if args.jobs > 1 else []
    try:
        phases = (run_protocol(study, settings) if isinstance(study, Protocol)
                  else [(study, run_study(study, settings, prepared))])
    finally:
        for worker in workers:
            worker.wait()
    failed = [(s.name, summary) for s, cells in phases
              if (summary := unfinished_summary(cells)) is not None]
    for name, summary in failed:
        print(f"harness ablate: study {name}: {summary}; see `harness status {args.file}`",
              file=sys.stderr)
    if failed:
        return 1
    if not args.quiet:
        for phase, cells in phases:
            print(_finished_line(phase.name, cells, started))
        names = " ".join(phase.name for phase, _ in phases)
        print(f"next: `harness report {phases[-1][0].name}` writes reports/"
              f"{phases[-1][0].name}/; `harness ui{_uri_flag(args.tracking_uri)}` browses "
              f"{'them' if len(phases) > 1 else 'it'} (experiment{'s' * (len(phases) > 1)} "
              f"{names}); `harness status {args.file}` lists the cells")
    return 0


def _finished_line(name: str, cells, started) -> str:
    """What this command did: cells trained now, and those it found done (not run again)."""
    now = sum(c.trial.datetime_complete is not None and c.trial.datetime_complete >= started
              for c in cells)
    pruned = sum(c.trial.state.name == "PRUNED" for c in cells)
    return (f"study {name}: {len(cells)} cells finished: {now} trained now, "
            f"{len(cells) - now} already done (not run again)"
            + (f", {pruned} pruned" if pruned else ""))


def _prepare_kernel(study) -> None:
    """Build the fused kernel once, here, before workers start and trials time their steps."""
    from harness.ablate.protocol import Protocol
    from harness.train.kernel import prepare_kernel

    phases = study.first_phases() if isinstance(study, Protocol) else [study]
    prepare_kernel((phase.run_config(cell) for phase in phases
                    for cell in (phase.cells() if phase.is_grid else [{}])), _notice)


def _status(args: argparse.Namespace) -> int:
    from harness.ablate.protocol import Protocol
    from harness.ablate.status import format_status, study_status

    study = _load_study(args)
    phases = study.first_phases() if isinstance(study, Protocol) else [study]
    for phase in phases:
        print(format_status(phase, study_status(phase, _storage(args))))
    if isinstance(study, Protocol):
        print("(a sweep's extension rounds, NAME-tune-ARM-1 and on, are made when its first "
              "round ends with its best value at an edge)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from harness.report.build import build_report
    from harness.tracking.stores import resolve_tracking_uri

    if args.readme:
        from harness.report.readme import update_readme

        changed = update_readme(Path("README.md"), Path("reports"))
        print("README.md: generated blocks " + ("rewritten from reports/" if changed
                                                 else "already match reports/"))
        return 0
    if args.study is None:
        raise ConfigError("study", "missing; allowed: a study's name, or --readme")

    data_from = args.data_from
    out = args.out if args.out is not None or data_from is None else data_from
    uri = "" if data_from is not None else resolve_tracking_uri(args.tracking_uri)
    result = build_report(args.study, uri, out, log=not args.no_log, dpi=args.dpi,
                          data_from=data_from)
    print(f"report of {result.study}: {result.index} ({len(result.files)} files"
          + (", also logged to the study's parent run)" if result.logged else ")"))
    return 0


def _time(args: argparse.Namespace) -> int:
    from harness.ablate.timing import format_timings, time_report, time_study
    from harness.tracking.stores import resolve_tracking_uri

    if args.rounds < 1 or args.steps < 1:
        raise ConfigError("rounds" if args.rounds < 1 else "steps", "must be at least 1; "
                          "allowed: a positive number")
    def progress(line: str) -> None:
        print(f"timing {args.study}: {line}", flush=True)

    if args.data_from is not None:
        timings = time_report(args.study, args.data_from, args.rounds, args.steps, progress)
        print(format_timings(timings))
        print(f"written into {args.data_from}/data/runs.csv; report rebuilt in {args.data_from}")
        return 0
    timings = time_study(args.study, resolve_tracking_uri(args.tracking_uri), args.rounds,
                         args.steps, log=not args.no_log, progress=progress)
    print(format_timings(timings))
    if not args.no_log:
        print(f"logged on {sum(len(t.runs) for t in timings)} runs as "
              "perf/timed_tokens_per_s (with _low, _high); `harness report "
              f"{args.study}` shows them")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from harness.evaluate import DEFAULT_TASKS, evaluate, format_results

    tasks = [t for item in (args.tasks or [",".join(DEFAULT_TASKS)]) for t in item.split(",") if t]
    results = evaluate(args.target, tasks, tracking_uri=args.tracking_uri, limit=args.limit,
                       batch_size=args.batch_size, stride=args.stride, log=not args.no_log,
                       device=args.device, lm_eval_include=args.lm_eval_include,
                       bigbench_dir=args.bigbench_dir, table_storage=args.table_storage)
    print(format_results(results))
    return 0


def _data_bigbench(args: argparse.Namespace) -> int:
    from harness.evaluate import fetch_bigbench

    tasks = [t for item in args.tasks for t in item.split(",") if t]
    kwargs = {"cache_dir": args.cache} if args.cache else {}
    for task, path in fetch_bigbench(tasks, sdist_path=args.sdist,
                                     keep_sdist=not args.no_keep_sdist, **kwargs).items():
        print(f"{task}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    presets = commands.add_parser("presets", help="list model presets with their sizes")
    presets.add_argument("--json", action="store_true", help="print one JSON list")
    presets.set_defaults(run=_presets)

    flops = commands.add_parser("flops", help="per-block FLOPs (exact count and the paper's "
                                "approximation), parameters and table bytes of presets")
    flops.add_argument("presets", nargs="*", metavar="PRESET",
                       help="names from `harness presets`")
    flops.add_argument("--seq-len", type=int, help="sequence length (default: its context)")
    flops.add_argument("--json", action="store_true", help="print JSON (one object per preset)")
    flops.add_argument("--fvcore", action="store_true", help="also build one block, count it "
                       "with fvcore and check the count equals the formulas")
    flops.add_argument("--set", action="append", default=[], metavar="model.FIELD=VALUE",
                       help="override a model field of every preset, e.g. "
                       "model.attention=performer; repeatable")
    flops.add_argument("--figure", type=Path, metavar="DIR",
                       help="also write the paper's Figure 1 (one block's FLOPs against width, "
                            "dense against MemoryFormer, s = 2048) as DIR/figure1.png and .csv")
    flops.set_defaults(run=_flops)

    match = commands.add_parser("match", help="the dense model closest to a MemoryFormer on "
                                "params, forward FLOPs or measured training throughput")
    match.add_argument("preset", help="a MemoryFormer preset, e.g. memoryformer-nano")
    match.add_argument("--on", default="params", choices=("params", "forward_flops", "throughput"),
                       help="the quantity to match (throughput: measured on this machine, at "
                       "the config's batch and sequence length; default: %(default)s)")
    match.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                       help="override a field of the target's run config; repeatable")
    match.set_defaults(run=_match)

    bench_help = ("time MemoryLayer against nn.Linear, with the machine's memory bandwidth (the "
                  "roofline); --attention: every attention against softmax over contexts; "
                  "--model: whole models against their dense twin")
    bench = commands.add_parser("bench", help=bench_help, description=bench_help[:1].upper()
                                + bench_help[1:] + ". Ratios are measured side by side in one "
                                "process; the anchor (the fastest nn.Linear or SDPA) is named in "
                                "the output.")
    from harness import bench_attention, bench_model
    from harness.bench import add_arguments

    add_arguments(bench)
    bench_attention.add_arguments(bench)
    bench_model.add_arguments(bench)
    bench.set_defaults(run=_bench)

    train = commands.add_parser("train", help="train one model on real text, tracked in MLflow")
    train.add_argument("--preset", default="memoryformer-nano",
                       help="a name from `harness presets`")
    train.add_argument("--max-steps", type=int, help="optimiser steps (train.max_steps)")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--flops", type=float, metavar="F", help="train until F training FLOPs "
                        "are spent, 3x the exact forward count per token (train.flops_budget)")
    budget.add_argument("--seconds", type=float, metavar="S", help="train until S seconds of "
                        "optimiser steps are spent, validation excluded (train.seconds_budget)")
    train.add_argument("--corpus", help="shakespeare, bible, a text file or folder, or hf:NAME")
    train.add_argument("--tokenizer", help="byte, bpe or gpt2 (data.tokenizer)")
    train.add_argument("--seed", type=int, help="model init and sample order (train.seed)")
    train.add_argument("--precision", help="32 or bf16 (train.precision)")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                       help="override any config field, e.g. model.chunk_size=4; repeatable")
    train.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, "
                       "else sqlite under .harness/)")
    train.add_argument("--experiment", default="train", help="MLflow experiment name")
    train.add_argument("--run-name", help="MLflow run name (default: PRESET-sSEED)")
    train.add_argument("--resume", type=Path, metavar="CHECKPOINT",
                       help="continue a checkpoint, in the same MLflow run")
    train.set_defaults(run=_train)

    ablate = commands.add_parser("ablate", help="run (or continue) a study from a study file")
    ablate.add_argument("file", type=Path, help="a study file, e.g. ablations/quickstart.yaml")
    ablate.add_argument("--storage", help="Optuna storage URL (default: sqlite under .harness/; "
                        "postgresql://... lets workers on many machines share the study)")
    ablate.add_argument("--tracking-uri", help="MLflow store (default: MLFLOW_TRACKING_URI, "
                        "else sqlite under .harness/)")
    ablate.add_argument("--jobs", type=int, default=1, help="local worker processes")
    ablate.add_argument("--seeds", type=int, nargs="+", help="replace the file's seeds")
    ablate.add_argument("--devices", type=int, help="devices per trial (Lightning DDP)")
    ablate.add_argument("--strategy", help="Lightning strategy per trial, e.g. ddp")
    ablate.add_argument("--checkpoint-dir", metavar="DIR_OR_URL",
                        help="where trials write checkpoints: a path every worker can read (NFS) "
                        "or an fsspec URL such as s3://bucket/prefix (default: the study file's "
                        "checkpoint_dir, else .harness/checkpoints)")
    ablate.add_argument("--heartbeat-interval", type=int,
                        help="seconds between a running trial's heartbeats (default: 10 on "
                        "SQLite, 20 on a database server)")
    ablate.add_argument("--grace-period", type=int,
                        help="a trial silent this long is taken for dead and retried (default: "
                        "30 s on SQLite, 180 s on a database server, to ride out a failover)")
    ablate.add_argument("--quiet", action="store_true", help="no progress bar or summaries")
    ablate.set_defaults(run=_ablate)

    status = commands.add_parser("status", help="the cells of a study and their states")
    status.add_argument("file", type=Path)
    status.add_argument("--storage", help="Optuna storage URL (default: sqlite under .harness/)")
    status.add_argument("--seeds", type=int, nargs="+", help="as given to `harness ablate`")
    status.set_defaults(run=_status)

    report = commands.add_parser("report", help="tables, plots and a summary of a study, "
                                 "from its tracked runs")
    report.add_argument("study", nargs="?", help="the study's name (its MLflow experiment)")
    report.add_argument("--tracking-uri", help="MLflow store (default as for ablate)")
    report.add_argument("--readme", action="store_true",
                        help="rewrite README.md's generated blocks (headline, reference results, "
                             "speed) from the committed reports/ instead; run it in the "
                             "repository")
    report.add_argument("--out", type=Path, help="output folder (default: reports/STUDY)")
    report.add_argument("--no-log", action="store_true",
                        help="do not attach the report to the study's parent run")
    report.add_argument("--dpi", type=int, default=120)
    report.add_argument("--from", dest="data_from", type=Path, metavar="REPORT_DIR",
                        help="rebuild from the data a report folder holds (its data/), without "
                             "the tracking store; writes into that folder unless --out")
    report.set_defaults(run=_report)

    timing = commands.add_parser(
        "time", help="the timing pass: each cell of a finished study timed again in one quiet "
        "process (cells interleaved), logged on its runs for the report's throughput",
        description="Time each cell's training step (its run's config, real batches, cells "
        "taking turns round by round) and log tokens/s with the slowest and fastest rounds on "
        "the cell's runs. Run it with nothing else running.")
    timing.add_argument("study", help="the study's name (its MLflow experiment)")
    timing.add_argument("--tracking-uri", help="MLflow store (default as for ablate)")
    timing.add_argument("--rounds", type=int, default=5,
                        help="rounds; each times every cell once (default: %(default)s)")
    timing.add_argument("--steps", type=int, default=8,
                        help="optimiser steps per cell per round (default: %(default)s)")
    timing.add_argument("--no-log", action="store_true", help="print only, log nothing")
    timing.add_argument("--from", dest="data_from", type=Path, metavar="REPORT_DIR",
                        help="time the cells of a report's data instead (no store needed): the "
                             "timings go into its data/runs.csv and the report is rebuilt")
    timing.set_defaults(run=_time)

    evaluate = commands.add_parser("eval", help="evaluate a run or checkpoint: perplexity, "
                                   "multiple choice, BIG-bench, lm-eval tasks")
    evaluate.add_argument("target", help="an MLflow run id or a checkpoint path")
    evaluate.add_argument("--tasks", action="append", help="comma-separated task names: "
                          "ppl:heldout, ppl:shakespeare, ppl:bible, mc:next-line, mc:speaker, "
                          "bigbench:TASK, or lm-eval tasks such as piqa (default: ppl and mc)")
    evaluate.add_argument("--limit", type=int, help="examples per task (tokens for ppl)")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--stride", type=int, help="perplexity window stride")
    evaluate.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    evaluate.add_argument("--tracking-uri", help="MLflow store (default as for train)")
    evaluate.add_argument("--no-log", action="store_true", help="print only, log nothing")
    evaluate.add_argument("--lm-eval-include", type=Path, help="folder of lm-eval task YAMLs")
    evaluate.add_argument("--bigbench-dir", type=Path, help="folder of fetched BIG-bench tasks")
    evaluate.add_argument("--table-storage", default="fp32", help="fp32, bf16 or int8: score a "
                          "MemoryFormer with its hash tables stored that way (inference)")
    evaluate.set_defaults(run=_eval)

    data = commands.add_parser("data", help="fetch evaluation data from package registries")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="WHAT")
    bigbench = data_commands.add_parser("bigbench", help="extract BIG-bench tasks from its "
                                        "sdist (pip download, once; never installed)")
    bigbench.add_argument("--tasks", action="append", required=True,
                          help="comma-separated task names, e.g. hyperbaton,navigate")
    bigbench.add_argument("--cache", type=Path, help="default: .harness/cache/bigbench")
    bigbench.add_argument("--sdist", type=Path, help="a bigbench-1.0.0.tar.gz already on disk")
    bigbench.add_argument("--no-keep-sdist", action="store_true",
                          help="delete the 358 MB sdist after extracting")
    bigbench.set_defaults(run=_data_bigbench)

    ui = commands.add_parser("ui", help="serve the MLflow UI over the tracking store")
    ui.add_argument("--tracking-uri", help="default: MLFLOW_TRACKING_URI, else .harness/mlflow.db")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(run=_ui)

    server = commands.add_parser("server", help="an MLflow tracking server with served "
                                 "artifacts, for workers on many machines (runs until Ctrl-C)")
    server.add_argument("--backend-store-uri", help="where runs are kept: a database URL, "
                        "postgresql://USER@HOST:5432/DB on a cluster (default: sqlite under "
                        ".harness/)")
    server.add_argument("--artifacts-destination", default=".harness/served-artifacts",
                        help="where served artifacts are kept: a folder (made absolute) or an "
                        "fsspec URL such as s3://BUCKET/PATH (default: %(default)s)")
    server.add_argument("--host", default="127.0.0.1", help="interface to listen on; 0.0.0.0 "
                        "for workers on other machines (default: %(default)s)")
    server.add_argument("--port", type=int, default=5000, help="default: %(default)s")
    server.add_argument("--workers", type=int, default=1, help="server processes; more for "
                        "many workers on a PostgreSQL store (default: %(default)s)")
    server.add_argument("--allowed-hosts", help="comma-separated Host headers to accept "
                        "(default: MLflow's: localhost and private IPs, plus this machine's "
                        "name with --host 0.0.0.0)")
    server.set_defaults(run=_server)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (a scheduler's preemption, `kill`) stops a run like Ctrl-C: runs end KILLED, not
    # left RUNNING, and an interrupted trial is resumed when its study is run again.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return args.run(args)
    except ConfigError as error:  # bad input: one line, exit 2, before any training starts
        print(f"harness {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"harness {args.command}: interrupted; rerun the same command to continue",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
