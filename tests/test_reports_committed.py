"""Every committed report rebuilds from the data committed beside it: the same tables, index.md and
per-seed values byte for byte, and every figure drawn again without error."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report.archive import DATA_DIR, RUNS_FILE
from harness.report.build import build_report

REPORTS = Path(__file__).parent.parent / "reports"
WITH_DATA = sorted(path.parent.parent for path in REPORTS.glob(f"*/{DATA_DIR}/{RUNS_FILE}"))
TEXT = ("index.md", "table.md", "table.tex", "table.csv", "table_appendix.md",
        "table_appendix.tex", "per_seed.csv")


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
