"""`harness time STUDY`: the timing pass over a finished study's cells, logged on its runs; with
`--from REPORT_DIR`, over the cells of a report's data (data/runs.csv), written into that data and
the report rebuilt, so a committed reference report can be timed on any machine.

Each cell (the seeds of one grid point: tag harness.group) is timed once, from the params of its
first finished run; the result goes on every finished run of the cell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from harness.bench import machine_line
from harness.errors import ConfigError
from harness.runs import records
from harness.runs.config import RunConfig
from harness.train.timing import ROUNDS, STEPS, Timing, time_cells


@dataclass(frozen=True)
class Trial:
    run_id: str
    tags: Mapping[str, str]
    params: Mapping[str, str]


@dataclass(frozen=True)
class CellTiming:
    cell: str
    runs: tuple[str, ...]  # the finished trial runs it belongs to
    timing: Timing


def time_trials(trials: list[Trial], rounds: int = ROUNDS, steps: int = STEPS,
                progress: Callable[[str], None] | None = None) -> tuple[list[CellTiming], str]:
    """The cells' timings and how they were taken (the records.TIMING tag)."""
    cells: dict[str, list[Trial]] = {}
    for trial in trials:
        key = trial.tags.get(records.GROUP) or trial.tags.get(records.CELL) or trial.run_id
        cells.setdefault(key, []).append(trial)
    configs = {cell: RunConfig.from_params(group[0].params) for cell, group in cells.items()}
    timings = time_cells(configs, rounds, steps, progress=progress)
    how = (f"{rounds} rounds x {steps} steps, {len(cells)} cells interleaved, "
           f"{torch.get_num_threads()} threads; {machine_line('cpu')}")
    return [CellTiming(cell, tuple(t.run_id for t in group), timings[cell])
            for cell, group in cells.items()], how


def time_study(study: str, tracking_uri: str, rounds: int = ROUNDS, steps: int = STEPS,
               log: bool = True, progress: Callable[[str], None] | None = None
               ) -> list[CellTiming]:
    """Time the study's finished trials in the store; with `log`, on their runs."""
    from harness.tracking.client import Tracker

    tracker = Tracker(tracking_uri)
    found = [run for run in tracker.find_runs(study, {records.ROLE: records.ROLE_TRIAL})
             if run.info.status == "FINISHED"]
    trials = [Trial(run.info.run_id, run.data.tags, run.data.params) for run in found]
    timings, how = time_trials(_or_refuse(trials, study), rounds, steps, progress)
    if log:
        for cell in timings:
            for run_id in cell.runs:
                tracker.log_metrics(run_id, _metrics(cell.timing), step=0)
                tracker.set_tags(run_id, {records.TIMING: how})
    return timings


def time_report(study: str, folder: Path, rounds: int = ROUNDS, steps: int = STEPS,
                progress: Callable[[str], None] | None = None) -> list[CellTiming]:
    """Time the finished trials in a report's data, write the timings into its runs.csv and
    rebuild the report in place from that data."""
    from harness.report.archive import read_records, write_records
    from harness.report.build import build_report

    data, source = read_records(folder)
    runs = data.runs.copy()
    role = runs.get(f"tags.{records.ROLE}", pd.Series(index=runs.index, dtype=object))
    finished = runs[(role == records.ROLE_TRIAL) & (runs["status"] == "FINISHED")]
    trials = [Trial(row["run_id"], _prefixed(row, "tags."), _prefixed(row, "params."))
              for _, row in finished.iterrows()]
    timings, how = time_trials(_or_refuse(trials, study), rounds, steps, progress)
    for cell in timings:
        chosen = runs["run_id"].isin(cell.runs)
        for name, value in _metrics(cell.timing).items():
            runs.loc[chosen, f"metrics.{name}"] = value
        runs.loc[chosen, f"tags.{records.TIMING}"] = how
    write_records(type(data)(runs, data.history, data.buckets), folder, source)
    build_report(study, "", folder, data_from=folder)
    return timings


def format_timings(timings: list[CellTiming]) -> str:
    width = max(len(t.cell) for t in timings)
    lines = [f"{'cell':<{width}} {'runs':>4} {'tokens/s':>9} {'slowest':>9} {'fastest':>9}"]
    for t in timings:
        lines.append(f"{t.cell:<{width}} {len(t.runs):>4} {t.timing.tokens_per_s:>9.0f} "
                     f"{t.timing.low:>9.0f} {t.timing.high:>9.0f}")
    return "\n".join(lines)


def _metrics(timing: Timing) -> dict[str, float]:
    return {records.TIMED_TOKENS_PER_S: timing.tokens_per_s, records.TIMED_LOW: timing.low,
            records.TIMED_HIGH: timing.high}


def _or_refuse(trials: list[Trial], study: str) -> list[Trial]:
    if not trials:
        raise ConfigError("study", f"{study!r} has no finished trial runs here; allowed: a "
                          "study `harness ablate` has run, or a report folder with its data")
    return trials


def _prefixed(row: pd.Series, prefix: str) -> dict[str, str]:
    return {key.removeprefix(prefix): value for key, value in row.items()
            if key.startswith(prefix) and isinstance(value, str)}
