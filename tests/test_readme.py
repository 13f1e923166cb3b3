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
    (tmp_path / "README.md").write_text(
        "intro\n" + "\n".join(line for name in readme.SOURCES for line in readme.markers(name))
        + "\nend\n")
    assert readme.update_readme(tmp_path / "README.md", tmp_path / "reports")
    text = (tmp_path / "README.md").read_text()
    assert "| [toy](reports/toy/index.md) |  | `ababababab` | 0, 1 | 4, from x to y (UTC) |" in text
    assert "- **Best cell: a**, ppl 9.5.\n- Against b: no detectable difference.\n\n" in text
    assert "- more" not in text and text.startswith("intro\n") and text.endswith("end\n")
    assert not readme.update_readme(tmp_path / "README.md", tmp_path / "reports")  # idempotent
    # a scaling study is quoted by its frontier, not its best (size, budget) cell
    text = (report / "index.md").read_text()
    (report / "index.md").write_text(text.replace(
        "## Provenance", "## Scaling\n\nCompute frontier:\n- 1e+12 FLOPs: dense: nano 5.1\n\n"
        "## Provenance"))
    block = readme.reference_block(tmp_path / "reports")
    assert "- 1e+12 FLOPs: dense: nano 5.1\n" in block and "Best cell" not in block


def test_the_headline_quotes_both_budgets_and_what_they_did_not_hold_fixed(tmp_path):
    for name, held in (("fair-dense-vs-memory-flops", "equal training FLOPs: 1e+12 per run"),
                       ("fair-dense-vs-memory-seconds", "equal time: 20 s of optimiser steps")):
        report = tmp_path / name
        (report / "data").mkdir(parents=True)
        (report / "data" / "runs.csv").write_text("run_id\n")
        (report / "index.md").write_text(
            f"# Study report: {name}\n\n**Design.** a grid; seeds 0, 1, 2, 3, 4; {held} (3x "
            "the count); objectives val_loss.\n\n## What won\n\n- **Best cell: x**\n\n"
            "## Within each condition\n\nMemoryFormer against dense within each condition:\n"
            "- bpe: arm=memoryformer@bpe against arm=dense@bpe: -0.4398 nats/token (95% CI "
            "-0.47 to -0.41, adjusted p = 2.6e-06): MemoryFormer better\n\n## Tuning\n\n"
            "Each arm ran at its own best rate:\n- dense@bpe: best 0.0045 (0.0015: 4.4, "
            "0.0045: 4.3, 0.0135: 4.6)\n- memoryformer@bpe: best 0.1215 (0.0405: 4.2, 0.1215: "
            "4.1, 0.3645: 4.4)\n\n## Table\n")
        (report / "table.md").write_text("| arm | val ppl |\n| :--- | ---: |\n| dense@bpe | 97 |"
                                         "\n\nn: finished runs\n")
        (report / "table.csv").write_text(
            "cell,kind,params.mean,table_bytes.mean,flops_exact.mean\n"
            "arm=dense@bpe,dense,921088,0,720896\n"
            "arm=memoryformer@bpe,memoryformer,9176960,34603008,349184\n")
        (report / "per_seed.csv").write_text(
            "cell,seed,status,steps\narm=dense@bpe,0,FINISHED,226\narm=dense@bpe,1,FINISHED,228\n"
            "arm=memoryformer@bpe,0,FINISHED,466\narm=memoryformer@bpe,1,FINISHED,466\n")
    text = readme.headline_block(tmp_path)
    assert text.count("held fixed: equal training FLOPs: 1e+12 per run, batch and context; "
                      "seeds 0, 1, 2, 3, 4.") == 1
    assert "held fixed: equal time: 20 s of optimiser steps, batch and context" in text
    assert text.count("| dense@bpe | 97 |") == 2 and "n: finished runs" not in text
    assert text.count("- bpe: arm=memoryformer@bpe against arm=dense@bpe: -0.4398") == 2
    assert text.count("- bpe: parameters 9.177M against 921.1K (10.0x); hash tables 34.6 MB "
                      "against none; forward FLOPs per token 349.2K against 720.9K (0.484x); "
                      "steps 466 against 227 (mean over seeds); learning rate 0.1215 against "
                      "0.0045, each arm's own sweep's best.") == 2
    assert text.count("- memoryformer@bpe: best 0.1215") == 1  # the same sweeps, quoted once
    (tmp_path / "fair-dense-vs-memory-seconds" / "data" / "runs.csv").unlink()
    assert ("**fair-dense-vs-memory-seconds**: no committed report with its data yet."
            in readme.headline_block(tmp_path))
