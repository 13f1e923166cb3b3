"""The study's tables: one row per cell, mean ± standard error over seeds, the paper's numbers
beside ours (in our unit) where the study mirrors a paper table; a main table of the columns
that answer the study's question and an appendix of the rest (harness.report.columns), written as
Markdown and LaTeX, and one CSV with every number of both.

A column empty in every row is left out and named in a note. Accuracies carry their chance level
and a mark where a cell is not above it (harness.report.chance); tokens/s a mark where seeds
disagree by more than 1.5x (harness.report.spread).

A value that is missing (a failed cell, a metric older runs never logged) is an empty cell with a
numbered footnote; a quantity that does not apply (the Q layer of a dense model) reads "n/a".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from harness.report.cells import FINISHED, StudyInfo, aggregate, format_value
from harness.report.chance import MARGIN, above_chance, chance_key, is_accuracy, source_text
from harness.report.columns import appendix_keys, main_keys, paper_beside, resource_key
from harness.report.paper import PaperColumn, PaperTable, paper_key
from harness.report.quantities import Quantity, catalogue
from harness.report.spread import throughput_spreads
from harness.runs import records

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
    numbers: pd.DataFrame  # every quantity of both tables as numbers (mean, se, n): the CSV


@dataclass(frozen=True)
class Tables:
    main: Table  # the columns that answer the study's question
    appendix: Table  # every other quantity; its numbers are main's


@dataclass(frozen=True)
class _Column:
    header: str
    texts: tuple[str, ...]
    key: str  # our quantity's key (a paper column: the one it sits beside)

    @property
    def empty(self) -> bool:
        return all(t in ("", NOT_APPLICABLE) for t in self.texts)


def build_table(runs: pd.DataFrame, info: StudyInfo, paper: PaperTable | None,
                cpu: bool = False) -> Table:
    """The main table (`build_tables(...).main`)."""
    return build_tables(runs, info, paper, cpu).main


def build_tables(runs: pd.DataFrame, info: StudyInfo, paper: PaperTable | None,
                 cpu: bool = False) -> Tables:
    """runs: `cells.per_run` output. cpu: the runs measured peak memory as process RSS."""
    quantities = catalogue(runs.columns)
    runs, budget_note = _with_budget_steps(runs, info)
    main = main_keys(info)
    rest = appendix_keys(runs, paper, quantities, main)
    keys = list(dict.fromkeys([*main, *rest, *CSV_ONLY]))
    chances = [chance_key(k) for k in keys if is_accuracy(k) and chance_key(k) in runs]
    cells = aggregate(runs, info.axis_names, [*keys, *chances])
    numbers = _numbers(cells, info, paper, [*keys, *chances])
    spreads = throughput_spreads(runs)
    notes = _Notes()
    marks = _row_notes(runs, cells, notes)
    body = _part(runs, cells, info, paper, main, quantities, notes, spreads)
    identity = _identity(cells, info, marks)
    main_table = _table(identity, body, notes, [
        *([budget_note] if budget_note else []),
        *_standing_notes([c.key for c in body], paper, cpu, info, timed=_timing(runs))],
        numbers)
    notes = _Notes()
    body = _part(runs, cells, info, paper, rest, quantities, notes, spreads)
    appendix = _table(identity[:-1], body, notes,
                      _standing_notes([c.key for c in body], paper, cpu, info, main=False),
                      numbers)
    return Tables(main_table, appendix)


def _identity(cells: pd.DataFrame, info: StudyInfo, marks: dict[str, str]) -> list[_Column]:
    """The axis columns (or the cell label), then n."""
    names = info.axis_names
    columns = [_Column(name.split(".")[-1], tuple(format_value(v) for v in cells[name]), name)
               for name in names] or [_Column("cell", tuple(map(str, cells["cell"])), "cell")]
    n = tuple(f"{c['n_finished']}{marks.get(c['cell'], '')}" for _, c in cells.iterrows())
    return [*columns, _Column("n", n, "n")]


def _table(identity: list[_Column], body: list[_Column], notes: _Notes, standing: list[str],
           numbers: pd.DataFrame) -> Table:
    columns = [*identity, *body]
    rows = tuple(zip(*(c.texts for c in columns), strict=True)) if columns[0].texts else ()
    numeric = tuple(c.header == "n" or i >= len(identity) for i, c in enumerate(columns))
    return Table(tuple(c.header for c in columns), rows, numeric, (*notes.lines, *standing),
                 numbers)


def _part(runs: pd.DataFrame, cells: pd.DataFrame, info: StudyInfo, paper: PaperTable | None,
          keys: list[str], quantities: dict[str, Quantity], notes: _Notes,
          spreads: dict) -> list[_Column]:
    """Our column of each key (with the paper's beside it); a column empty in every row is left
    out and named in one note instead."""
    out, dropped = [], []
    chance_mark = _LazyNote(notes, f"not above chance: mean - {MARGIN:g} se ≤ chance; "
                            + source_text() + ".")
    spread_mark = {cell: _LazyNote(notes, s.sentence() + ".") for cell, s in spreads.items()}
    for key in keys:
        q = quantities[key]
        texts = tuple(_cell_text(cell, q) for _, cell in cells.iterrows())
        theirs = paper_beside(paper, key)
        if _Column("", texts, key).empty:
            dropped.append(q.header + (f" (and beside it {theirs.label})" if theirs else ""))
            continue
        header = q.header
        if is_accuracy(key):
            header, texts = _chance_marks(cells, key, header, texts, chance_mark)
        if key == "tokens_per_s":
            texts = tuple(t + (spread_mark[c].mark() if c in spread_mark and t else "")
                          for t, c in zip(texts, cells["cell"], strict=True))
        out.append(_Column(header + _column_note(runs, q, notes), texts, key))
        if theirs is not None:
            out.append(_paper_column(theirs, q, cells, paper))
    if dropped:
        notes.lines.append("Left out, empty in every row (no finished run recorded them, or "
                           "they apply to no cell): " + "; ".join(dropped) + ".")
    return out


class _LazyNote:
    """A footnote numbered when first referred to, and only then."""

    def __init__(self, notes: _Notes, text: str) -> None:
        self.notes, self.text, self.number = notes, text, ""

    def mark(self) -> str:
        if not self.number:
            self.number = self.notes.add(self.text)
        return self.number


def _chance_marks(cells: pd.DataFrame, key: str, header: str, texts: tuple[str, ...],
                  mark: _LazyNote) -> tuple[str, tuple[str, ...]]:
    """The chance level in the header (one for every cell) and a mark on each cell that is not
    above it."""
    column = f"{chance_key(key)}.mean"
    if column not in cells:
        return header, texts
    levels = {round(float(v), 4) for v in cells[column].dropna()}
    if len(levels) == 1:
        header = f"{header} (chance {next(iter(levels)):.3g})"
    marked = []
    for text, (_, cell) in zip(texts, cells.iterrows(), strict=True):
        above = above_chance(cell[f"{key}.mean"], cell[f"{key}.se"], cell[column])
        marked.append(text + (mark.mark() if above is False and text else ""))
    return header, tuple(marked)


def _paper_column(column: PaperColumn, q: Quantity, cells: pd.DataFrame,
                  paper: PaperTable) -> _Column:
    """The paper's numbers in our quantity's unit, to the precision the paper printed."""
    header = column.label + (f" (chance {column.chance:.3g})" if column.chance else "")
    texts = []
    for _, cell in cells.iterrows():
        value = column.get(paper_key(cell, paper))
        texts.append("" if value is None else _paper_text(value, column, q))
    return _Column(header, tuple(texts), q.key)


def _paper_text(value: float, column: PaperColumn, q: Quantity) -> str:
    base = value * column.unit
    if not q.si:
        return f"{base / q.scale:.{column.digits}f}"
    scale, prefix = _si_scale(base)
    digits = len(f"{value:g}".replace(".", "").lstrip("0"))  # as many as the paper printed
    shown = base / scale
    places = digits - 1 - math.floor(math.log10(abs(shown))) if shown else 0
    return f"{round(shown, places):.{max(0, places)}f}{prefix}"


def _with_budget_steps(runs: pd.DataFrame, info: StudyInfo) -> tuple[pd.DataFrame, str]:
    """Runs older than budget/steps_reached: their steps from the study's budget, said so."""
    key = resource_key(info)
    done = runs["status"] == FINISHED
    if key != "steps" or not info.steps or runs.loc[done, key].notna().any() or not done.any():
        return runs, ""
    runs = runs.copy()
    runs.loc[done, key] = float(info.steps)
    return runs, (f"steps: the study's budget ({info.steps} each); these runs predate the "
                  f"{records.BUDGET_STEPS} metric.")


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
        return (f"{m:.0f}" if q.whole else _significant(m, 4)) + prefix
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


def _timing(runs: pd.DataFrame) -> str:
    """How the tokens/s column was measured: the timing pass, or during training."""
    timed = runs["timed"].fillna(False).astype(bool) if "timed" in runs else None
    if timed is not None and timed.any():
        part = "" if timed.all() else f" ({int(timed.sum())} of {len(runs)} runs; the rest " \
            "as seen in training)"
        return ("train tokens/s: the timing pass (`harness time`), each cell's training step "
                "timed after the study with its cells taking turns, median round" + part
                + "; what training saw is in the appendix.")
    return ("train tokens/s: as seen during training, whatever else the machine ran meanwhile; "
            "`harness time STUDY` times every cell in one quiet pass.")


def _standing_notes(shown: list[str], paper: PaperTable | None, cpu: bool, info: StudyInfo,
                    main: bool = True, timed: str = "") -> list[str]:
    notes = []
    if main:
        notes.append("n: finished runs (one per seed) averaged; values are mean ± standard error "
                     "over seeds, without ± when there is one seed or no spread. "
                     + _resource_note(info) + " Every other quantity: the appendix table.")
    if timed and "tokens_per_s" in shown:
        notes.append(timed)
    if "flops_paper" in shown:
        notes.append("FLOPs/token (exact): forward multiply-adds of matrix products per token "
                     "(attention at the full context, LM head included), as logged. (paper "
                     "approx.): n_layer (block + 2 s d) + d V with block = 6 K d (MemoryFormer) or "
                     "(4 + 2 r) d^2 (dense), from the run's params; see index.md.")
    columns = [c for c in paper.columns if c.ours in shown] if paper else []
    if columns:
        notes.append(f"Columns named 'paper ...' are Ding et al. (NeurIPS 2024) {paper.name}: "
                     f"{paper.caption}; at the paper's scale, not ours; empty where the paper "
                     "has no such row.")
    converted = sorted({c.converted for c in columns if c.converted})
    if converted:
        notes.append("Paper FLOPs are shown in our unit, FLOPs per token: "
                     + "; ".join(converted) + ".")
    if any(c.chance for c in columns):
        notes.append("The paper's accuracy is the average over piqa, winogrande, wsc (2 choices "
                     "each), arc_easy, arc_challenge and logiqa (4 each): chance 0.375.")
    if cpu and "peak_bytes" in shown:
        notes.append("peak mem MB on CPU is the worker process's peak resident memory since "
                     "the trial's training started (the kernel's high-water mark, reset per run "
                     "on Linux): it includes the Python runtime and the loaded libraries.")
    return notes


def _resource_note(info: StudyInfo) -> str:
    held = {"flops": "training FLOPs", "seconds": "seconds of optimiser steps"}.get(
        info.budget, "steps")
    return f"Held fixed in this study: {held}; its column shows what each run spent."


def _numbers(cells: pd.DataFrame, info: StudyInfo, paper: PaperTable | None,
             keys: list[str]) -> pd.DataFrame:
    """Ours as mean, se, n; the paper's in the same unit as ours (FLOPs per token, bytes)."""
    columns = ["cell", *info.axis_names, "kind", "n_runs", "n_finished"]
    for key in keys:
        columns += [f"{key}.mean", f"{key}.se", f"{key}.n"]
    out = cells[columns].copy()
    for column in paper.columns if paper else ():
        out[column.label] = [column.base(paper_key(c, paper)) for _, c in cells.iterrows()]
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
