"""Scaling-law fits, their seed bootstrap and crossings against known curves, the scaling frame of
a hand-made runs table, and the resource figures (written, or skipped when metrics are absent)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from harness.report import fairness, resource_plots
from harness.report.reader import StudyRecords
from harness.report.scaling import (
    PowerLawFit,
    bootstrap_fit,
    crossing,
    crossing_interval,
    fit_power_law,
    frontier,
    scaling_frame,
)
from harness.runs import records

E, A, ALPHA = 2.0, 500.0, 0.3
BUDGETS = np.logspace(9, 13, 6)


def _synthetic(e: float = E, a: float = A, alpha: float = ALPHA, seeds: int = 3,
               family: str = "dense", rng_seed: int = 0, sd: float = 0.005) -> pd.DataFrame:
    """6 budgets x `seeds` seeds of L = e + a C^-alpha plus Gaussian noise, a scaling frame."""
    rng = np.random.default_rng(rng_seed)
    rows = [{"family": family, "seed": s, "flops": c,
             "val_loss": e + a * c**-alpha + rng.normal(0, sd)}
            for s in range(seeds) for c in BUDGETS]
    return pd.DataFrame(rows)


def _law(e: float, a: float, alpha: float) -> PowerLawFit:
    return PowerLawFit(e=e, a=a, alpha=alpha, n=0, rms=0.0)


def test_the_fit_recovers_a_known_law():
    # A = 500 keeps the law identifiable at this noise: with A = 50 the whole curve spans 0.09
    # nats over the range, and alpha's own sampling spread (about 0.04) exceeds 5%
    data = _synthetic()
    fit = fit_power_law(data["flops"], data["val_loss"])
    assert fit.n == 18
    assert fit.alpha == pytest.approx(ALPHA, rel=0.05)
    assert fit.e == pytest.approx(E, rel=0.05)
    assert fit.a == pytest.approx(A, rel=0.5)  # A trades off against alpha: loosely
    assert fit.rms == pytest.approx(0.005, rel=0.5)
    assert np.allclose(fit.predict(BUDGETS), E + A * BUDGETS**-ALPHA, atol=0.01)


def test_the_fit_is_exact_without_noise_and_refuses_too_few_points():
    c = np.logspace(6, 10, 5)
    fit = fit_power_law(c, 1.5 + 20 * c**-0.4)
    assert (fit.e, fit.a, fit.alpha) == pytest.approx((1.5, 20, 0.4), rel=1e-4)
    assert fit.rms < 1e-6
    with pytest.raises(ValueError, match="at least 4"):
        fit_power_law(c[:3], 1.5 + 20 * c[:3]**-0.4)


def test_the_seed_bootstrap_interval_holds_the_truth():
    fit = bootstrap_fit(_synthetic(seeds=6), "flops", n_boot=300)
    assert fit.n_boot == 300 and fit.n_failed == 0
    assert fit.draws.shape == (300, 3)
    assert fit.e_ci.contains(E) and fit.alpha_ci.contains(ALPHA) and fit.a_ci.contains(A)
    assert fit.alpha_ci.low < fit.alpha < fit.alpha_ci.high
    again = bootstrap_fit(_synthetic(seeds=6), "flops", n_boot=300)
    assert again == fit  # the same rng seed, the same draws


def test_failed_refits_are_counted_not_raised():
    data = _synthetic(seeds=2)
    data = data[(data["seed"] == 0) | (data["flops"] < 1e11)]  # seed 1 alone has 3 points
    fit = bootstrap_fit(data, "flops", n_boot=50)
    assert 0 < fit.n_failed < 50  # both draws of seed 1 leave too few points
    assert np.isnan(fit.draws).any(axis=1).sum() == fit.n_failed


def test_crossing_finds_the_analytic_point():
    # same alpha: 1 + (A2 - A1) C^-0.5 = 0 at C = (A2 - A1)^2 = 1e6
    assert crossing(_law(2, 100, 0.5), _law(1, 1100, 0.5), 1e3, 1e9) == pytest.approx(1e6)
    # same E: 10 C^-0.2 = 100 C^-0.4 at C^0.2 = 10
    assert crossing(_law(2, 10, 0.2), _law(2, 100, 0.4), 1e2, 1e8) == pytest.approx(1e5)


def test_crossing_is_none_when_the_curves_do_not_meet_in_range():
    assert crossing(_law(2, 100, 0.5), _law(2, 50, 0.5), 1e3, 1e9) is None
    assert crossing(_law(2, 100, 0.5), _law(1, 1100, 0.5), 1e7, 1e9) is None  # meet at 1e6
    with pytest.raises(ValueError):
        crossing(_law(2, 100, 0.5), _law(1, 1100, 0.5), 1e9, 1e3)


def test_the_crossing_interval_pairs_the_draws():
    # the curves meet at C = ((A_b - A_a) / (E_a - E_b))^(1/alpha) = 2000^(1/0.3), about 1e11
    truth = 2000 ** (1 / 0.3)
    a = bootstrap_fit(_synthetic(e=2.2, a=300, seeds=6, family="a"), "flops", n_boot=200)
    b = bootstrap_fit(_synthetic(e=2.0, a=700, seeds=6, family="b", rng_seed=1), "flops",
                      n_boot=200)
    lo, hi = BUDGETS[0], BUDGETS[-1]
    interval = crossing_interval(a, b, lo, hi)
    assert interval is not None and interval.share > 0.5 and interval.n == 200
    assert interval.low <= crossing(a, b, lo, hi) <= interval.high
    assert interval.low < truth < interval.high
    assert crossing_interval(_law(2, 1, 0.3), b, lo, hi) is None  # no draws to pair
    far = bootstrap_fit(_synthetic(e=1.0, seeds=6, family="c"), "flops", n_boot=50)
    assert crossing_interval(a, far, lo, hi) is None  # c lies below a everywhere


def _run(run_id: str, kind: str | None, seed: int, status: str = "FINISHED",
         role: str = "trial", preset: str | None = "nano", **metrics: float) -> dict:
    row = {"run_id": run_id, "experiment_id": "1", "status": status,
           "start_time": pd.Timestamp("2026-01-01", tz="UTC"),
           "end_time": pd.Timestamp("2026-01-01 00:01", tz="UTC")}
    row.update({f"metrics.{k}": v for k, v in metrics.items()})
    cell = {"model.kind": kind, "preset": preset, "seed": seed}
    row.update({"tags.harness.role": role, "tags.harness.study": "toy", "tags.seed": str(seed),
                "tags.harness.cell_params": json.dumps(cell, sort_keys=True),
                "tags.harness.cell": records.cell_label(cell), "tags.model.kind": kind,
                "params.model.kind": kind, "params.preset": preset})
    return row


def test_scaling_frame_reads_finished_trials_only():
    flops, secs, ne, total = (records.BUDGET_FLOPS_USED, records.BUDGET_SECONDS_USED,
                              records.NON_EMBEDDING_PARAMS, records.PARAMS)
    rows = [
        _run("p", None, 0, role="study"),
        _run("a", "dense", 0, **{"val/loss": 3.0, flops: 1e12, secs: 10.0, ne: 1e6, total: 2e6}),
        _run("b", "memoryformer", 1, preset=None, **{"val/loss": 3.5, flops: 2e12, total: 5e6}),
        _run("c", "dense", 2, status="FAILED", **{"val/loss": 9.0}),
    ]
    rows[2]["tags.preset"] = "micro"  # the preset only as a tag
    rows[2]["tags.model.kind"] = None  # an older run: the kind only as the config's param
    frame = scaling_frame(StudyRecords(pd.DataFrame(rows), pd.DataFrame()))
    assert list(frame["run_id"]) == ["a", "b"]
    assert list(frame["family"]) == ["dense", "memoryformer"]
    assert list(frame["preset"]) == ["nano", "micro"]
    assert list(frame["seed"]) == [0, 1]
    assert list(frame["val_loss"]) == [3.0, 3.5]
    assert list(frame["flops"]) == [1e12, 2e12]
    assert frame["seconds"].iloc[0] == 10.0 and math.isnan(frame["seconds"].iloc[1])
    assert list(frame["params"]) == [1e6, 5e6]  # b recorded no non-embedding count
    by_preset = scaling_frame(StudyRecords(pd.DataFrame(rows), pd.DataFrame()), "preset")
    assert list(by_preset["family"]) == ["nano", "micro"]


def _study(budgets: bool = True) -> StudyRecords:
    """Two kinds x two presets x two seeds, with loss curves over 4 validation steps."""
    runs, history = [], []
    for kind, scale in (("dense", 1.0), ("memoryformer", 0.6)):
        for preset, size in (("nano", 1e6), ("micro", 4e6)):
            for seed in (0, 1):
                run_id = f"{kind}-{preset}-{seed}"
                final = 2.0 + 5 * size**-0.2 + 0.01 * seed
                metrics = {"val/loss": final, records.NON_EMBEDDING_PARAMS: size}
                for step in (10, 20, 30, 40):
                    used = {records.BUDGET_FLOPS_USED: 6 * size * 1e3 * step * scale,
                            records.BUDGET_SECONDS_USED: 0.1 * step * (1 + seed / 10)}
                    loss = final + 1.0 / step
                    history += [(run_id, records.VAL_LOSS, step, loss),
                                (run_id, records.TRAIN_LOSS, step, loss - 0.02)]
                    if budgets:
                        history += [(run_id, k, step, v) for k, v in used.items()]
                if budgets:
                    metrics.update(used)
                runs.append(_run(run_id, kind, seed, preset=preset, **metrics))
    return StudyRecords(pd.DataFrame(runs),
                        pd.DataFrame(history, columns=["run_id", "key", "step", "value"]))


def test_the_resource_figures_are_written(tmp_path):
    written = resource_plots.loss_against_resources(_study(), tmp_path)
    assert [p.name for p in written] == ["loss_vs_flops.png", "loss_vs_seconds.png",
                                         "loss_vs_params.png"]
    assert all(p.exists() and p.stat().st_size > 0 for p in written)


def test_the_curves_average_seeds_per_step():
    study = _study()
    identity = resource_plots._identity(study)
    curves = resource_plots.resource_curves(study.history, identity,
                                            records.BUDGET_SECONDS_USED)
    assert len(curves) == 4 * 4  # four cells, four steps each
    first = curves[(curves["cell"] == "kind=dense,preset=nano") & (curves["step"] == 10)]
    assert first["resource"].tolist() == pytest.approx([1.05])  # seeds' 1.0 and 1.1
    assert first["loss"].tolist() == pytest.approx([2.0 + 5 * 1e6**-0.2 + 0.005 + 0.1])


def test_the_resource_figures_skip_missing_budgets(tmp_path):
    written = resource_plots.loss_against_resources(_study(budgets=False), tmp_path)
    assert [p.name for p in written] == ["loss_vs_params.png"]
    bare = StudyRecords(pd.DataFrame([_run("a", "dense", 0, **{"val/loss": 3.0})]),
                        pd.DataFrame(columns=["run_id", "key", "step", "value"]))
    assert resource_plots.loss_against_resources(bare, tmp_path / "none") == []
    empty = StudyRecords(pd.DataFrame(), pd.DataFrame())
    assert resource_plots.loss_against_resources(empty, tmp_path) == []


def test_the_scaling_plot_draws_fits_and_their_crossing(tmp_path):
    frame = pd.concat([_synthetic(e=2.2, a=300, seeds=4, family="dense"),
                       _synthetic(e=2.0, a=700, seeds=4, family="memoryformer", rng_seed=1)])
    fits = {f: bootstrap_fit(g, "flops", n_boot=50) for f, g in frame.groupby("family")}
    path = resource_plots.scaling_plot(frame, fits, tmp_path / "scaling.png")
    assert path.exists() and path.stat().st_size > 0
    assert resource_plots.scaling_plot(frame.assign(flops=np.nan), fits,
                                       tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    unfitted = resource_plots.scaling_plot(frame, {}, tmp_path / "points.png")
    assert unfitted.exists()


def _budget_study(budgets: np.ndarray, switch: float = 1e11) -> StudyRecords:
    """Two kinds x two presets x two seeds per budget. The small preset follows the kind's law;
    the large one is 0.5 nats worse below `switch` FLOPs and 0.2 better from there on."""
    laws = {"dense": (2.2, 300.0, 0.3), "memoryformer": (2.0, 700.0, 0.3)}
    runs = []
    for kind, (e, a, alpha) in laws.items():
        for preset in ("nano", "micro"):
            for budget in budgets:
                for seed in (0, 1):
                    loss = e + a * budget**-alpha + 0.001 * seed
                    if preset == "micro":
                        loss += 0.5 if budget < switch else -0.2
                    row = _run(f"{kind}-{preset}-{budget:.0e}-{seed}", kind, seed, preset=preset,
                               **{"val/loss": loss, records.BUDGET_FLOPS_USED: budget * 1.001})
                    row["params.train.flops_budget"] = str(budget)
                    runs.append(row)
    return StudyRecords(pd.DataFrame(runs), pd.DataFrame())


def test_the_frontier_keeps_each_familys_best_size_per_budget():
    frame = scaling_frame(_budget_study(np.logspace(9, 13, 5)))
    best = frontier(frame)
    picked = best.groupby(["family", "budget"])["preset"].agg(set)
    assert picked.loc[("dense", 1e9)] == {"nano"} and picked.loc[("dense", 1e13)] == {"micro"}
    assert len(best) == 2 * 5 * 2  # families x budgets x seeds: the other size's runs are gone
    assert frontier(frame.assign(budget=np.nan)).empty  # equal-steps runs have no frontier


def test_the_scaling_section_fits_the_frontier_and_refuses_three_budgets(tmp_path):
    # the large size is worse at every budget: the frontier is the small size's exact law, which
    # the fit recovers; pooling both sizes would have raised E by about 0.25
    study = _budget_study(np.logspace(9, 13, 5), switch=math.inf)
    lines, path = fairness.scaling_section(study, tmp_path, 50)
    assert lines[0].startswith("Compute frontier")
    assert lines[1].startswith("- 1e+09 FLOPs: dense: nano ")
    assert "memoryformer - dense: " in lines[1]
    assert "- dense: nano is best at every budget" in "\n".join(lines)
    fitted = [line for line in lines if "alpha = " in line]
    assert fitted[0].startswith("- dense: L(C) = E + A C^-alpha with E = 2.20")
    assert fitted[1].startswith("- memoryformer: L(C) = E + A C^-alpha with E = 2.00")
    assert path is not None and path.exists()

    few, _ = fairness.scaling_section(_budget_study(np.array([1e10, 1e11, 1e12])), tmp_path, 50)
    assert sum("no power law fitted: its frontier spans 3 budgets" in line for line in few) == 2
    one, none = fairness.scaling_section(_budget_study(np.array([1e12])), tmp_path, 50)
    assert one == [] and none is None  # one budget: nothing to say about scaling
