"""The timing pass: a finished study's cells timed again in one process, logged on their runs,
and the report's throughput taken from it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from harness.ablate.runner import run_study
from harness.ablate.study_file import load_study
from harness.ablate.timing import format_timings, time_report, time_study
from harness.errors import ConfigError
from harness.report.build import build_report
from harness.runs import records
from harness.tracking.client import Tracker

QUICKSTART = Path(__file__).parent.parent / "ablations" / "quickstart.yaml"


def test_each_cell_is_timed_once_and_logged_on_its_runs(shrink, settings, tmp_path):
    study = replace(shrink(load_study(QUICKSTART)), seeds=(0, 1))  # a cell, two runs
    run_study(study, settings)
    timings = time_study(study.name, settings.tracking_uri, rounds=2, steps=1)

    assert sorted(t.cell for t in timings) == ["preset=dense-nano", "preset=memoryformer-nano"]
    for timing in timings:
        assert len(timing.runs) == 2  # both seeds carry the cell's one timing
        assert 0 < timing.timing.low <= timing.timing.tokens_per_s <= timing.timing.high
    tracker = Tracker(settings.tracking_uri)
    for run in tracker.find_runs(study.name, {records.ROLE: records.ROLE_TRIAL}):
        metrics, tags = run.data.metrics, run.data.tags
        assert metrics[records.TIMED_TOKENS_PER_S] > 0
        assert metrics[records.TIMED_LOW] <= metrics[records.TIMED_HIGH]
        assert "2 rounds x 1 steps, 2 cells interleaved" in tags[records.TIMING]
    assert "preset=memoryformer-nano" in format_timings(timings)

    report = build_report(study.name, settings.tracking_uri, tmp_path / "report", dpi=40)
    table = (report.out / "table.md").read_text()
    assert "train tokens/s: the timing pass (`harness time`)" in table
    assert "tokens/s seen in training" in (report.out / "table_appendix.md").read_text()
    # one timing per cell, the same on each of its runs: no spread over seeds, not a residue
    assert (pd.read_csv(report.out / "table.csv")["tokens_per_s.se"] == 0).all()
    section = (report.out / "index.md").read_text().split("## Timing pass\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert "(2 rounds x 1 steps, 2 cells interleaved, " in section
    for t in timings:  # each cell's median round with its slowest and fastest
        assert (f"- {t.cell}: {t.timing.tokens_per_s / 1e3:.2f}K (slowest "
                f"{t.timing.low / 1e3:.2f}K, fastest {t.timing.high / 1e3:.2f}K") in section

    # a report's data alone is enough: timed again from it, written into it, report rebuilt
    again = time_report(study.name, report.out, rounds=1, steps=1)
    assert sorted(t.cell for t in again) == sorted(t.cell for t in timings)
    data = pd.read_csv(report.out / "data" / "runs.csv")
    assert data[f"tags.{records.TIMING}"].dropna().str.startswith("1 rounds x 1 steps").sum() == 4
    assert "the timing pass" in (report.out / "table.md").read_text()

    with pytest.raises(ConfigError, match=r"'absent' has no finished trial runs"):
        time_study("absent", settings.tracking_uri)


def test_bad_rounds_are_refused_before_anything_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness", "time", "quickstart", "--rounds",
                           "0", "--tracking-uri", f"sqlite:///{tmp_path}/none.db"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == ("harness time: error: rounds: must be at "
                                                    "least 1; allowed: a positive number")
