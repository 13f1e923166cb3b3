"""Every committed report rebuilds from the data committed beside it: the same tables, index.md and
per-seed values byte for byte, and every figure drawn again without error. The reference reports
ran on one clean commit, each with the seeds its study file asks for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from harness.report.archive import DATA_DIR, RUNS_FILE
from harness.report.build import build_report

ROOT = Path(__file__).parent.parent
REPORTS = ROOT / "reports"
STUDY_REPORTS = sorted(path.parent for path in REPORTS.glob("*/index.md")
                       if path.read_text().startswith("# Study report:"))
WITH_DATA = sorted(path.parent.parent for path in REPORTS.glob(f"*/{DATA_DIR}/{RUNS_FILE}"))
TEXT = ("index.md", "table.md", "table.tex", "table.csv", "table_appendix.md",
        "table_appendix.tex", "per_seed.csv")
# the comparisons README leads with get five seeds, every other grid three; the quickstart is a
# new user's first few minutes (two), and a search runs one seed per sampled point by design
HEADLINE, HEADLINE_SEEDS, GRID_SEEDS = {"dense-vs-memory", "fair-dense-vs-memory"}, 5, 3
QUICKSTART = "quickstart"


@pytest.mark.parametrize("folder", WITH_DATA, ids=[path.name for path in WITH_DATA])
def test_a_committed_report_rebuilds_from_its_data(folder, tmp_path):
    result = build_report(folder.name, "", tmp_path, dpi=40, data_from=folder)
    for name in TEXT:
        if (folder / name).is_file():
            assert (tmp_path / name).read_text() == (folder / name).read_text(), name
    committed = {path.name for path in folder.glob("*.png")}
    assert committed == {path.name for path in result.files if path.suffix == ".png"}
    for name in committed:
        assert (tmp_path / name).stat().st_size > 2_000, name  # drawn, at 40 dpi


def test_every_study_report_carries_its_data():
    assert STUDY_REPORTS
    missing = [path.name for path in STUDY_REPORTS if path not in WITH_DATA]
    assert not missing, f"study reports without data/{RUNS_FILE} (rebuild or remove): {missing}"


def test_every_reference_report_ran_on_one_clean_commit():
    commits = {path.name: _provenance(path, "git commit") for path in STUDY_REPORTS}
    dirty = [path.name for path in STUDY_REPORTS if _provenance(path, "git dirty") != "`false`"]
    assert not dirty, f"reports with runs from a dirty tree: {dirty}"
    assert all(re.fullmatch(r"`[0-9a-f]{40}`", c) for c in commits.values()), commits
    assert len(set(commits.values())) == 1, f"reports span commits: {commits}"


@pytest.mark.parametrize("folder", STUDY_REPORTS, ids=[path.name for path in STUDY_REPORTS])
def test_a_reference_report_has_the_seeds_its_study_file_asks_for(folder):
    study = _study_file(folder.name)
    raw = yaml.safe_load(study.read_text())
    seeds = raw["compare"]["seeds"] if raw.get("kind") == "tune-then-compare" else raw["seeds"]
    if "search" not in raw:  # a search's seed is per sampled point, not per cell
        assert _provenance(folder, "Seeds").split(";")[0] == ", ".join(map(str, seeds))
    if study.stem in HEADLINE:
        assert len(seeds) >= HEADLINE_SEEDS, study.name
    elif "search" not in raw and study.stem != QUICKSTART:
        assert len(seeds) >= GRID_SEEDS, study.name


def _study_file(report: str) -> Path:
    """The study file a report comes from: a tune-then-compare study reports per budget."""
    path = ROOT / "ablations" / f"{report}.yaml"
    return path if path.is_file() else ROOT / "ablations" / f"{report.rsplit('-', 1)[0]}.yaml"


def _provenance(folder: Path, key: str) -> str:
    match = re.search(rf"^- {re.escape(key)}: (.*)$", (folder / "index.md").read_text(),
                      flags=re.MULTILINE)
    return match.group(1).strip() if match else "unknown"
