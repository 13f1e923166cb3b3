"""The study table: one row per cell, mean ± standard error over seeds, the paper's numbers beside
ours where the study mirrors a paper table; written as Markdown, LaTeX and CSV.

A value that is missing (a failed cell, a metric older runs never logged) is an empty cell with a
numbered footnote; a quantity that does not apply (the Q layer of a dense model) reads "n/a".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from harness.report.cells import FINISHED, StudyInfo, aggregate, format_value
from harness.report.paper import PaperTable, paper_key
from harness.report.quantities import EXTRA, STANDARD, Quantity, catalogue

NOT_APPLICABLE = "n/a"
CSV_ONLY = ("val_loss", "bucket_entropy", "bucket_unused", "train_flops_per_s", "trial_seconds")
_METRIC_HINT = ("an older harness version, or a run that stopped before logging it")
_EVAL_HINT = ("the study ran no evaluation; list tasks under `evaluate:` in the study file")


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]  # display strings
    numeric_columns: tuple[bool, ...]  # right-aligned
    notes: tuple[str, ...]  # "[1] ..." footnotes, then unnumbered notes
    numbers: pd.DataFrame  # the same cells as numbers (mean, se, n per quantity): the CSV


def build_table(runs: pd.DataFrame, info: StudyInfo, paper: PaperTable | None,
                cpu: bool = False) -> Table:
    """runs: `cells.per_run` output. cpu: the runs measured peak memory as process RSS."""
    quantities = catalogue(runs.columns)
    shown = _shown_quantities(runs, paper, quantities)
    csv_keys = [*shown, *(k for k in CSV_ONLY if k not in shown)]
    cells = aggregate(runs, info.axis_names, csv_keys)
    notes = _Notes()
    row_marks = _row_notes(runs, cells, notes)
    headers = [name.split(".")[-1] for name in info.axis_names] or ["cell"]
    headers.append("n")
    body = [[*_axis_text(cell, info), str(cell["n_finished"]) + row_marks.get(cell["cell"], "")]
            for _, cell in cells.iterrows()]
    numeric = [False] * (len(headers) - 1) + [True]
    paper_by_ours = {c.ours: c for c in paper.columns} if paper else {}
    for key in shown:
        q = quantities[key]
        mark = _column_note(runs, q, notes)
        headers.append(q.header + mark)
        for row, (_, cell) in zip(body, cells.iterrows(), strict=True):
            row.append(_cell_text(cell, q))
        numeric.append(True)
        column = paper_by_ours.get(key)
        if column is not None:
            headers.append(column.label)
            for row, (_, cell) in zip(body, cells.iterrows(), strict=True):
                value = column.get(paper_key(cell, paper))
                row.append("" if value is None else f"{value:.{column.digits}f}")
            numeric.append(True)
    numbers = _numbers(cells, info, paper, csv_keys)
    return Table(tuple(headers), tuple(tuple(r) for r in body), tuple(numeric),
                 (*notes.lines, *_standing_notes(shown, paper, cpu)), numbers)


def _shown_quantities(runs: pd.DataFrame, paper: PaperTable | None,
                      quantities: dict[str, Quantity]) -> list[str]:
    """Those beside a paper column first, then the standard set, then any evaluation metric."""
    keys = ["val_ppl", *(c.ours for c in paper.columns)] if paper else []
    keys += [q.key for q in STANDARD]
    extra = {q.key for q in EXTRA}
    keys += [k for k in quantities if k not in extra and runs[k].notna().any()]
    return list(dict.fromkeys(keys))


def _axis_text(cell: pd.Series, info: StudyInfo) -> list[str]:
    if not info.axis_names:
        return [str(cell["cell"])]
    return [format_value(cell[name]) for name in info.axis_names]




def _cell_text(cell: pd.Series, q: Quantity) -> str:
    if cell["kind"] is not None and cell["kind"] not in q.kinds:
        return NOT_APPLICABLE
    return format_stat(cell[f"{q.key}.mean"], cell[f"{q.key}.se"], q)


def format_stat(mean: float, se: float, q: Quantity) -> str:
    """`9.580 ± 0.016`: the standard error to two significant digits, the mean to match; a
    value without spread (one seed, or a count that no seed changes) to four digits."""
    if mean is None or math.isnan(mean):
        return ""
    scale, prefix = (_si_scale(mean) if q.si else (q.scale, ""))
    m, s = mean / scale, se / scale
    if math.isnan(s) or s == 0:
        return _significant(m, 4) + prefix
    decimals = max(0, 1 - math.floor(math.log10(s)))
    return f"{m:.{decimals}f}{prefix} ± {s:.{decimals}f}{prefix}"


def _si_scale(value: float) -> tuple[float, str]:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return scale, prefix
    return 1.0, ""


def _significant(value: float, digits: int) -> str:
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


class _Notes:
    """Numbered footnotes, in the order they are first referred to."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, text: str) -> str:
        self.lines.append(f"[{len(self.lines) + 1}] {text}")
        return f" [{len(self.lines)}]"


def _row_notes(runs: pd.DataFrame, cells: pd.DataFrame, notes: _Notes) -> dict[str, str]:
    """A footnote for each cell with a run that did not finish: which seed, how, and why."""
    marks = {}
    for _, cell in cells.iterrows():
        group = runs[(runs["cell"] == cell["cell"]) & (runs["status"] != FINISHED)]
        if group.empty:
            continue
        parts = [f"seed {_seed(r['seed'])} {_status_word(r)}" + (
            f" ({_short(r['reason'])})" if r["reason"] else "") for _, r in group.iterrows()]
        if cell["n_finished"]:
            n = cell["n_finished"]
            tail = f"its values average the {n} finished run{'s' * (n != 1)}"
        else:
            tail = "no run finished, so its values are empty"
        marks[cell["cell"]] = notes.add(f"{cell['cell']}: {'; '.join(parts)}; {tail}.")
    return marks


def _status_word(run: pd.Series) -> str:
    if run["status"] == "KILLED":
        return "was pruned" if str(run["reason"]).startswith("pruned") else "was stopped"
    if run["status"] == "FAILED":
        return "FAILED"
    return f"is {str(run['status']).lower()}"


def _column_note(runs: pd.DataFrame, q: Quantity, notes: _Notes) -> str:
    """A footnote when finished runs to which the quantity applies lack it."""
    done = runs[(runs["status"] == FINISHED) & runs["kind"].isin(q.kinds)]
    missing = int(done[q.key].isna().sum())
    if not missing:
        return ""
    hint = _EVAL_HINT if q.key == "eval_mean_acc" else _METRIC_HINT
    source = f"{q.metric} " if q.metric else ""
    return notes.add(f"{q.header}: {source}not recorded in {missing} of {len(done)} finished "
                     f"runs ({hint}); shown from the runs that have it, empty where none has.")


def _standing_notes(shown: list[str], paper: PaperTable | None, cpu: bool) -> list[str]:
    notes = ["n: finished runs (one per seed) averaged; values are mean ± standard error over "
             "seeds, without ± when there is one seed or no spread."]
    if "flops_paper" in shown:
        notes.append("FLOPs/token (exact): forward multiply-adds of matrix products per token "
                     "(attention at the full context, LM head included), as logged. (paper "
                     "approx.): n_layer (block + 2 s d) + d V with block = 6 K d (MemoryFormer) or "
                     "(4 + 2 r) d^2 (dense), from the run's params; see index.md.")
    if paper is not None:
        notes.append(f"Columns named 'paper ...' are Ding et al. (NeurIPS 2024) {paper.name}: "
                     f"{paper.caption}; at the paper's scale, not ours; empty where the paper "
                     "has no such row.")
    if cpu and "peak_bytes" in shown:
        notes.append("peak mem MB on CPU is the worker process's peak resident memory since "
                     "the trial's training started (the kernel's high-water mark, reset per run "
                     "on Linux): it includes the Python runtime and the loaded libraries.")
    return notes


def _numbers(cells: pd.DataFrame, info: StudyInfo, paper: PaperTable | None,
             keys: list[str]) -> pd.DataFrame:
    columns = ["cell", *info.axis_names, "kind", "n_runs", "n_finished"]
    for key in keys:
        columns += [f"{key}.mean", f"{key}.se", f"{key}.n"]
    out = cells[columns].copy()
    for column in paper.columns if paper else ():
        out[column.label] = [column.get(paper_key(c, paper)) for _, c in cells.iterrows()]
    return out


def _seed(value) -> str:
    return "?" if value is None else str(value)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def to_markdown(table: Table) -> str:
    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    rule = ["---:" if n else ":---" for n in table.numeric_columns]
    lines = [line(table.headers), line(rule), *(line(r) for r in table.rows), ""]
    lines += [f"{note}  " for note in table.notes]
    return "\n".join(lines).rstrip() + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: Table, caption: str, label: str) -> str:
    """A booktabs table scaled to the text width (needs booktabs and graphicx); footnotes follow
    it as small text."""
    spec = "".join("r" if n else "l" for n in table.numeric_columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{latex_escape(caption)}}}", rf"\label{{{label}}}",
             r"\resizebox{\linewidth}{!}{%", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in table.headers) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if table.notes:
        lines.append(r"\par\footnotesize")
        lines += [latex_escape(n) + r"\\" for n in table.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    return table.numbers.to_csv(index=False, float_format="%.6g", lineterminator="\n")


PER_SEED_FORMAT = "%.10g"  # more digits than the table: seed differences of 1e-4 are recomputed


def per_seed_frame(runs: pd.DataFrame, info: StudyInfo) -> pd.DataFrame:
    """One row per trial run (runs: `cells.per_run`): its cell, axis values, seed, status and
    kind, then every quantity; rows in the table's cell order, then by seed and trial."""
    quantities = catalogue(runs.columns)
    keys = [c for c in runs.columns if c in quantities]
    identity = list(dict.fromkeys(["cell", *info.axis_names, "seed", "status", "kind"]))
    rank = {cell: i for i, cell in enumerate(dict.fromkeys(runs["cell"]))}
    order = sorted(range(len(runs)), key=lambda i: (
        rank[runs["cell"].iat[i]], _sort_key(runs["seed"].iat[i]), _sort_key(runs["trial"].iat[i]),
        str(runs["status"].iat[i])))
    return runs.iloc[order][identity + keys].reset_index(drop=True)


def per_seed_csv(runs: pd.DataFrame, info: StudyInfo) -> str:
    return per_seed_frame(runs, info).to_csv(index=False, float_format=PER_SEED_FORMAT,
                                             lineterminator="\n")


def _sort_key(value) -> tuple[int, float, str]:
    """Numbers in order, then anything else by its text: a total order for mixed columns."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return (1, 0.0, str(value))
    return (1, 0.0, "") if math.isnan(number) else (0, number, "")
