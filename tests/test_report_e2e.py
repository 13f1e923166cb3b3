"""A report end to end: train a shrunk quickstart into a real MLflow SQLite store, then build its
report from the store alone and find it attached to the study's parent run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.ablate.runner import run_study
from harness.ablate.study_file import load_study
from harness.errors import ConfigError
from harness.report.build import ARTIFACT_PATH, build_report
from harness.tracking.client import Tracker

QUICKSTART = Path(__file__).parent.parent / "ablations" / "quickstart.yaml"


def test_a_trained_study_reports_from_its_store_and_logs_the_report(shrink, settings, tmp_path):
    study = shrink(load_study(QUICKSTART))
    run_study(study, settings)
    out = tmp_path / "report"
    result = build_report(study.name, settings.tracking_uri, out, dpi=40)

    assert result.logged and result.runs == len(study.cells())
    for name in ("index.md", "table.md", "table.tex", "table.csv", "ppl_vs_flops.png",
                 "loss_curves.png", "throughput.png", "bucket_usage.png"):
        assert (out / name).is_file() and (out / name).stat().st_size, name
    table = pd.read_csv(out / "table.csv")
    assert sorted(table["preset"]) == ["dense-nano", "memoryformer-nano"]  # one row per cell
    assert table["val_ppl.mean"].notna().all() and (table["n_finished"] == 1).all()
    assert "paper avg zero-shot acc (Pythia-70M / MF-tiny, 2048 ctx)" in table.columns

    tracker = Tracker(settings.tracking_uri)
    listed = set(tracker.artifacts(result.parent_run_id, ARTIFACT_PATH))
    assert {f"{ARTIFACT_PATH}/index.md", f"{ARTIFACT_PATH}/table.csv",
            f"{ARTIFACT_PATH}/ppl_vs_flops.png"} <= listed

    # the same store (a fresh one costs seconds of migrations) refuses a study it lacks
    with pytest.raises(ConfigError, match=r"no study 'absent'.*allowed: quickstart"):
        build_report("absent", settings.tracking_uri, tmp_path / "unused")
    tracker.start_run("train", "dense-nano-s0", tags={})  # what `harness train` makes
    with pytest.raises(ConfigError, match=r"'train' holds single runs .*, not a study; "
                                          r"allowed: quickstart$"):
        build_report("train", settings.tracking_uri, tmp_path / "unused")

    # the report holds its data: rebuilt from that folder alone, every file comes out the same
    assert {"runs.csv", "history.csv", "buckets.npz", "source.txt"} <= {
        path.name for path in (out / "data").iterdir()}
    assert (out / "bucket_hits.png").is_file() and "## Bucket hits against uniform" in (
        out / "index.md").read_text()
    again = build_report(study.name, "", tmp_path / "rebuilt", dpi=40, data_from=out)
    assert not again.logged
    for path in result.files:
        relative = path.relative_to(out)
        assert (tmp_path / "rebuilt" / relative).read_bytes() == path.read_bytes(), relative
    with pytest.raises(ConfigError, match=r"holds the data of quickstart, not 'other'"):
        build_report("other", "", tmp_path / "unused", data_from=out)
    with pytest.raises(ConfigError, match=r"has no data/runs.csv"):
        build_report(study.name, "", tmp_path / "unused", data_from=tmp_path / "unused")
