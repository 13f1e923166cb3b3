"""README's generated blocks say what the committed reports say: regenerated from reports/, they
come out as README holds them."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report import readme

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("name", list(readme.SOURCES))
def test_the_readme_block_matches_the_committed_reports(name):
    held = readme.readme_block(ROOT / "README.md", name)
    assert held, f"README.md lacks its {name} block"
    assert held == readme.blocks(ROOT / "reports")[name], (
        f"README.md's {name} block is stale: run `harness report --readme`")


def test_the_block_quotes_each_report_with_data(tmp_path):
    report = tmp_path / "reports" / "toy"
    (report / "data").mkdir(parents=True)
    (report / "data" / "runs.csv").write_text("run_id\n")
    (report / "index.md").write_text(
        "# Study report: toy\n\n## What won\n\n- **Best cell: a**, ppl 9.5.\n- Against b: no "
        "detectable difference.\n- more\n\n## Provenance\n\n- Trial runs: 4, from x to y (UTC)."
        "\n- Seeds: 0, 1; steps: 300.\n- git commit: `" + "ab" * 20 + "`\n- git dirty: `false`\n")
    (tmp_path / "README.md").write_text("intro\n" + "\n".join(readme.markers("reference results"))
                                        + "\n" + "\n".join(readme.markers("speed")) + "\nend\n")
    assert readme.update_readme(tmp_path / "README.md", tmp_path / "reports")
    text = (tmp_path / "README.md").read_text()
    assert "| [toy](reports/toy/index.md) |  | `ababababab` | 0, 1 | 4, from x to y (UTC) |" in text
    assert "- **Best cell: a**, ppl 9.5.\n- Against b: no detectable difference.\n\n" in text
    assert "- more" not in text and text.startswith("intro\n") and text.endswith("end\n")
    assert not readme.update_readme(tmp_path / "README.md", tmp_path / "reports")  # idempotent
