"""README's headline: the tuned dense-against-MemoryFormer comparison, at equal training FLOPs and
at equal time, written from the two committed reports of `ablations/fair-dense-vs-memory.yaml`.

Each budget gets its report's own lines quoted (the table, the verdict within each tokenizer, the
learning-rate sweeps) and one line per tokenizer of what was *not* held fixed, read from the
report's table.csv and per_seed.csv: parameters, hash-table bytes, forward FLOPs per token, steps
and the tuned learning rates. Nothing here computes a statistic: every number is the report's.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from harness.report.quantities import MB, STANDARD
from harness.report.tables import format_stat

REPORTS = ("fair-dense-vs-memory-flops", "fair-dense-vs-memory-seconds")
_COUNT = next(q for q in STANDARD if q.key == "params")  # any count shown with a K/M/G prefix


def headline_lines(reports: Path) -> list[str]:
    """The headline's Markdown lines from reports/ (a line saying so where a report is absent)."""
    lines: list[str] = []
    sweeps: list[str] = []  # both budgets compare the same tuned rates: quoted once
    for name in REPORTS:
        folder = reports / name
        if not (folder / "data" / "runs.csv").is_file():
            lines += [f"**{name}**: no committed report with its data yet.", ""]
            continue
        text = (folder / "index.md").read_text()
        lines += [f"**{name}** ([report](reports/{name}/index.md)); held fixed: "
                  f"{_held_fixed(text)}, batch and context; seeds {_seeds(text)}.", "",
                  *_table(folder), "", *section(text, "Within each condition"), "",
                  "Not held fixed (MemoryFormer against dense, within each tokenizer):",
                  *_not_held_fixed(folder, text), ""]
        tuning = section(text, "Tuning")
        if tuning and tuning != sweeps:
            lines += [*tuning, ""]
            sweeps = tuning
    return lines


def section(text: str, title: str) -> list[str]:
    """The non-empty lines of one `## title` section of an index.md."""
    part = text.split(f"\n## {title}\n", 1)
    if len(part) < 2:
        return []
    return [line for line in part[1].split("\n## ", 1)[0].splitlines() if line.strip()]


def _held_fixed(text: str) -> str:
    """`equal training FLOPs: 1e+12 per run` from the Design line."""
    match = re.search(r"; (equal [^(;]*?)(?: \(|;)", text)
    return match.group(1) if match else "unknown"


def _seeds(text: str) -> str:
    match = re.search(r"; seeds ([0-9, ]+);", text)
    return match.group(1) if match else "unknown"


def _table(folder: Path) -> list[str]:
    """table.md's table rows, without its notes."""
    return [line for line in (folder / "table.md").read_text().splitlines()
            if line.startswith("|")]


def _not_held_fixed(folder: Path, text: str) -> list[str]:
    cells = pd.read_csv(folder / "table.csv").set_index("cell")
    per_seed = pd.read_csv(folder / "per_seed.csv")
    done = per_seed[per_seed["status"] == "FINISHED"]
    steps = done.groupby("cell")["steps"].mean() if "steps" in done else pd.Series(dtype=float)
    rates = dict(re.findall(r"^- (\S+): best (\S+) \(", "\n".join(section(text, "Tuning")),
                            flags=re.MULTILINE))
    lines = []
    for condition, memory, dense in _pairs(cells):
        m, d = cells.loc[memory], cells.loc[dense]
        lines.append(
            f"- {condition}: parameters {_si(m['params.mean'])} against {_si(d['params.mean'])} "
            f"({m['params.mean'] / d['params.mean']:.1f}x); hash tables "
            f"{m['table_bytes.mean'] / MB:.1f} MB against {_mb(d['table_bytes.mean'])}; "
            f"forward FLOPs per token {_si(m['flops_exact.mean'])} against "
            f"{_si(d['flops_exact.mean'])} "
            f"({m['flops_exact.mean'] / d['flops_exact.mean']:.3f}x); "
            + (f"steps {steps[memory]:.0f} against {steps[dense]:.0f} (mean over seeds); "
               if {memory, dense} <= set(steps.index) else "")
            + f"learning rate {_rate(rates, memory)} against "
            f"{_rate(rates, dense)}, each arm's own sweep's best.")
    if len(lines) > 1:
        lines.append("- The tokenizer: perplexities over BPE tokens and over bytes are not "
                     "comparable, so each verdict above stays within one tokenizer.")
    return lines


def _pairs(cells: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(condition, MemoryFormer cell, dense cell) for cells named `arm=ARM@CONDITION`."""
    by_condition: dict[str, dict[str, str]] = {}
    for cell, kind in cells["kind"].items():
        condition = str(cell).partition("@")[2]
        by_condition.setdefault(condition, {})[kind] = cell
    return [(c, kinds["memoryformer"], kinds["dense"]) for c, kinds in by_condition.items()
            if {"memoryformer", "dense"} <= set(kinds)]


def _rate(rates: dict[str, str], cell: str) -> str:
    return rates.get(cell.partition("=")[2], "untuned")


def _si(value: float) -> str:
    return format_stat(value, 0.0, _COUNT)


def _mb(value: float) -> str:
    return "none" if value == 0 else f"{value / MB:.1f} MB"
