"""What a comparison held fixed, and how its arms were tuned and scaled: the report's sections for
budgets (flops, seconds), tune-then-compare sweeps and scaling series.

Everything here reads the study's parent-run params (`study.budget`, `study.budget_amount`,
`study.sweeps`) and the runs' `budget/*` metrics: records only, like the rest of the report.
"""

from __future__ import annotations

import math
from pathlib import Path

from harness.report.cells import StudyInfo
from harness.report.reader import StudyRecords

SWEEP_FILE = "sweeps.png"
SCALING_FILE = "scaling_flops.png"
MIN_SIZES = 4  # a family's power law has three free parameters: fit it on four sizes or more


def budget_sentence(info: StudyInfo) -> str:
    """Which resource every run held fixed, in words."""
    amount = info.budget_amount
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
    """Per-family fits of L(C) = E + A C^-alpha over training FLOPs, where a family spans at
    least MIN_SIZES presets; the figure and where the curves cross."""
    from harness.report.resource_plots import scaling_plot
    from harness.report.scaling import bootstrap_fit, crossing, crossing_interval, scaling_frame

    frame = scaling_frame(records).dropna(subset=["val_loss", "flops"])
    families = [f for f, part in frame.groupby("family") if part["preset"].nunique() >= MIN_SIZES]
    if not families:
        return [], None
    fits, lines = {}, ["Fits of L(C) = E + A C^-alpha to the final validation loss against "
                       "training FLOPs C, per family (95% intervals: bootstrap over seeds):"]
    for family in families:
        part = frame[frame["family"] == family]
        try:
            fit = bootstrap_fit(part, "flops")
        except (ValueError, RuntimeError) as error:
            lines.append(f"- {family}: no fit ({error})")
            continue
        fits[family] = fit
        lines.append(f"- {family}: E = {fit.e:.3f} {_ci(fit.e_ci)}, alpha = {fit.alpha:.3f} "
                     f"{_ci(fit.alpha_ci)} over {fit.n} runs")
    if len(fits) == 2:
        (a, fa), (b, fb) = fits.items()
        lo, hi = float(frame["flops"].min()), float(frame["flops"].max())
        where = crossing(fa, fb, lo, hi)
        band = crossing_interval(fa, fb, lo, hi)
        lines.append(f"- The fitted curves of {a} and {b} "
                     + (f"cross at C = {where:.3g} FLOPs" if where else "do not cross within "
                        f"the budgets run ({lo:.3g} to {hi:.3g} FLOPs)")
                     + (f" (bootstrap: {band.low:.3g} to {band.high:.3g}, in {band.share:.0%} of "
                        "draws)" if band is not None and where else "") + ".")
    path = scaling_plot(frame, fits, out / SCALING_FILE) if fits else None
    return lines, path


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
