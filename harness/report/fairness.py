"""What a comparison held fixed, and how its arms were tuned and scaled: the report's sections for
budgets (flops, seconds), tune-then-compare sweeps and scaling series.

Everything here reads the study's parent-run params (`study.budget`, `study.budget_amount`,
`study.sweeps`) and the runs' `budget/*` metrics: records only, like the rest of the report.
"""

from __future__ import annotations

import math
from pathlib import Path

from harness.report.cells import StudyInfo, standard_error
from harness.report.reader import StudyRecords
from harness.runs.records import FLOPS_BUDGET, SECONDS_BUDGET

SWEEP_FILE = "sweeps.png"
SCALING_FILE = "scaling_flops.png"


def budget_sentence(info: StudyInfo) -> str:
    """Which resource every run held fixed, in words."""
    amount = info.budget_amount
    # a grid axis over the budget overrides the study's amount per cell
    if info.budget == "flops" and FLOPS_BUDGET in info.axis_names:
        return ("equal training FLOPs within each train.flops_budget (3x the exact forward count "
                "per token, models/cost.py's convention), so each cell ran the steps that spend "
                "its budget")
    if info.budget == "seconds" and SECONDS_BUDGET in info.axis_names:
        return ("equal time within each train.seconds_budget (seconds of optimiser steps; "
                "validation, checkpoints and logging not counted)")
    if info.budget == "flops" and amount:
        return (f"equal training FLOPs: {amount:.3g} per run (3x the exact forward count per "
                "token, models/cost.py's convention), so each cell ran the steps that spend it")
    if info.budget == "seconds" and amount:
        return (f"equal time: {amount:g} s of optimiser steps per run (forward, backward and "
                "optimiser step; validation, checkpoints and logging not counted), the learning "
                "rate's schedule following the clock")
    if info.steps:
        return f"equal steps: {info.steps} each, validation every {info.val_every}"
    return "steps unknown (no parent run)"


def sweep_lines(info: StudyInfo) -> list[str]:
    """One line per tuned arm: its best value, and a flag where the optimum is not bracketed."""
    if not info.sweeps:
        return []
    lines = ["Each arm ran at its own best learning rate from its own sweep (tune, then "
             "compare); the sweeps, mean validation loss per rate:"]
    for sweep in info.sweeps:
        tried = ", ".join(f"{v:g}: {loss:.4f}" for v, loss in zip(sweep["values"],
                                                                  sweep["losses"], strict=True))
        bracketed = sweep["values"][0] < sweep["best"] < sweep["values"][-1]
        flag = "" if bracketed else (" **not bracketed**: the best rate is at an edge of the "
                                     "sweep, so the arm may be under-tuned")
        lines.append(f"- {sweep['arm']}: best {sweep['best']:g} ({tried}){flag}")
    return lines


def sweep_figure(info: StudyInfo):
    """Validation loss against the tuned rate, one line per arm, best marked."""
    from harness.report.plots import _figure, _style

    fig, (ax,) = _figure(7, 4.5)
    with _style():
        for sweep in info.sweeps:
            ax.plot(sweep["values"], sweep["losses"], marker="o", label=sweep["arm"])
            best = sweep["values"].index(sweep["best"])
            ax.scatter([sweep["best"]], [sweep["losses"][best]], s=120, facecolors="none",
                       edgecolors="black", zorder=3)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (optim.lr)")
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(f"{info.name}: learning-rate sweeps (circled: the rate each arm ran at)")
        ax.legend(title="arm", fontsize=8)
    return fig


def scaling_section(records: StudyRecords, out: Path, dpi: int) -> tuple[list[str], Path | None]:
    """The compute frontier (each family's best size per training-FLOPs budget), its gap between
    two families per budget, per-family fits of L(C) = E + A C^-alpha to it where it spans
    scaling.MIN_POINTS budgets, the figure and where the fitted curves cross. Empty where no family
    ran at two budgets or more."""
    from harness.report.resource_plots import scaling_plot
    from harness.report.scaling import (
        BUDGET,
        FAMILY,
        LOSS,
        MIN_POINTS,
        PRESET,
        bootstrap_fit,
        crossing,
        crossing_interval,
        frontier,
        scaling_frame,
    )

    best = frontier(scaling_frame(records))
    spans = best.groupby(FAMILY)[BUDGET].nunique() if not best.empty else None
    if spans is None or spans.max() < 2:
        return [], None
    lines = ["Compute frontier: at each training-FLOPs budget, each family's best size by mean "
             "validation loss over seeds (nats/token, mean ± se); a law of loss against compute "
             "describes these, not every size pooled:"]
    cells = best.groupby([BUDGET, FAMILY, PRESET], sort=True)[LOSS].agg(
        mean="mean", se=lambda v: standard_error(v.to_numpy(dtype=float))).reset_index()
    families = sorted(cells[FAMILY].unique(), key=str)
    for budget, part in cells.groupby(BUDGET, sort=True):
        text = "; ".join(f"{r[FAMILY]}: {r[PRESET]} {r['mean']:.4f} ± {r['se']:.4f}"
                         for _, r in part.iterrows())
        if len(families) == 2 and len(part) == 2:
            a, b = (part[part[FAMILY] == f].iloc[0] for f in families)
            text += f"; {b[FAMILY]} - {a[FAMILY]}: {b['mean'] - a['mean']:+.4f}"
        lines.append(f"- {budget:.3g} FLOPs: {text}")
    fits = {}
    for family in families:
        part = best[best[FAMILY] == family]
        if part[PRESET].nunique() == 1 and part[BUDGET].nunique() > 1:
            lines.append(f"- {family}: {part[PRESET].iloc[0]} is best at every budget, so its "
                         "frontier follows one size: no larger size paid off within these budgets")
        if part[BUDGET].nunique() < MIN_POINTS:
            lines.append(f"- {family}: no power law fitted: its frontier spans "
                         f"{part[BUDGET].nunique()} budgets, and E, A and alpha are three free "
                         f"parameters (a fit needs {MIN_POINTS} budgets or more)")
            continue
        try:
            fit = bootstrap_fit(part, BUDGET)
        except (ValueError, RuntimeError) as error:
            lines.append(f"- {family}: no fit ({error})")
            continue
        fits[family] = fit
        lines.append(f"- {family}: L(C) = E + A C^-alpha with E = {fit.e:.3f} {_ci(fit.e_ci)}, "
                     f"alpha = {fit.alpha:.3f} {_ci(fit.alpha_ci)} over {fit.n} runs (95% "
                     "intervals: bootstrap over seeds)")
    if len(fits) == 2:
        (a, fa), (b, fb) = fits.items()
        lo, hi = float(best[BUDGET].min()), float(best[BUDGET].max())
        where = crossing(fa, fb, lo, hi)
        band = crossing_interval(fa, fb, lo, hi)
        lines.append(f"- The fitted curves of {a} and {b} "
                     + (f"cross at C = {where:.3g} FLOPs" if where else "do not cross within "
                        f"the budgets run ({lo:.3g} to {hi:.3g} FLOPs)")
                     + (f" (bootstrap: {band.low:.3g} to {band.high:.3g}, in {band.share:.0%} of "
                        "draws)" if band is not None and where else "") + ".")
    return lines, scaling_plot(best, fits, out / SCALING_FILE, resource=BUDGET)


def _ci(interval) -> str:
    if interval is None or not all(map(math.isfinite, (interval.low, interval.high))):
        return ""
    return f"({interval.low:.3f} to {interval.high:.3f})"


def resource_figures(records: StudyRecords, out: Path) -> list[tuple[str, str]]:
    """(file, caption) of the loss-against-resource figures written."""
    from harness.report.resource_plots import loss_against_resources

    captions = {
        "loss_vs_flops.png": "Validation loss against training FLOPs spent (3x the exact forward "
                             "count per token), mean over seeds per cell.",
        "loss_vs_seconds.png": "Validation loss against seconds of optimiser steps spent "
                               "(validation and checkpoints excluded), mean over seeds per cell.",
        "loss_vs_params.png": "Final validation loss against non-embedding parameters, one "
                              "point per cell (± standard error over seeds).",
    }
    written = loss_against_resources(records, out)
    return [(p.name, captions.get(p.name, "")) for p in written]
