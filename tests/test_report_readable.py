"""What makes a report readable, on small fixed stores: which columns each table shows, chance
lines on accuracies, one colour per cell in every figure, flagged throughput spreads, a FLOPs
paragraph computed from the cells, and figures whose text neither overlaps nor leaves the
figure at the size they are saved at."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from test_report import _tables, bucket_bits, efficient_attention, quickstart, two_axis_grid

from harness.report import build, plots, resource_plots
from harness.report.build import make_figures, write_report
from harness.report.cells import FINISHED, aggregate, per_run, study_info
from harness.report.colors import cell_colors
from harness.report.flops_text import flops_paragraph
from harness.report.layout import text_problems
from harness.report.reader import StudyRecords
from harness.report.spread import throughput_spreads

MAIN_HEADERS = ["n", "val ppl", "FLOPs/token (exact)", "steps", "train tokens/s", "table MB"]


def with_evaluation(records: StudyRecords, slow_seed: bool = True) -> StudyRecords:
    """quickstart as if it had run `evaluate: [mc:next-line]` (4 choices, accuracy near chance
    for dense, clearly above it for MemoryFormer), one MemoryFormer seed slowed 3x."""
    runs = records.runs.copy()
    trial = runs["tags.harness.role"] == "trial"
    memory = runs["tags.model.kind"] == "memoryformer"
    seed = pd.to_numeric(runs["tags.seed"], errors="coerce")
    runs.loc[trial, "metrics.eval/mc.next-line/acc"] = 0.245 + 0.002 * seed
    runs.loc[trial & memory, "metrics.eval/mc.next-line/acc"] = 0.40 + 0.01 * seed
    runs.loc[trial, "metrics.eval/mc.next-line/chance"] = 0.25
    if slow_seed:
        runs.loc[trial & memory & (seed == 1), "metrics.perf/tokens_per_s"] = 5000.0
    return StudyRecords(runs, records.history)


def test_the_main_table_holds_the_columns_that_answer_the_question():
    tables, _, _ = _tables(bucket_bits(), "bucket-bits")
    assert list(tables.main.headers) == ["chunk_size", "n", "val ppl",
                                         "paper ppl (MF-tiny, 2048 ctx)", *MAIN_HEADERS[2:]]
    appendix = tables.appendix.headers
    assert appendix[0] == "chunk_size" and "params" in appendix and "val ppl" not in appendix
    assert "peak mem MB [1]" in appendix and "FLOPs/token (paper approx.)" in appendix
    shown = set(tables.main.headers) | set(appendix)  # every number still in the CSV
    assert {"params.mean", "peak_bytes.mean", "q_flops.mean"} <= set(tables.main.numbers)
    assert "paper Q-layer FLOPs/token (MF-tiny, 2048 ctx)" in shown


@pytest.mark.parametrize("budget, header", [("flops", "training FLOPs"),
                                            ("seconds", "optimiser s")])
def test_the_resource_held_fixed_is_a_main_column(budget, header):
    records = quickstart()
    runs = records.runs.copy()
    parent = runs["tags.harness.role"] == "study"
    runs.loc[parent, "params.study.budget"] = budget
    runs.loc[~parent, "metrics.budget/flops_used"] = 1e12
    runs.loc[~parent, "metrics.budget/seconds_used"] = 20.0
    tables, _, _ = _tables(StudyRecords(runs, records.history), "quickstart")
    assert tables.main.headers[4] == header


@pytest.mark.parametrize("make, name", [(quickstart, "quickstart"), (bucket_bits, "bucket-bits"),
                                        (efficient_attention, "efficient-attention"),
                                        (two_axis_grid, "weighting-temperature")])
def test_no_table_has_a_column_empty_in_every_row(make, name):
    tables, _, _ = _tables(make(), name)
    for table in (tables.main, tables.appendix):
        for i, header in enumerate(table.headers):
            assert any(row[i] not in ("", "n/a") for row in table.rows), (name, header)
    # quickstart ran no evaluation: its accuracy, and the paper's beside it, are named instead
    if name == "quickstart":
        assert not any("acc" in h for h in tables.appendix.headers)
        assert any(n.startswith("Left out") and "mean eval acc" in n
                   for n in tables.appendix.notes)


def test_paper_flops_are_shown_in_our_unit_beside_ours():
    appendix = _tables(quickstart(), "quickstart")[0].appendix
    headers = list(appendix.headers)
    theirs = headers.index("paper block FLOPs/token w/o attention (Pythia-70M / MF-tiny, "
                           "2048 ctx)")
    assert headers[theirs - 1] == "block FLOPs/token w/o attention"
    # Table 1's 6.4 GFLOPs per 2048-token sequence = 3.1M FLOPs per token (12 d^2 at d = 512)
    assert [row[theirs] for row in appendix.rows] == ["3.1M", "200K"]
    assert any("x 1e9 / 2048" in note for note in appendix.notes)
    assert not any("GFLOPs" in h for h in headers)


def test_accuracies_carry_their_chance_level_and_a_mark_where_not_above_it(tmp_path):
    records = with_evaluation(quickstart())
    tables, _, _ = _tables(records, "quickstart")
    appendix = tables.appendix
    headers = list(appendix.headers)
    acc = headers.index("mc.next-line acc (chance 0.25)")
    mean = next(h for h in headers if h.startswith("mean eval acc"))
    assert mean == "mean eval acc (chance 0.25)"
    paper_acc = headers.index("paper avg zero-shot acc (Pythia-70M / MF-tiny, 2048 ctx) "
                              "(chance 0.375)")
    assert paper_acc == headers.index(mean) + 1
    dense, memory = (dict(zip(headers, row, strict=True)) for row in appendix.rows)
    mark = next(n for n in appendix.notes if "not above chance" in n).split("]")[0] + "]"
    assert dense[headers[acc]].endswith(" " + mark)  # 0.246 ± 0.001 against 0.25
    assert mark not in memory[headers[acc]]  # 0.405 ± 0.005
    note = next(n for n in appendix.notes if "not above chance" in n)
    assert "1 / number of choices" in note and "eval/<task>/chance" in note
    write_report(records, "quickstart", tmp_path, dpi=40)
    index = (tmp_path / "index.md").read_text()
    assert "- mc.next-line acc: chance 0.25; not above chance (mean - 2 se ≤ chance) in " \
           "preset=dense-nano." in index


def test_chance_comes_from_the_task_when_the_run_did_not_log_it():
    records = with_evaluation(quickstart())
    runs = records.runs.drop(columns=["metrics.eval/mc.next-line/chance"])
    info = study_info("quickstart", runs)
    frame = per_run(runs, info)
    assert frame["chance.eval.mc.next-line.acc"].dropna().unique().tolist() == [0.25]


def _legend_colors(fig) -> dict[str, str]:
    out = {}
    for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]:
        if legend is None:
            continue
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
            color = (handle.get_color() if hasattr(handle, "get_color")
                     else handle.get_facecolor())
            if not isinstance(color, str):  # a collection: a row per member
                rows = np.atleast_2d(color)
                if not len(rows):
                    continue
                color = rows[0]
            out[text.get_text()] = to_hex(color)
    return out


def test_one_colour_per_cell_in_every_figure():
    records = with_evaluation(quickstart())
    info = study_info("quickstart", records.runs)
    runs = per_run(records.runs, info)
    colors = cell_colors(runs["cell"])
    assert colors == cell_colors(list(runs["cell"]))  # a function of the cell order alone
    assert len(set(colors.values())) == len(colors)
    cells = aggregate(runs, info.axis_names, build.SUMMARY_KEYS)
    figures = dict((f.file, fig) for f, fig in make_figures(
        records, runs, cells, info, {"dense", "memoryformer"}))
    for name in ("ppl_vs_flops.png", "loss_curves.png"):
        found = _legend_colors(figures[name])
        assert {c: found[c] for c in colors} == colors, name
    # one MemoryFormer cell: no legend, its bars in its colour (not the first colour)
    buckets = {to_hex(p.get_facecolor()) for ax in figures["bucket_usage.png"].axes
               for p in ax.patches if p.get_width() > 0}
    assert buckets == {colors["preset=memoryformer-nano"]}
    speed = figures["throughput.png"].axes[0]
    labels = [t.get_text().split("\n")[0] for t in speed.get_yticklabels()]
    bars = [to_hex(p.get_facecolor()) for p in speed.patches if p.get_height() > 0]
    assert bars == [colors[label] for label in labels]
    identity = runs[["run_id", "cell", "seed", "kind"]]
    curves = pd.DataFrame({"cell": list(colors)[::-1], "step": [1, 1], "resource": [1.0, 2.0],
                           "loss": [2.0, 1.0]})
    fig = resource_plots._curve_figure(curves, "training FLOPs", "q",
                                       resource_plots.study_colors(identity))
    assert _legend_colors(fig) == {c: colors[c] for c in curves["cell"]}


def test_a_throughput_spread_over_seeds_is_flagged_in_table_text_and_figure(tmp_path):
    records = with_evaluation(quickstart())
    info = study_info("quickstart", records.runs)
    runs = per_run(records.runs, info)
    spreads = throughput_spreads(runs)
    assert list(spreads) == ["preset=memoryformer-nano"]
    assert spreads["preset=memoryformer-nano"].ratio == pytest.approx(15000 / 5000)
    main = _tables(records, "quickstart")[0].main
    speed = main.headers.index("train tokens/s")
    note = next(n for n in main.notes if "differ 3.0x" in n)
    assert main.rows[1][speed].endswith(note.split("]")[0] + "]")
    assert "5.0K to 15.0K" in note and "flagged above 1.5x" in note
    assert "[" not in main.rows[0][speed]  # dense seeds 30K and 31K: not flagged
    write_report(records, "quickstart", tmp_path, dpi=40)
    index = (tmp_path / "index.md").read_text()
    assert "- Throughput flag: preset=memoryformer-nano: its 2 seeds' tokens/s differ 3.0x" \
           in index
    assert "so this ratio is not a speed measurement" in index
    quiet = per_run(with_evaluation(quickstart(), slow_seed=False).runs, info)
    assert throughput_spreads(quiet) == {}
    fig = plots.throughput(runs, "quickstart", spreads=spreads)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks[1] == "preset=memoryformer-nano\n(seeds 3.0x apart)"


def test_the_flops_paragraph_is_worked_out_from_the_cells_own_knobs():
    records = bucket_bits()
    info = study_info("bucket-bits", records.runs)
    runs = per_run(records.runs, info)
    cells = aggregate(runs, info.axis_names, build.SUMMARY_KEYS)
    text = flops_paragraph(records.runs, runs, cells)
    # d = 128, e = 2: tau = 4 has K = 32 tables, 4 + 6 x 32 / 128 = 5.5 K d (8.3% below 6 K d)
    assert "at tau = 4, e = 2, K = 32, d = 128 that is 5.5 K d, 8.3% below 6 K d" in text
    assert "at tau = 8, e = 2, K = 16, d = 128 that is 5.25 K d, 12.5% below 6 K d" in text
    assert "tau = 10" in text and "For a dense block" not in text
    older = records.runs.drop(columns=["params.model.expansion_bits"])
    assert "do not record tau, e, K and d" in flops_paragraph(older, runs, cells)
    dense = cells[cells["kind"] == "dense"]
    assert "K (4 d" not in flops_paragraph(records.runs, runs, dense)


def test_no_report_text_points_outside_the_repository(tmp_path):
    write_report(with_evaluation(quickstart()), "quickstart", tmp_path, dpi=40)
    for path in tmp_path.iterdir():
        if path.suffix in (".md", ".tex", ".csv"):
            assert "SPEC" not in path.read_text(), path.name


@pytest.mark.parametrize("make, name", [
    (lambda: with_evaluation(quickstart()), "quickstart"), (bucket_bits, "bucket-bits"),
    (efficient_attention, "efficient-attention"), (two_axis_grid, "weighting-temperature")])
def test_no_figure_text_overlaps_or_leaves_the_figure(tmp_path, monkeypatch, make, name):
    """Every figure a report saves, checked at the size and resolution it is saved at."""
    checked = []

    def save(fig, path, dpi=120):
        fig.set_dpi(120)  # the committed reports' resolution
        problems = text_problems(fig)
        assert not problems, (path.name, problems)
        checked.append(path.name)
        return path

    monkeypatch.setattr(plots, "save", save)
    monkeypatch.setattr(resource_plots, "save", save)
    records = make()
    runs = records.runs.copy()
    trial = runs["tags.harness.role"] == "trial"
    runs.loc[trial, "metrics.budget/flops_used"] = 1e12  # the loss-against-resource figures too
    history = records.history
    extra = history[history["key"] == "val/loss"].assign(key="budget/flops_used",
                                                         value=lambda f: f["step"] * 1e9)
    write_report(StudyRecords(runs, pd.concat([history, extra])), name, tmp_path, dpi=120)
    assert "loss_curves.png" in checked and "loss_vs_flops.png" in checked
    assert all(r == FINISHED or r != FINISHED for r in runs["status"])


def test_the_layout_check_sees_overlapping_and_clipped_text():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.set_title("a title far too long to fit inside a figure three inches wide, clipped")
    ax.text(0.5, 0.5, "one", transform=ax.transAxes)
    ax.text(0.5, 0.5, "two", transform=ax.transAxes)
    problems = text_problems(fig)
    assert any("outside the figure" in p for p in problems)
    assert "'one' overlaps 'two'" in problems
