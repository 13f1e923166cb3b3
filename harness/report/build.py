"""`build_report`: a study's runs from the tracking store to tables, figures and index.md in a
folder, also logged under `report/` of the study's parent run so the MLflow UI shows them.

`write_report` is the pure part: frames in, files out, no MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from harness.errors import ConfigError
from harness.report.archive import read_records, write_records
from harness.report.cells import (
    FINISHED,
    aggregate,
    layer_usage,
    per_run,
    study_info,
)
from harness.report.colors import study_colors
from harness.report.flops_text import flops_paragraph
from harness.report.paper import match_table
from harness.report.reader import StudyRecords, read_study, tag_column
from harness.report.spread import throughput_spreads
from harness.report.summary import (
    Figure,
    index_markdown,
    provenance_lines,
    within_conditions,
)
from harness.report.tables import Tables, build_tables, per_seed_csv, to_csv, to_latex, to_markdown
from harness.report.timing_text import timing_lines
from harness.runs.records import STUDY

ARTIFACT_PATH = "report"
TABLE_FILES = {"Markdown": "table.md", "LaTeX": "table.tex", "CSV": "table.csv"}
APPENDIX_FILES = {"Markdown": "table_appendix.md", "LaTeX": "table_appendix.tex"}
PER_SEED_FILE = "per_seed.csv"  # one row per trial run: what every test in index.md is run on
# figures this module names; an older report's leftovers among them are removed before writing
FIGURE_FILES = ("ppl_vs_flops.png", "loss_curves.png", "throughput.png", "bucket_usage.png",
                "heatmap.png", "loss_vs_flops.png", "loss_vs_seconds.png", "loss_vs_params.png",
                "sweeps.png", "scaling_flops.png", "bucket_hits.png")
BUCKET_HITS_FILE = "bucket_hits.png"
EFFECT_PREFIX = "effect_"
SUMMARY_KEYS = ["val_ppl", "val_loss", "flops_exact", "flops_paper", "table_bytes",
                "tokens_per_s", "block_flops", "block_flops_no_attn"]
MAX_EFFECT_AXES = 3
MAX_BUCKET_CELLS = 6
_TIMED_CAPTION = ("From the timing pass (`harness time`): each cell's training step timed after "
                  "the study, cells taking turns, median round; one value per cell, so the seeds' "
                  "dots coincide.")


@dataclass(frozen=True)
class ReportResult:
    study: str
    out: Path
    files: tuple[Path, ...]  # everything written, index.md first
    cells: int
    runs: int  # trial runs read
    parent_run_id: str | None
    logged: bool  # whether the files went to the parent run's artifacts

    @property
    def index(self) -> Path:
        return self.out / "index.md"


def build_report(study: str, tracking_uri: str, out: Path | None = None, *, log: bool = True,
                 dpi: int = 120, data_from: Path | None = None) -> ReportResult:
    """Read the study from the store, write its report into `out` (default reports/STUDY) and,
    with `log`, attach it to the study's parent run. Raises ConfigError for an unknown study.

    `data_from`: a report folder; the report is rebuilt from the data it holds (archive.py),
    without the store (nothing is logged)."""
    from harness.tracking.client import Tracker
    from harness.tracking.stores import redact

    out = Path(out) if out is not None else Path("reports") / study
    if data_from is not None:
        records, source = read_records(data_from)
        _check_study(records, study, data_from)
        return write_report(records, study, out, source=source, dpi=dpi)
    records = read_study(study, tracking_uri)
    result = write_report(records, study, out, source=redact(tracking_uri), dpi=dpi)
    if log and result.parent_run_id is not None:
        Tracker(tracking_uri).log_artifacts(result.parent_run_id, out, ARTIFACT_PATH)
        return replace(result, logged=True)
    return result


def write_report(records: StudyRecords, study: str, out: Path, source: str = "",
                 dpi: int = 120) -> ReportResult:
    """The report of a runs table and its loss histories, written into `out`."""
    from harness.report import plots
    out.mkdir(parents=True, exist_ok=True)
    _remove_old_figures(out)
    data = write_records(records, out, source)
    info = study_info(study, records.runs)
    runs = per_run(records.runs, info)
    finished_kinds = runs.loc[runs["status"] == FINISHED, "kind"].dropna().unique()
    paper = match_table(info.axis_names, list(runs["kind"].dropna().unique()))
    cpu = _tag_values(records.runs, "torch.device") == {"cpu"}
    tables = build_tables(runs, info, paper, cpu=cpu)
    written = _write_tables(tables, out, study, paper.name if paper else None)
    per_seed = out / PER_SEED_FILE
    per_seed.write_text(per_seed_csv(runs, info))
    cells = aggregate(runs, info.axis_names, SUMMARY_KEYS)
    figures = make_figures(records, runs, cells, info, set(finished_kinds))
    for figure, fig in figures:
        plots.save(fig, out / figure.file, dpi)
    sections, more = _fairness(records, runs, info, out, dpi)
    late, hits = _bucket_hits(records, runs, cells, info, out, dpi)
    timing = timing_lines(records.runs, runs)
    late = ((("Timing pass", timing),) if timing else ()) + late
    shown = [figure for figure, _ in figures] + hits + more
    index = out / "index.md"
    index.write_text(index_markdown(
        info, runs, cells, tables.main, paper, shown,
        provenance_lines(records.runs, runs, info, source or "unknown"),
        {name: file.name for name, file in zip(TABLE_FILES, written, strict=False)},
        per_seed=PER_SEED_FILE, sections=sections, appendix=tables.appendix,
        flops=flops_paragraph(records.runs, runs, cells), late_sections=late))
    return ReportResult(study=study, out=out,
                        files=(index, *written, per_seed, *(out / f.file for f in shown), *data),
                        cells=len(cells), runs=len(runs), parent_run_id=info.parent_run_id,
                        logged=False)


def _check_study(records: StudyRecords, study: str, folder: Path) -> None:
    names = sorted(set(records.runs.get(tag_column(STUDY), pd.Series(dtype=str)).dropna()))
    if names != [study]:
        raise ConfigError("study", f"{folder} holds the data of {', '.join(names) or 'no study'}"
                          f", not {study!r}; allowed: {', '.join(names) or 'none'}")


def _write_tables(tables: Tables, out: Path, study: str, paper_name: str | None) -> list[Path]:
    """table.md/.tex/.csv, then table_appendix.md/.tex (the CSV holds both tables' numbers)."""
    caption = (f"{study}: one row per cell, mean ± standard error over seeds"
               + (f"; the paper's {paper_name} beside ours" if paper_name else ""))
    texts = {"table.md": to_markdown(tables.main), "table.csv": to_csv(tables.main),
             "table.tex": to_latex(tables.main, caption, f"tab:{study}"),
             "table_appendix.md": to_markdown(tables.appendix),
             "table_appendix.tex": to_latex(tables.appendix, f"{caption}: every other quantity",
                                            f"tab:{study}-appendix")}
    paths = []
    for name in (*TABLE_FILES.values(), *APPENDIX_FILES.values()):
        path = out / name
        path.write_text(texts[name])
        paths.append(path)
    return paths


def make_figures(records: StudyRecords, runs: pd.DataFrame, cells: pd.DataFrame, info,
                 kinds: set[str]) -> list[tuple[Figure, object]]:
    """(file and caption, matplotlib Figure) of every figure of the report, unsaved; every plot
    colours a cell the same way (colors.study_colors)."""
    from harness.report import plots

    colors = study_colors(runs)
    made: list[tuple[str, object, str]] = []
    if cells["val_ppl.mean"].notna().any():
        made.append(("ppl_vs_flops.png", plots.ppl_vs_flops(cells, info.name, colors),
                     "Validation perplexity against exact forward FLOPs per token, one point per "
                     "cell (± standard error over seeds; marker: model kind); circled: the "
                     "Pareto front; dashed: the best dense cell."))
    if not records.history.empty:
        made.append(("loss_curves.png", plots.loss_curves(records.history, runs, info.name,
                                                          colors),
                     "Validation and training loss against step, mean over seeds per cell "
                     "(band: ± standard error)."))
    for axis in _numeric_axes(runs, info)[:MAX_EFFECT_AXES]:
        others = () if info.is_search else tuple(a for a in info.axis_names if a != axis)
        name = f"{EFFECT_PREFIX}{axis.split('.')[-1]}.png"
        made.append((name, plots.axis_effect(runs, axis, others, info.name, info.is_search),
                     f"Validation perplexity and whole-model table memory against "
                     f"{axis}."))
    if {"dense", "memoryformer"} <= kinds:
        spreads = throughput_spreads(runs)
        flagged = (" Flagged (seeds more than 1.5x apart, max over min): "
                   + "; ".join(s.sentence() for s in spreads.values()) + ".") if spreads else ""
        made.append(("throughput.png", plots.throughput(runs, info.name, colors, spreads),
                     "Training throughput per cell: bars mean ± standard error, dots single "
                     "seeds. " + (_TIMED_CAPTION if runs["timed"].any() else
                                  "Measured during training on the machine in Provenance; noisy "
                                  "on shared CPUs (`harness time STUDY` times it quietly).")
                     + flagged))
    layers = layer_usage(records.runs, runs)
    if not layers.empty:
        layers, note = _best_cells(layers, cells)
        made.append(("bucket_usage.png", plots.bucket_usage(layers, info.name, note, colors),
                     "Bucket usage per memory layer: the share of buckets never hit and the "
                     "normalised hit entropy, per seed (bucket_hits.png draws the counts)."))
    if len(info.axis_names) >= 2 and not info.is_search and cells["val_ppl.mean"].notna().any():
        made.append(("heatmap.png", plots.heatmap(cells, info.axis_names, info.name),
                     "Mean validation perplexity over the grid; an empty square had no "
                     "finished run."))
    return [(Figure(name, caption), fig) for name, fig, caption in made]


def _fairness(records: StudyRecords, runs: pd.DataFrame, info, out: Path, dpi: int
              ) -> tuple[tuple[tuple[str, list[str]], ...], list[Figure]]:
    """Sections and figures of what a comparison held fixed: sweeps, scaling, resources."""
    from harness.report import fairness, plots

    sections: list[tuple[str, list[str]]] = []
    within = within_conditions(runs)
    if within:
        sections.append(("Within each condition", within))
    figures = [Figure(name, caption) for name, caption in fairness.resource_figures(records, out)]
    if info.sweeps:
        sections.append(("Tuning", fairness.sweep_lines(info)))
        plots.save(fairness.sweep_figure(info), out / fairness.SWEEP_FILE, dpi)
        figures.append(Figure(fairness.SWEEP_FILE, "Each arm's learning-rate sweep: validation "
                              "loss per rate (circled: the rate it was compared at)."))
    lines, path = fairness.scaling_section(records, out, dpi)
    if lines:
        sections.append(("Scaling", lines))
    if path is not None:
        figures.append(Figure(path.name, "The compute frontier: final validation loss against "
                              "the training-FLOPs budget, each family's best size per budget "
                              "(mean ± se over seeds), with its fitted power law where it spans "
                              "enough budgets."))
    return tuple(sections), figures


def _bucket_hits(records: StudyRecords, runs: pd.DataFrame, cells: pd.DataFrame, info,
                 out: Path, dpi: int) -> tuple[tuple[tuple[str, list[str]], ...], list[Figure]]:
    """Figure 4 from the best MemoryFormer cell's hit counts, with its verdict."""
    from harness.report import buckets, plots

    cell = buckets.figure_cell(cells, records.buckets, runs)
    if cell is None:
        return (), []
    table = buckets.uniformity(records.buckets, runs, cell)
    color = study_colors(runs).get(cell, "C0")
    plots.save(buckets.histograms(records.buckets, runs, cell, info.name, color),
               out / BUCKET_HITS_FILE, dpi)
    figure = Figure(BUCKET_HITS_FILE, f"The paper's Figure 4 for {cell}: per memory layer, each "
                    "table's buckets sorted from most to least hit, hits relative to the uniform "
                    "share (median over tables and seeds, band 10-90%), beside a uniform hash's "
                    "at the same token count; where a line stops, the remaining buckets were "
                    "never hit.")
    return (("Bucket hits against uniform (Figure 4)", buckets.markdown_lines(table)),), [figure]


def _numeric_axes(runs: pd.DataFrame, info) -> list[str]:
    """Axes whose values are all numbers, with at least two of them."""
    found = []
    for axis in info.axis_names:
        values = runs[axis].dropna()
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric and values.nunique() >= 2:
            found.append(axis)
    return found


def _best_cells(layers: pd.DataFrame, cells: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    names = layers["cell"].unique()
    if len(names) <= MAX_BUCKET_CELLS:
        return layers, ""
    ranked = cells[cells["cell"].isin(names)].sort_values("val_ppl.mean")["cell"]
    keep = list(ranked[:MAX_BUCKET_CELLS])
    return (layers[layers["cell"].isin(keep)],
            f", the {MAX_BUCKET_CELLS} best of {len(names)} cells")


def _tag_values(runs: pd.DataFrame, tag: str) -> set[str]:
    column = runs.get(tag_column(tag))
    return set() if column is None else {str(v) for v in column.dropna()}


def _remove_old_figures(out: Path) -> None:
    for path in out.glob("*.png"):
        if path.name in FIGURE_FILES or path.name.startswith(EFFECT_PREFIX):
            path.unlink()
