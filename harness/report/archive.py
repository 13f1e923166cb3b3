"""A report's data beside it: the study's runs, loss histories and bucket hit counts as files in
`reports/STUDY/data/`, so `harness report STUDY --from reports/STUDY/` rebuilds the report with no
tracking store, and anyone can recompute what it says.

    data/runs.csv      one row per run (parent and trials): status, times, metrics.*, params.*,
                       tags.* as the tracking store holds them (tags redacted when written)
    data/history.csv   run_id, key, step, value: the curves the report draws
    data/buckets.npz   "RUN_ID|LAYER" -> (K, 2**b) hit counts of the run's last validation pass
    data/source.txt    the store the data came from (redacted), named in the report's provenance
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from harness.report.reader import METRICS, StudyRecords

DATA_DIR = "data"
RUNS_FILE, HISTORY_FILE, BUCKETS_FILE, SOURCE_FILE = (
    "runs.csv", "history.csv", "buckets.npz", "source.txt")
# CSV has no missing value of its own: an empty tag ("") must come back as "", not as missing
MISSING = "<NA>"
_TIMES = ("start_time", "end_time")
_KEY_SEP = "|"
# machine-local paths that say nothing about the results
_DROPPED = ("artifact_uri",)


def write_records(records: StudyRecords, out: Path, source: str) -> list[Path]:
    """Write `records` into out/data/; returns the files written."""
    folder = out / DATA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    runs = records.runs.drop(columns=[c for c in _DROPPED if c in records.runs.columns])
    info = [c for c in runs.columns if "." not in c]
    runs = runs[info + sorted(c for c in runs.columns if "." in c)]
    runs = runs.sort_values(["start_time", "run_id"], kind="stable")
    paths = [folder / RUNS_FILE, folder / HISTORY_FILE, folder / SOURCE_FILE]
    runs.to_csv(paths[0], index=False, na_rep=MISSING, lineterminator="\n")
    records.history.to_csv(paths[1], index=False, na_rep=MISSING, lineterminator="\n")
    paths[2].write_text(source + "\n")
    buckets = folder / BUCKETS_FILE
    if records.buckets:
        arrays = {f"{run_id}{_KEY_SEP}{layer}": _smallest(counts)
                  for run_id, layers in sorted(records.buckets.items())
                  for layer, counts in sorted(layers.items())}
        np.savez_compressed(buckets, **arrays)
        paths.append(buckets)
    elif buckets.exists():
        buckets.unlink()
    return paths


def _smallest(counts: np.ndarray) -> np.ndarray:
    """Counts in the narrowest unsigned type that holds them (the file is committed)."""
    top = int(counts.max(initial=0))
    dtype = next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if top <= np.iinfo(t).max)
    return counts.astype(dtype)


def read_records(report: Path) -> tuple[StudyRecords, str]:
    """The records and source a report folder's data/ holds; ConfigError when it holds none."""
    folder = Path(report) / DATA_DIR
    if not (folder / RUNS_FILE).is_file():
        raise ConfigError("--from", f"{report} has no {DATA_DIR}/{RUNS_FILE}; allowed: a report "
                          "folder written by `harness report` (it exports its data)")
    header = pd.read_csv(folder / RUNS_FILE, nrows=0).columns
    text = {c: str for c in header if c not in _TIMES and not c.startswith(METRICS)}
    runs = pd.read_csv(folder / RUNS_FILE, dtype=text, keep_default_na=False,
                       na_values=[MISSING])
    for column in _TIMES:
        runs[column] = pd.to_datetime(runs[column], utc=True, format="ISO8601")
    metrics = [c for c in runs.columns if c.startswith(METRICS)]
    runs[metrics] = runs[metrics].astype(float)
    # pandas' default float parser reads back exactly what to_csv wrote (shortest repr)
    history = pd.read_csv(folder / HISTORY_FILE, dtype={"run_id": str, "key": str})
    buckets: dict[str, dict[str, np.ndarray]] = {}
    if (folder / BUCKETS_FILE).is_file():
        with np.load(folder / BUCKETS_FILE) as stored:
            for key in stored.files:
                run_id, layer = key.split(_KEY_SEP, 1)
                buckets.setdefault(run_id, {})[layer] = stored[key].astype(np.int64)
    source = (folder / SOURCE_FILE).read_text().strip() if (folder / SOURCE_FILE).is_file() else ""
    return StudyRecords(runs, history, buckets), source
