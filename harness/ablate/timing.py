"""`harness time STUDY`: the timing pass over a finished study's cells, logged on its runs.

Each cell (the seeds of one grid point: tag harness.group) is timed once, from the config.yaml of
its first finished run; the result is logged on every finished run of the cell, so the report's
throughput is the timing pass's, not what training happened to see.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.bench import machine_line
from harness.errors import ConfigError
from harness.runs import records
from harness.runs.config import RunConfig
from harness.tracking.client import Tracker
from harness.train.timing import ROUNDS, STEPS, Timing, time_cells


@dataclass(frozen=True)
class CellTiming:
    cell: str
    runs: tuple[str, ...]  # the finished trial runs it was logged on
    timing: Timing


def time_study(study: str, tracking_uri: str, rounds: int = ROUNDS, steps: int = STEPS,
               log: bool = True, progress: Callable[[str], None] | None = None
               ) -> list[CellTiming]:
    tracker = Tracker(tracking_uri)
    trials = [run for run in tracker.find_runs(study, {records.ROLE: records.ROLE_TRIAL})
              if run.info.status == "FINISHED"]
    if not trials:
        raise ConfigError("study", f"{study!r} has no finished trial runs in this store; "
                          "allowed: a study `harness ablate` has run")
    cells: dict[str, list] = {}
    for run in trials:
        key = run.data.tags.get(records.GROUP) or run.data.tags.get(records.CELL, run.info.run_id)
        cells.setdefault(key, []).append(run)
    configs = {cell: _config(tracker, runs[0].info.run_id) for cell, runs in cells.items()}
    timings = time_cells(configs, rounds, steps, progress=progress)
    how = (f"{rounds} rounds x {steps} steps, {len(cells)} cells interleaved, "
           f"{torch.get_num_threads()} threads; {machine_line('cpu')}")
    out = []
    for cell, runs in cells.items():
        timing = timings[cell]
        if log:
            for run in runs:
                tracker.log_metrics(run.info.run_id, {
                    records.TIMED_TOKENS_PER_S: timing.tokens_per_s,
                    records.TIMED_LOW: timing.low, records.TIMED_HIGH: timing.high}, step=0)
                tracker.set_tags(run.info.run_id, {records.TIMING: how})
        out.append(CellTiming(cell, tuple(r.info.run_id for r in runs), timing))
    return out


def format_timings(timings: list[CellTiming]) -> str:
    width = max(len(t.cell) for t in timings)
    lines = [f"{'cell':<{width}} {'runs':>4} {'tokens/s':>9} {'slowest':>9} {'fastest':>9}"]
    for t in timings:
        lines.append(f"{t.cell:<{width}} {len(t.runs):>4} {t.timing.tokens_per_s:>9.0f} "
                     f"{t.timing.low:>9.0f} {t.timing.high:>9.0f}")
    return "\n".join(lines)


def _config(tracker: Tracker, run_id: str) -> RunConfig:
    with tempfile.TemporaryDirectory() as scratch:
        path = tracker.download_artifact(run_id, "config.yaml", Path(scratch))
        if path is None:
            raise ConfigError("study", f"run {run_id} has no config.yaml to rebuild its cell "
                              "from; allowed: runs of this harness version")
        return RunConfig.from_yaml(path.read_text())
