"""A report rebuilt from a real tracking store is byte-identical to the golden tables: the fixed
runs of test_report.py are written into a fresh MLflow SQLite store through the run client, read
back by the report's reader, and built again (md and csv)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from test_report import GOLDEN, _table, bucket_bits, quickstart

from harness.report.reader import StudyRecords, read_study
from harness.report.tables import to_csv, to_markdown
from harness.runs import records
from harness.runs.workspace import Workspace
from harness.tracking.client import Tracker


def _present(value) -> bool:
    return not (value is None or (isinstance(value, float) and math.isnan(value)))


def write_store(fixed: StudyRecords, name: str, tracker: Tracker) -> None:
    """Every run of `fixed` as a real run: its tags, params, loss histories, final metrics."""
    ids: dict[str, str] = {}
    for _, row in fixed.runs.sort_values("start_time", kind="stable").iterrows():
        def prefixed(prefix: str, row=row) -> dict:
            return {k.removeprefix(prefix): v for k, v in row.items()
                    if k.startswith(prefix) and _present(v)}

        tags = prefixed("tags.")
        parent = ids.get(tags.pop(records.PARENT, ""))
        run_id = tracker.start_run(name, row["run_id"], tags, parent)
        ids[row["run_id"]] = run_id
        tracker.log_params(run_id, prefixed("params."))
        history = fixed.history[fixed.history["run_id"] == row["run_id"]]
        for (key, step), value in history.set_index(["key", "step"])["value"].items():
            tracker.log_metrics(run_id, {key: value}, step=int(step))
        last = int(history["step"].max()) + 1 if len(history) else 0
        tracker.log_metrics(run_id, prefixed("metrics."), step=last)  # the run's final values
        tracker.end_run(run_id, row["status"])


@pytest.mark.parametrize("make, name", [(bucket_bits, "bucket-bits"), (quickstart, "quickstart")])
def test_tables_rebuilt_from_a_real_store_match_the_golden_files(tmp_path, make, name):
    tracker = Tracker(Workspace(tmp_path).tracking_uri, artifact_root=tmp_path / "artifacts")
    write_store(make(), name, tracker)
    stored = read_study(name, tracker.uri)
    assert len(stored.runs) == len(make().runs)
    table, _, _ = _table(StudyRecords(stored.runs, stored.history), name)
    assert to_markdown(table) == (GOLDEN / f"report_{name}_table.md").read_text()
    assert to_csv(table) == (GOLDEN / f"report_{name}_table.csv").read_text()
    assert set(pd.unique(stored.history["key"])) == {records.VAL_LOSS, records.TRAIN_LOSS}
