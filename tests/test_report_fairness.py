"""What a comparison held fixed, its arms' sweeps, and arms compared only within a condition."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.report.cells import StudyInfo
from harness.report.fairness import budget_sentence, sweep_lines
from harness.report.summary import within_conditions


def _info(**changes) -> StudyInfo:
    base = dict(name="s", description="", axes=(("arm", ("a", "b")),), is_search=False,
                seeds=(0, 1), steps=300, val_every=50, objectives="val_loss:minimize",
                parent_run_id="p")
    return StudyInfo(**{**base, **changes})


def test_the_report_says_which_resource_was_held_fixed():
    assert budget_sentence(_info()).startswith("equal steps: 300 each")
    assert budget_sentence(_info(budget="flops", budget_amount=1e12)).startswith(
        "equal training FLOPs: 1e+12 per run (3x the exact forward count")
    assert budget_sentence(_info(budget="seconds", budget_amount=20.0)).startswith(
        "equal time: 20 s of optimiser steps per run")
    # a budget on a grid axis: no single amount held fixed across the study
    varied = _info(budget="flops", budget_amount=1e12,
                   axes=(("train.flops_budget", (3e11, 1e12)),))
    assert budget_sentence(varied).startswith("equal training FLOPs within each train.flops_budget")


def test_an_unbracketed_sweep_is_flagged():
    sweeps = ({"arm": "dense@bpe", "values": [1e-3, 3e-3, 9e-3], "losses": [3.0, 2.0, 2.5],
               "best": 3e-3},
              {"arm": "memoryformer@bpe", "values": [1e-3, 3e-3], "losses": [3.0, 2.0],
               "best": 3e-3})
    lines = sweep_lines(_info(sweeps=sweeps))
    assert lines[1] == "- dense@bpe: best 0.003 (0.001: 3.0000, 0.003: 2.0000, 0.009: 2.5000)"
    assert lines[2].endswith("**not bracketed**: the best rate is at an edge of the sweep, so "
                             "the arm may be under-tuned")
    assert sweep_lines(_info()) == []


def _runs(memory_bpe: list[float], memory_byte: list[float]) -> pd.DataFrame:
    rows = []
    for seed in range(len(memory_bpe)):
        rows += [("arm=dense@bpe", "dense", seed, 4.5 + 0.01 * seed),
                 ("arm=memoryformer@bpe", "memoryformer", seed, memory_bpe[seed]),
                 ("arm=dense@byte", "dense", seed, 2.1 + 0.01 * seed),
                 ("arm=memoryformer@byte", "memoryformer", seed, memory_byte[seed])]
    frame = pd.DataFrame(rows, columns=["cell", "kind", "seed", "val_loss"])
    frame["status"] = "FINISHED"
    return frame


def test_arms_are_compared_within_each_condition_never_across():
    lines = within_conditions(_runs([4.1, 4.12, 4.13], [2.2, 2.0, 2.15]))
    assert "Holm-adjusted over 2 comparisons" in lines[0] and len(lines) == 3
    bpe, byte = lines[1:]
    assert bpe.startswith("- bpe: arm=memoryformer@bpe against arm=dense@bpe: -0.3933 nats")
    assert bpe.endswith("MemoryFormer better")
    assert byte.startswith("- byte: arm=memoryformer@byte against arm=dense@byte")
    assert "no detectable difference at 3 seeds (smallest detectable effect: " in byte


@pytest.mark.parametrize("cells", [["arm=dense", "arm=memoryformer"], ["preset=a", "preset=b"]])
def test_cells_without_conditions_get_no_such_section(cells):
    frame = pd.DataFrame({"cell": cells, "kind": ["dense", "memoryformer"], "seed": [0, 0],
                          "val_loss": [2.0, 1.0], "status": ["FINISHED"] * 2})
    assert within_conditions(frame) == []
