"""Reports as pure functions of a small fixed runs table: tables against golden files, the
statistics against hand counts, every figure's labels, and missing data that never crashes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.report import paper, plots
from harness.report.build import write_report
from harness.report.cells import aggregate, layer_usage, per_run, study_info
from harness.report.quantities import COSTS, STANDARD, legacy_costs
from harness.report.reader import StudyRecords
from harness.report.stats import paired, pareto_front
from harness.report.tables import build_tables, format_stat, latex_escape, to_csv, to_markdown
from harness.runs import records
from harness.runs.records import COST_PAPER_FLOPS

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"  # UPDATE_GOLDEN=1 pytest ... rewrites them
LAYERS = ("blocks.0.qkv", "blocks.0.ffn.layer_in", "blocks.0.ffn.layer_out")
START = pd.Timestamp("2026-01-02 03:04", tz="UTC")


def _trial(study: str, number: int, params: dict, kind: str, status: str = "FINISHED",
           reason: str = "", drop: tuple[str, ...] = ()) -> dict:
    """One trial run as mlflow.search_runs lays it out, with plausible nano-sized numbers."""
    seed = params["seed"]
    chunk = int(params.get("model.chunk_size", 8))
    d, layers, seq, vocab = 128, 2, 128, 256
    tables = d // chunk
    memory = kind == "memoryformer"
    loss = 2.4 + 0.01 * chunk + 0.003 * seed if memory else 2.26 + 0.005 * seed
    loss += 0.05 * float(params.get("model.temperature", 1.0)) + (
        0.02 if params.get("model.weighting") == "l1" else 0)
    table_values = layers * tables * 2**chunk * (3 * d + 160 + 4 * d) if memory else 0
    metrics = {
        "val/loss": loss, "val/ppl": math.exp(loss), "train/loss": loss - 0.02,
        "perf/flops_per_token": (layers * (tables * (4 * d + 160) + 2 * seq * d) + d * vocab
                                 if memory else 491520.0),
        "perf/tokens_per_s": (15000.0 if memory else 30000.0) + 1000 * seed,
        "mem/peak_bytes": 1.0e9 + 1.0e7 * number,
        "size/params": table_values + 269824 / 4 if memory else 462336.0,
        "size/table_params": float(table_values), "size/table_bytes": 4.0 * table_values,
        "size/other_bytes": 269824.0 if memory else 1849344.0,
    }
    if memory:
        for i, layer in enumerate(LAYERS):
            metrics[f"buckets/{layer}/unused_share"] = 0.1 * (i + 1) + 0.01 * seed
            metrics[f"buckets/{layer}/entropy"] = 0.9 - 0.1 * i
        metrics["buckets/unused_share"], metrics["buckets/entropy"] = 0.2, 0.8
    if status != "FINISHED":
        metrics = {k: v for k, v in metrics.items() if k.startswith("train/")}
    row = {"run_id": f"run{number}", "experiment_id": "1", "status": status,
           "artifact_uri": "file:///tmp/none", "start_time": START + pd.Timedelta(minutes=number),
           "end_time": START + pd.Timedelta(minutes=number + 1)}
    row.update({f"metrics.{k}": v for k, v in metrics.items() if k not in drop})
    row.update({"params.model.d_model": str(d), "params.model.n_layer": str(layers),
                "params.model.resolved_num_tables": str(tables),
                "params.model.resolved_bucket_bits": str(chunk), "params.model.mlp_ratio": "4",
                "params.model.chunk_size": str(chunk), "params.model.expansion_bits": "2",
                "params.data.resolved_seq_len": str(seq), "params.model.vocab_size": str(vocab),
                "params.model.kind": kind})
    label = records.cell_label(params)  # as the study runner names a trial's run
    tags = {"harness.role": "trial", "harness.study": study, "harness.trial": str(number),
            "harness.cell": label, "harness.cell_params": json.dumps(params, sort_keys=True),
            "seed": str(seed), "model.kind": kind, "mlflow.parentRunId": "parent",
            "git.commit": "abc123", "git.dirty": "false", "torch.device": "cpu",
            "torch.threads": "2", "host.name": "box", "version.torch": "2.13.0"}
    if reason:
        tags["failure_reason" if status == "FAILED" else "stop_reason"] = reason
    row.update({f"tags.{k}": v for k, v in tags.items()})
    return row


def _parent(study: str, axes: list, seeds: list[int], search: dict | None = None) -> dict:
    return {"run_id": "parent", "experiment_id": "1", "status": "FINISHED",
            "artifact_uri": "file:///tmp/none", "start_time": START, "end_time": START,
            "params.study.axes": json.dumps(axes), "params.study.search": json.dumps(search),
            "params.study.seeds": json.dumps(seeds), "params.study.steps": "300",
            "params.study.val_every": "50", "params.study.objectives": "val_loss:minimize",
            "tags.harness.role": "study", "tags.harness.study": study,
            "tags.mlflow.note.content": f"A fixed table for the {study} report tests.",
            "tags.git.commit": "abc123", "tags.torch.device": "cpu"}


def _history(runs: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, run in runs[runs["tags.harness.role"] == "trial"].iterrows():
        final = run.get("metrics.val/loss")
        final = 2.5 if pd.isna(final) else final
        last = 300 if run["status"] == "FINISHED" else 100
        for step in range(50, last + 1, 50):
            rows.append((run["run_id"], "val/loss", step, final + 1.0 / step))
            rows.append((run["run_id"], "train/loss", step, final + 1.5 / step))
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])


def bucket_bits() -> StudyRecords:
    """Table 3 in small: chunk 10 seed 1 FAILED; chunk 4 seed 1 lacks its peak memory."""
    rows, number = [_parent("bucket-bits", [["model.chunk_size", [4, 8, 10]]], [0, 1])], 0
    for chunk in (4, 8, 10):
        for seed in (0, 1):
            failed = chunk == 10 and seed == 1
            rows.append(_trial(
                "bucket-bits", number, {"model.chunk_size": chunk, "seed": seed},
                "memoryformer", status="FAILED" if failed else "FINISHED",
                reason="TrainingFailed: training loss is nan at step 120" if failed else "",
                drop=("mem/peak_bytes",) if (chunk, seed) == (4, 1) else ()))
            number += 1
    runs = pd.DataFrame(rows)
    return StudyRecords(runs, _history(runs))


def quickstart() -> StudyRecords:
    """Table 1 in small: dense against MemoryFormer, two seeds each."""
    rows = [_parent("quickstart", [["preset", ["dense-nano", "memoryformer-nano"]]], [0, 1])]
    for number, (preset, seed) in enumerate(
            (p, s) for p in ("dense-nano", "memoryformer-nano") for s in (0, 1)):
        kind = "dense" if preset.startswith("dense") else "memoryformer"
        rows.append(_trial("quickstart", number, {"preset": preset, "seed": seed}, kind))
    runs = pd.DataFrame(rows)
    return StudyRecords(runs, _history(runs))


def efficient_attention() -> StudyRecords:
    """Table 2 in small: two presets x two attentions, two seeds each."""
    axes = [["preset", ["dense-nano", "memoryformer-nano"]],
            ["model.attention", ["softmax", "performer"]]]
    rows, number = [_parent("efficient-attention", axes, [0, 1])], 0
    for preset in ("dense-nano", "memoryformer-nano"):
        for attention in ("softmax", "performer"):
            for seed in (0, 1):
                kind = "dense" if preset.startswith("dense") else "memoryformer"
                rows.append(_trial("efficient-attention", number,
                                   {"preset": preset, "model.attention": attention, "seed": seed},
                                   kind))
                number += 1
    runs = pd.DataFrame(rows)
    return StudyRecords(runs, _history(runs))


def two_axis_grid() -> StudyRecords:
    """weighting x temperature, one seed; one cell pruned (KILLED)."""
    axes = [["model.weighting", ["paper", "l1"]], ["model.temperature", [0.5, 1.0, 2.0]]]
    rows, number = [_parent("weighting-temperature", axes, [0])], 0
    for weighting in ("paper", "l1"):
        for temperature in (0.5, 1.0, 2.0):
            pruned = (weighting, temperature) == ("l1", 2.0)
            rows.append(_trial("weighting-temperature", number,
                               {"model.weighting": weighting, "model.temperature": temperature,
                                "seed": 0}, "memoryformer",
                               status="KILLED" if pruned else "FINISHED",
                               reason="pruned at step 100 (val/loss 2.9)" if pruned else ""))
            number += 1
    runs = pd.DataFrame(rows)
    return StudyRecords(runs, _history(runs))


def _tables(records: StudyRecords, name: str):
    info = study_info(name, records.runs)
    runs = per_run(records.runs, info)
    match = paper.match_table(info.axis_names, list(runs["kind"].dropna().unique()))
    return build_tables(runs, info, match, cpu=True), runs, info


def _table(records: StudyRecords, name: str):
    tables, runs, info = _tables(records, name)
    return tables.main, runs, info


def _appendix(records: StudyRecords, name: str):
    return _tables(records, name)[0].appendix


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; UPDATE_GOLDEN=1 rewrites it"


@pytest.mark.parametrize("make, name", [(bucket_bits, "bucket-bits"), (quickstart, "quickstart")])
def test_tables_match_their_golden_files(make, name):
    tables, _, _ = _tables(make(), name)
    _golden(f"report_{name}_table.md", to_markdown(tables.main))
    _golden(f"report_{name}_appendix.md", to_markdown(tables.appendix))
    _golden(f"report_{name}_table.csv", to_csv(tables.main))


def _with_logged_costs(records: StudyRecords) -> StudyRecords:
    """The runs table as current training records it: cost/* metrics at the legacy formula's
    values (NaN, i.e. not logged, where it does not apply, as the Q layer of a dense model)."""
    runs = records.runs.copy()
    legacy = legacy_costs(runs, runs["tags.model.kind"])
    for key, name in COSTS.items():
        runs[f"metrics.{name}"] = legacy[key]
    return StudyRecords(runs, records.history)


@pytest.mark.parametrize("make, name", [(bucket_bits, "bucket-bits"), (quickstart, "quickstart")])
def test_logged_costs_build_the_table_the_legacy_formulas_build(make, name):
    records = make()
    logged = _with_logged_costs(records)
    trial_rows = logged.runs["tags.harness.role"] == "trial"
    paper_flops = logged.runs.loc[trial_rows, f"metrics.{COST_PAPER_FLOPS}"]
    assert paper_flops.notna().all()
    tables, _, _ = _tables(records, name)
    from_metrics, _, _ = _tables(logged, name)
    for part in ("main", "appendix"):
        assert to_markdown(getattr(from_metrics, part)) == to_markdown(getattr(tables, part))
    assert to_csv(from_metrics.main) == to_csv(tables.main)


def test_a_logged_cost_wins_over_the_legacy_formula():
    records = quickstart()
    runs = records.runs.copy()
    memory = runs["tags.model.kind"] == "memoryformer"
    logged = {name: 1000.0 * (i + 1) for i, name in enumerate(COSTS.values())}
    for name, value in logged.items():  # the dense runs predate cost/*: nothing logged
        runs.loc[memory, f"metrics.{name}"] = value
    frame = per_run(runs, study_info("quickstart", runs))
    ours = frame[frame["kind"] == "memoryformer"]
    for key, name in COSTS.items():
        assert ours[key].tolist() == [logged[name]] * 2, key
    assert frame.loc[frame["kind"] == "dense", "flops_paper"].tolist() == [491520] * 2
    table, _, _ = _table(StudyRecords(runs, records.history), "quickstart")
    numbers = table.numbers.set_index("preset")
    assert numbers.loc["memoryformer-nano", "flops_paper.mean"] == logged[COST_PAPER_FLOPS]
    assert numbers.loc["dense-nano", "flops_paper.mean"] == 491520


def test_table_has_one_row_per_cell_with_the_papers_numbers_beside_ours():
    table, _, _ = _table(bucket_bits(), "bucket-bits")
    assert [row[0] for row in table.rows] == ["4", "8", "10"]
    headers = list(table.headers)
    ours, theirs = headers.index("val ppl"), headers.index("paper ppl (MF-tiny, 2048 ctx)")
    assert theirs == ours + 1
    assert [row[theirs] for row in table.rows] == ["19.01", "18.82", "18.67"]
    column = "paper Q-layer table MB (MF-tiny, 2048 ctx, fp16)"
    assert table.numbers[column].tolist() == pytest.approx([2.1e6, 16.8e6, 53.5e6])  # bytes
    appendix = _appendix(bucket_bits(), "bucket-bits")
    assert [row[appendix.headers.index(column)] for row in appendix.rows] == [
        "2.1", "16.8", "53.5"]  # MB, as ours beside it


def test_a_failed_run_and_an_absent_metric_are_footnoted_not_fatal():
    table, _, _ = _table(bucket_bits(), "bucket-bits")
    rows = {row[0]: row for row in table.rows}
    assert rows["10"][1] == "1 [1]"  # one finished run, and a footnote saying why
    assert "seed 1 FAILED (TrainingFailed: training loss is nan" in table.notes[0]
    appendix = _appendix(bucket_bits(), "bucket-bits")
    peak = next(i for i, h in enumerate(appendix.headers) if h.startswith("peak mem MB"))
    assert appendix.headers[peak] == "peak mem MB [1]"
    assert "not recorded in 1 of 5 finished runs" in appendix.notes[0]
    rows = {row[0]: row for row in appendix.rows}
    assert rows["4"][peak] == "1000"  # from the one run that has it, without ±


def test_a_cell_without_any_finished_run_is_empty():
    records = two_axis_grid()
    table, _, _ = _table(records, "weighting-temperature")
    row = next(r for r in table.rows if r[:2] == ("l1", "2.0"))
    ppl = table.headers.index("val ppl")
    assert row[1 + 1] == "0 [1]" and row[ppl] == ""
    assert "seed 0 was pruned (pruned at step 100" in table.notes[0]
    assert "no run finished" in table.notes[0]


def test_runs_from_older_harness_versions_lack_columns_and_still_report(tmp_path):
    records = bucket_bits()
    old = records.runs.drop(columns=["params.model.resolved_num_tables", "metrics.mem/peak_bytes",
                                     "tags.harness.cell_params"])
    result = write_report(StudyRecords(old, records.history), "bucket-bits", tmp_path, dpi=40)
    text = (tmp_path / "table_appendix.md").read_text()
    left_out = next(line for line in text.splitlines() if line.startswith("Left out"))
    assert "FLOPs/token (paper approx.)" in left_out and "peak mem MB" in left_out
    assert result.cells == 3


def test_dense_rows_read_not_applicable_for_memory_only_columns():
    table, _, _ = _table(quickstart(), "quickstart")
    assert paper.TABLE_1.columns[0].label in _appendix(quickstart(), "quickstart").headers
    numbers = table.numbers.set_index("preset")
    assert numbers.loc["dense-nano", "flops_paper.mean"] == 491520  # (4 + 2 r) d^2 = 12 d^2
    # MemoryFormer: 2 x (6 K d + 2 s d) + d V with K = 16, d = s = 128, V = 256
    assert numbers.loc["memoryformer-nano", "flops_paper.mean"] == 2 * (
        6 * 16 * 128 + 2 * 128 * 128) + 128 * 256


def test_paper_tables_match_studies_by_axis_and_model_kind():
    mf, both = ["memoryformer"], ["dense", "memoryformer"]
    assert paper.match_table(("model.chunk_size",), mf) is paper.TABLE_3
    assert paper.match_table(("optim.lr",), mf) is paper.TABLE_4
    assert paper.match_table(("model.expansion_bits",), mf) is paper.TABLE_5
    assert paper.match_table(("model.ffn_activation",), mf) is paper.TABLE_6
    assert paper.match_table(("preset",), both) is paper.TABLE_1
    assert paper.match_table(("preset",), mf) is None  # two MemoryFormers: not Table 1
    assert paper.match_table(("optim.lr",), ["dense"]) is None
    assert paper.match_table(("model.chunk_size", "model.bucket_bits"), mf) is None
    assert paper.match_table(("preset", "model.attention"), both) is paper.TABLE_2
    assert paper.match_table(("model.attention", "preset"), mf) is paper.TABLE_2
    assert paper.TABLE_4.columns[0].get(0.003) == 18.82  # 3e-3 recorded as 0.003


def test_paired_comparison_against_a_hand_count():
    runs = pd.DataFrame({"cell": ["a", "a", "b", "b", "b"], "seed": [0, 1, 0, 1, 2],
                         "status": ["FINISHED"] * 5, "val_loss": [2.0, 2.1, 2.1, 2.4, 9.0]})
    result = paired(runs, "a", "b")
    assert result.seeds == (0, 1)  # seed 2 has no partner
    assert result.mean == pytest.approx(0.2) and result.se == pytest.approx(0.1)
    assert result.t == pytest.approx(2.0)
    assert result.p == pytest.approx(0.2952, abs=1e-4)  # 2 * P(T_1 > 2)
    single = paired(runs[runs["seed"] == 0], "a", "b")
    assert single.n == 1 and math.isnan(single.se) and single.p is None


def test_pareto_front_keeps_points_nothing_beats_on_both():
    x = np.array([1.0, 2.0, 3.0, 2.5, np.nan])
    y = np.array([3.0, 2.0, 1.0, 2.5, 0.0])
    assert pareto_front(x, y).tolist() == [True, True, True, False, False]


@pytest.mark.parametrize("mean, se, key, expected", [
    (9.57996, 0.015835, "val_ppl", "9.580 ± 0.016"),
    (9.57996, math.nan, "val_ppl", "9.580"),
    (491520.0, 0.0, "flops_exact", "491.5K"),
    (22896.1, 12457.1, "tokens_per_s", "23K ± 12K"),
    (34603008.0, 0.0, "table_bytes", "34.60"),
    (math.nan, math.nan, "val_ppl", ""),
])
def test_format_stat(mean, se, key, expected):
    quantity = next(q for q in STANDARD if q.key == key)
    assert format_stat(mean, se, quantity) == expected


def test_latex_escapes_its_special_characters():
    assert latex_escape("a_b 50% ± $x") == r"a\_b 50\% $\pm$ \$x"


def _labels(fig) -> list[tuple[str, str, str]]:
    return [(ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) for ax in fig.axes
            if ax.get_xlabel()]


def test_every_figure_has_axis_labels_and_a_title(tmp_path):
    records = bucket_bits()
    info = study_info("bucket-bits", records.runs)
    runs = per_run(records.runs, info)
    cells = aggregate(runs, info.axis_names, ["val_ppl", "flops_exact", "table_bytes"])
    figures = {
        "ppl": plots.ppl_vs_flops(cells, "bucket-bits"),
        "curves": plots.loss_curves(records.history, runs, "bucket-bits"),
        "effect": plots.axis_effect(runs, "model.chunk_size", (), "bucket-bits"),
        "buckets": plots.bucket_usage(layer_usage(records.runs, runs), "bucket-bits"),
    }
    quick = quickstart()
    figures["speed"] = plots.throughput(per_run(quick.runs, study_info("q", quick.runs)), "q")
    grid = two_axis_grid()
    grid_info = study_info("w", grid.runs)
    grid_cells = aggregate(per_run(grid.runs, grid_info), grid_info.axis_names, ["val_ppl"])
    figures["heat"] = plots.heatmap(grid_cells, grid_info.axis_names, "w")
    assert _labels(figures["ppl"])[0][:2] == (plots.FLOPS_LABEL, plots.PPL_LABEL)
    assert _labels(figures["curves"])[0][:2] == ("optimizer step",
                                                 "validation loss (nats/token)")
    assert _labels(figures["effect"])[0][0] == "chunk size tau (inputs hashed per table)"
    assert _labels(figures["effect"])[1][1] == "table memory, whole model (MB)"
    assert _labels(figures["buckets"])[0][:2] == ("share of buckets never hit (0 to 1)",
                                                  "memory layer")
    assert _labels(figures["speed"])[0][0] == "training throughput (thousand tokens/s)"
    assert _labels(figures["heat"])[0][:2] == ("weight temperature t", "row weighting")
    for name, fig in figures.items():
        assert all(title for _, _, title in _labels(fig)) or fig.get_suptitle(), name
        path = plots.save(fig, tmp_path / f"{name}.png", dpi=40)
        assert path.stat().st_size > 2000, name


def test_write_report_writes_tables_figures_and_an_index(tmp_path):
    result = write_report(quickstart(), "quickstart", tmp_path, source="sqlite:///x.db", dpi=40)
    names = {p.name for p in result.files}
    assert {"index.md", "table.md", "table.tex", "table.csv", "ppl_vs_flops.png",
            "loss_curves.png", "throughput.png", "bucket_usage.png"} <= names
    assert all(p.is_file() and p.stat().st_size for p in result.files)
    index = (tmp_path / "index.md").read_text()
    assert "**Best cell: preset=dense-nano**" in index
    assert "paired over seeds 0, 1" in index and "t = " in index
    assert "git commit: `abc123`" in index and "Trial runs: 4" in index
    assert "![" in index and "(throughput.png)" in index


def test_the_attention_grid_sets_table_2_beside_ours_and_compares_kinds_per_attention(tmp_path):
    table = _appendix(efficient_attention(), "efficient-attention")
    headers = list(table.headers)
    flops = headers.index("paper block FLOPs/token (Pythia-410M / MF-base, 2048 ctx)")
    assert headers[flops - 1] == "block FLOPs/token"  # ours beside it, in the same unit
    by_cell = {(row[0], row[1]): row[flops] for row in table.rows}
    # the paper's GFLOPs per 2048-token sequence, per token: 34.4e9 / 2048 = 16.8M
    assert by_cell == {("dense-nano", "softmax"): "16.8M", ("dense-nano", "performer"): "13.0M",
                       ("memoryformer-nano", "softmax"): "4.98M",
                       ("memoryformer-nano", "performer"): ""}  # not in the paper
    write_report(efficient_attention(), "efficient-attention", tmp_path, dpi=40)
    index = (tmp_path / "index.md").read_text()
    assert "This study mirrors the paper's Table 2" in index
    for attention in ("performer", "softmax"):
        assert f"- With {attention} attention: MemoryFormer" in index
    assert "FLOPs per token: " in index and "tokens/s: 0.5" in index


def test_a_two_axis_grid_gets_a_heatmap_and_an_effect_plot(tmp_path):
    result = write_report(two_axis_grid(), "weighting-temperature", tmp_path, dpi=40)
    names = {p.name for p in result.files}
    assert {"heatmap.png", "effect_temperature.png"} <= names
    assert "throughput.png" not in names  # one model kind only


def test_the_report_package_needs_neither_models_nor_training_code():
    code = ("import sys, harness.report.build, harness.report.plots, harness.report.reader; "
            "bad = [m for m in sys.modules if m.startswith(('harness.models', 'harness.train', "
            "'torch', 'lightning'))]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def searched() -> StudyRecords:
    """A TPE-style search: one seed per sampled point, the last trial pruned."""
    search = {"sampler": "tpe", "n_trials": 3, "params": [
        {"name": "optim.lr", "low": 0.0005, "high": 0.01, "log": True},
        {"name": "model.temperature", "low": 0.25, "high": 4.0, "log": True}]}
    rows = [_parent("tune", [], [0], search=search)]
    for number, (lr, temperature) in enumerate(((0.00123456, 0.5), (0.004, 1.7), (0.009, 3.1))):
        pruned = number == 2
        rows.append(_trial("tune", number, {"optim.lr": lr, "model.temperature": temperature,
                                            "seed": 0}, "memoryformer",
                           status="KILLED" if pruned else "FINISHED",
                           reason="pruned at step 50 (val/loss 3.1)" if pruned else ""))
    runs = pd.DataFrame(rows)
    return StudyRecords(runs, _history(runs))


def test_a_search_study_reports_one_row_per_sampled_point(tmp_path):
    result = write_report(searched(), "tune", tmp_path, dpi=40)
    table = (tmp_path / "table.md").read_text().splitlines()
    assert table[0].startswith("| lr | temperature | n |")
    assert table[2].startswith("| 0.001235 | 0.5 | 1 |")
    assert "| 0.009 | 3.1 | 0 [1] |" in table[4]
    names = {p.name for p in result.files}
    assert {"effect_lr.png", "effect_temperature.png"} <= names and "heatmap.png" not in names


def test_a_study_with_no_trial_yet_reports_that_it_has_none(tmp_path):
    records = bucket_bits()
    parent_only = records.runs[records.runs["tags.harness.role"] == "study"]
    empty = StudyRecords(parent_only, records.history.iloc[:0])
    result = write_report(empty, "bucket-bits", tmp_path, dpi=40)
    assert result.cells == 0 and result.runs == 0
    assert "nothing to rank" in (tmp_path / "index.md").read_text()
