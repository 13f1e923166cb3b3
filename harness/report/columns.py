"""Which quantities a report's two tables show: the main table answers the study's question
(quality, compute per token, the resource held fixed, speed, table memory); the appendix holds
the rest. A quantity the paper reports sits in the table that holds ours, beside it.
"""

from __future__ import annotations

import pandas as pd

from harness.report.cells import StudyInfo
from harness.report.paper import PaperColumn, PaperTable
from harness.report.quantities import EXTRA, RESOURCE_KEYS, STANDARD, Quantity

MAIN = ("val_ppl", "flops_exact", "<resource>", "tokens_per_s", "table_bytes")


def resource_key(info: StudyInfo) -> str:
    """The quantity of the resource every run held fixed (steps unless a budget says else)."""
    return RESOURCE_KEYS.get(info.budget, "steps")


def main_keys(info: StudyInfo) -> list[str]:
    return [resource_key(info) if key == "<resource>" else key for key in MAIN]


def appendix_keys(runs: pd.DataFrame, paper: PaperTable | None,
                  quantities: dict[str, Quantity], main: list[str]) -> list[str]:
    """What the paper sets beside ours (where not in the main table), the other standard
    quantities, then every evaluation metric that some run recorded."""
    keys = [c.ours for c in paper.columns] if paper else []
    keys += [q.key for q in STANDARD]
    extra = {q.key for q in EXTRA}
    keys += [k for k in quantities if k not in extra and runs[k].notna().any()]
    if runs["train_tokens_per_s"].notna().any():
        keys.append("train_tokens_per_s")
    return [k for k in dict.fromkeys(keys) if k not in main]


def paper_beside(paper: PaperTable | None, key: str) -> PaperColumn | None:
    return next((c for c in paper.columns if c.ours == key), None) if paper else None
