"""The statistics behind report verdicts against hand counts and scipy, and the verdict text:
a direction only where the Holm-adjusted p allows one, per-seed values beside every report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from test_report import _history, _parent, _trial, bucket_bits, quickstart

from harness.report.build import PER_SEED_FILE, write_report
from harness.report.reader import StudyRecords
from harness.report.stats import detectable, holm, interval, knob_scale, paired, trend

T_975 = {1: 12.7062047, 2: 4.30265273}  # two-sided 95% t quantiles (any t table)
T_80 = {1: 1.37638192, 2: 1.06066017}  # one-sided 80% quantiles, for power 0.8


def _runs(cells: dict[str, list[float]]) -> pd.DataFrame:
    rows = [(cell, seed, "FINISHED", value) for cell, values in cells.items()
            for seed, value in enumerate(values)]
    return pd.DataFrame(rows, columns=["cell", "seed", "status", "val_loss"])


def test_holm_against_hand_adjusted_values():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1, and monotone
    assert holm([0.02]) == [0.02]
    assert holm([]) == []


def test_holm_passes_missing_p_values_through_without_counting_them():
    adjusted = holm([0.01, None, math.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[3] == pytest.approx(0.04)
    assert adjusted[1] is None and math.isnan(adjusted[2])


def test_paired_effect_interval_and_smallest_detectable_effect_by_hand():
    # differences 0.1 and 0.3: mean 0.2, sd sqrt(0.02), se 0.1, one degree of freedom
    result = paired(_runs({"a": [2.0, 2.1], "b": [2.1, 2.4]}), "a", "b")
    assert result.mean == pytest.approx(0.2) and result.d_z == pytest.approx(0.2 / 0.02**0.5)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.2 - T_975[1] * 0.1,
                                                             0.2 + T_975[1] * 0.1))
    assert result.mde == pytest.approx((T_975[1] + T_80[1]) * 0.1)
    # differences 0.1, 0.2, 0.3: sd 0.1, se 0.1 / sqrt(3), two degrees of freedom
    three = paired(_runs({"a": [2.0, 2.0, 2.0], "b": [2.1, 2.2, 2.3]}), "a", "b")
    se = 0.1 / math.sqrt(3)
    assert three.se == pytest.approx(se) and three.d_z == pytest.approx(2.0)
    assert three.ci_high - three.mean == pytest.approx(T_975[2] * se)
    assert three.mde == pytest.approx((T_975[2] + T_80[2]) * se)


def test_one_seed_or_no_spread_leaves_interval_and_detectable_effect_undefined():
    single = paired(_runs({"a": [2.0], "b": [2.5]}), "a", "b")
    assert single.n == 1 and math.isnan(single.ci_low) and math.isnan(single.mde)
    assert math.isnan(single.d_z) and single.p is None
    flat = paired(_runs({"a": [2.0, 2.0], "b": [2.5, 2.5]}), "a", "b")
    assert flat.p is None and math.isnan(flat.d_z)
    assert all(math.isnan(v) for v in interval(0.5, math.nan, 1)) and math.isnan(detectable(0.1, 0))


def _knob(values: list[float], seeds: int, loss) -> pd.DataFrame:
    rows = [(f"x={x}", seed, "FINISHED", x, loss(x, seed)) for x in values
            for seed in range(seeds)]
    return pd.DataFrame(rows, columns=["cell", "seed", "status", "knob", "val_loss"])


def test_trend_recovers_a_noiseless_slope_exactly():
    result = trend(_knob([1, 2, 4, 6], 2, lambda x, _: 2.0 + 0.05 * x), "knob")
    assert result.scale == "linear" and result.n == 8
    assert result.slope == pytest.approx(0.05, abs=1e-12)
    assert result.se == pytest.approx(0, abs=1e-12)


def test_trend_reads_a_knob_spanning_eightfold_per_doubling():
    lrs = [1e-3, 2e-3, 4e-3, 8e-3]
    result = trend(_knob(lrs, 2, lambda x, _: 3.0 - 0.1 * math.log2(x / 1e-3)), "knob")
    assert result.scale == "log2" and result.slope == pytest.approx(-0.1, abs=1e-12)
    assert knob_scale([1e-3, 4e-3]) == "linear" and knob_scale([-1, 8]) == "linear"


def test_trend_matches_scipy_linregress_on_a_hand_case():
    y = {1: 1.0, 2: 2.1, 3: 2.9, 4: 4.2}
    runs = _knob(list(y), 1, lambda x, _: y[x])
    result, expected = trend(runs, "knob"), scipy_stats.linregress(list(y), list(y.values()))
    assert result.slope == pytest.approx(expected.slope)
    assert result.se == pytest.approx(expected.stderr)
    assert result.p == pytest.approx(expected.pvalue)
    assert result.n == 4
    half = scipy_stats.t.ppf(0.975, 2) * expected.stderr
    assert (result.ci_low, result.ci_high) == pytest.approx((expected.slope - half,
                                                             expected.slope + half))


def test_trend_leaves_out_unfinished_runs_and_needs_two_knob_values():
    runs = _knob([1, 2, 3], 1, lambda x, _: float(x))
    runs.loc[2, "status"] = "FAILED"
    assert trend(runs, "knob").n == 2
    assert trend(runs[runs["knob"] == 1], "knob") is None


def _with_losses(records: StudyRecords, losses: dict[str, float]) -> StudyRecords:
    """The same runs with val/loss replaced per run id (val ppl follows from it)."""
    runs = records.runs.copy()
    for run_id, loss in losses.items():
        runs.loc[runs["run_id"] == run_id, "metrics.val/loss"] = loss
    return StudyRecords(runs, _history(runs))


def _index(records: StudyRecords, name: str, tmp_path) -> str:
    write_report(records, name, tmp_path, dpi=30)
    return (tmp_path / "index.md").read_text()


def test_a_clear_difference_names_its_direction(tmp_path):
    index = _index(quickstart(), "quickstart", tmp_path)
    assert ("preset=memoryformer-nano (12.572 ± 0.019): its validation loss is higher by "
            "0.21900 nats/token (95% CI 0.20629 to 0.23171") in index
    assert "Holm-adjusted over 1 comparison: p = 0.0029" in index
    assert "no detectable difference" not in index


def test_a_null_difference_claims_no_direction(tmp_path):
    # MemoryFormer's seeds straddle dense's: differences -0.01 and +0.03
    index = _index(_with_losses(quickstart(), {"run2": 2.30, "run3": 2.345}), "quickstart",
                   tmp_path)
    line = next(x for x in index.splitlines() if x.startswith("- Against the runner-up"))
    # se 0.02 with one df: (t_0.975 + t_0.8) x 0.02 = 0.28
    assert ("no detectable difference at 2 seeds (smallest detectable effect: 0.28 nats/token)"
            in line)
    assert "differs by +0.010 nats/token (95% CI -0.244 to 0.264" in line
    assert "higher by" not in line and "p = 0.7, Holm-adjusted over 1 comparison: p = 0.7" in line
    assert "Lowest by mean only: not detectably better than the runner-up." in index


def _bucket_bits_complete(chunk_10_seed_1: float) -> StudyRecords:
    """bucket_bits with chunk 10 seed 1 finished too, at the given loss."""
    records = bucket_bits()
    runs = records.runs.copy()
    source, target = runs["run_id"] == "run4", runs["run_id"] == "run5"
    metrics = [c for c in runs.columns if c.startswith("metrics.")]
    runs.loc[target, metrics] = runs.loc[source, metrics].to_numpy()
    runs.loc[target, "status"] = "FINISHED"
    runs.loc[target, "metrics.val/loss"] = chunk_10_seed_1
    runs.loc[target, ["tags.failure_reason"]] = None
    return StudyRecords(runs, _history(runs))


def test_the_paper_verdict_needs_a_detectable_difference(tmp_path):
    # chunk 4 at 2.49, 2.493; chunk 10 at 2.55 and this: differences 0.06 and 0.061
    clear = _index(_bucket_bits_complete(2.554), "bucket-bits", tmp_path / "clear")
    assert ("the best setting differs: against ours at the paper's best setting (chunk_size=10), "
            "its validation loss is higher by 0.06050 nats/token (95% CI 0.05415 to 0.06685"
            ) in clear
    null = _index(_bucket_bits_complete(2.45), "bucket-bits", tmp_path / "null")
    assert ("neither agreement nor disagreement is claimed: against the paper's best setting "
            "(chunk_size=10), no detectable difference at 2 seeds") in null
    assert "the best setting differs" not in null and "agrees" not in null


def test_every_pairwise_comparison_is_adjusted_over_the_same_family(tmp_path):
    index = _index(_bucket_bits_complete(2.554), "bucket-bits", tmp_path)
    assert "Holm-adjusted over 2 comparisons" in index  # chunk 4 against 10, and the trend
    assert "Holm-adjusted over 1 comparison" not in index


def _lr_grid(losses: dict[float, tuple[float, float]]) -> StudyRecords:
    rows, number = [_parent("lr", [["optim.lr", list(losses)]], [0, 1])], 0
    for lr, pair in losses.items():
        for seed, loss in enumerate(pair):
            row = _trial("lr", number, {"optim.lr": lr, "seed": seed}, "memoryformer")
            row["metrics.val/loss"] = loss
            rows.append(row)
            number += 1
    runs = pd.DataFrame(rows)
    return StudyRecords(runs, _history(runs))


def test_an_ordered_knob_gets_a_trend_line_per_doubling(tmp_path):
    falling = {1e-3: (2.60, 2.61), 2e-3: (2.50, 2.52), 4e-3: (2.41, 2.40), 8e-3: (2.30, 2.31)}
    index = _index(_lr_grid(falling), "lr", tmp_path / "falling")
    line = next(x for x in index.splitlines() if x.startswith("- Trend along lr"))
    assert line.startswith("- Trend along lr: validation loss falls by ")
    assert "nats/token per doubling of lr (OLS of validation loss on log2 lr over 8 " in line
    assert "95% CI " in line and "Holm-adjusted over" in line
    flat = {1e-3: (2.50, 2.60), 2e-3: (2.61, 2.49), 4e-3: (2.52, 2.58), 8e-3: (2.57, 2.53)}
    index = _index(_lr_grid(flat), "lr", tmp_path / "flat")
    assert "- Trend along lr: no detectable trend at 8 runs; slope " in index
    assert "the paper's best setting, lr = 0.003, has no finished run here" in index


def test_agreement_with_the_paper_is_claimed_when_the_runner_up_is_detectably_worse(tmp_path):
    losses = {1e-3: (2.60, 2.61), 2e-3: (2.50, 2.51), 3e-3: (2.30, 2.31), 4e-3: (2.40, 2.412)}
    index = _index(_lr_grid(losses), "lr", tmp_path)
    assert ("our lowest mean is at lr = 0.003: the best setting agrees: against the runner-up "
            "(lr=0.004), its validation loss is higher by 0.10100 nats/token") in index
    assert "- Trend along lr: " in index and "per 0.001 of lr" in index  # 4x span: linear, per step


def test_the_text_is_deterministic(tmp_path):
    records = _bucket_bits_complete(2.554)
    first = _index(records, "bucket-bits", tmp_path / "a")
    shuffled = StudyRecords(records.runs.sample(frac=1, random_state=3), records.history)
    assert _index(shuffled, "bucket-bits", tmp_path / "b") == first
    assert (tmp_path / "a" / PER_SEED_FILE).read_bytes() == (
        tmp_path / "b" / PER_SEED_FILE).read_bytes()


def test_per_seed_csv_has_one_row_per_trial_run(tmp_path):
    result = write_report(bucket_bits(), "bucket-bits", tmp_path, dpi=30)
    path = tmp_path / PER_SEED_FILE
    assert path in result.files
    frame = pd.read_csv(path)
    assert len(frame) == 6 and list(frame.columns[:5]) == [
        "cell", "model.chunk_size", "seed", "status", "kind"]
    assert {"val_loss", "val_ppl", "tokens_per_s", "flops_exact"} <= set(frame.columns)
    assert list(zip(frame["cell"], frame["seed"], frame["status"], strict=True))[-2:] == [
        ("chunk_size=10", 0, "FINISHED"), ("chunk_size=10", 1, "FAILED")]
    assert np.isnan(frame["val_loss"].iloc[-1])  # a failed run keeps its row, values empty
    assert frame.loc[0, "val_loss"] == 2.49
    assert f"[{PER_SEED_FILE}]({PER_SEED_FILE})" in (tmp_path / "index.md").read_text()
