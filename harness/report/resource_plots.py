"""Loss against what it cost: training FLOPs, optimizer seconds and non-embedding parameters, and
the fitted scaling laws of each model family. Figures follow plots.py (no pyplot, Agg, its
style); a figure whose metrics a study did not record is left out, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import EngFormatter, FuncFormatter

from harness.report.cells import per_run, standard_error, study_info
from harness.report.colors import cell_colors, study_colors
from harness.report.plots import (
    KIND_COLORS,
    KIND_MARKERS,
    KIND_NAMES,
    MAX_LEGEND,
    _figure,
    _style,
    save,
)
from harness.report.reader import StudyRecords, tag_column
from harness.report.scaling import (
    FAMILY,
    FLOPS,
    LOSS,
    PARAMS,
    RESOURCES,
    RUN_ID,
    SECONDS,
    PowerLawFit,
    crossing,
    crossing_interval,
    scaling_frame,
)
from harness.runs import records as contract

LOSS_LABEL = "validation loss (nats/token)"
CURVES = {  # history key -> (file stem, axis label)
    contract.BUDGET_FLOPS_USED: ("loss_vs_flops", RESOURCES[FLOPS]),
    contract.BUDGET_SECONDS_USED: ("loss_vs_seconds", RESOURCES[SECONDS] + " (s)"),
}
PARAMS_FILE = "loss_vs_params"


def loss_against_resources(records: StudyRecords, out_dir: Path) -> list[Path]:
    """Validation loss against training FLOPs and seconds (the curves, from the budget/*
    histories joined with val/loss on step) and final loss against non-embedding parameters,
    one line per cell (mean over its seeds). Returns the figures written."""
    identity = _identity(records)
    if identity.empty:
        return []
    out_dir = Path(out_dir)
    study = _study_name(records.runs)
    colors = study_colors(identity)  # the colours of every other figure of the report
    written = []
    for key, (stem, label) in CURVES.items():
        curves = resource_curves(records.history, identity, key)
        if not curves.empty:
            written.append(save(_curve_figure(curves, label, study, colors),
                                out_dir / f"{stem}.png"))
    points = _params_points(records, identity)
    if not points.empty:
        written.append(save(_params_figure(points, study, colors),
                            out_dir / f"{PARAMS_FILE}.png"))
    return written


def _identity(records: StudyRecords) -> pd.DataFrame:
    """run_id, cell, seed, kind of every trial run; empty when there are none."""
    runs = records.runs
    columns = [RUN_ID, "cell", "seed", "kind"]
    role = runs.get(tag_column(contract.ROLE))
    if runs.empty or role is None or not (role == contract.ROLE_TRIAL).any():
        return pd.DataFrame(columns=columns)
    frame = per_run(runs, study_info(_study_name(runs), runs))
    return frame[columns]


def _study_name(runs: pd.DataFrame) -> str:
    names = runs.get(tag_column(contract.STUDY), pd.Series(dtype=object)).dropna()
    return str(names.iloc[0]) if len(names) else "study"


def resource_curves(history: pd.DataFrame, identity: pd.DataFrame, key: str) -> pd.DataFrame:
    """cell, step, resource, loss: each cell's val/loss and `key` at the steps that logged
    both, averaged over its seeds. Empty when the history lacks either."""
    columns = ["cell", "step", "resource", "loss"]
    if history.empty or not {"run_id", "key", "step", "value"} <= set(history.columns):
        return pd.DataFrame(columns=columns)
    loss = _series(history, contract.VAL_LOSS, "loss")
    used = _series(history, key, "resource")
    data = loss.merge(used, on=["run_id", "step"]).merge(identity[[RUN_ID, "cell"]],
                                                         on=RUN_ID)
    data = data[np.isfinite(data["loss"]) & np.isfinite(data["resource"])
                & (data["resource"] > 0)]
    if data.empty:
        return pd.DataFrame(columns=columns)
    # seeds log at the same steps; their resource (seconds above all) differs, so average both
    means = data.groupby(["cell", "step"], sort=False)[["resource", "loss"]].mean()
    return means.reset_index()[columns]


def _series(history: pd.DataFrame, key: str, name: str) -> pd.DataFrame:
    part = history.loc[history["key"] == key, ["run_id", "step", "value"]]
    return part.rename(columns={"value": name})


def _curve_figure(curves: pd.DataFrame, label: str, study: str,
                  colors: Mapping[str, str] | None = None):
    cells = list(dict.fromkeys(curves["cell"]))
    palette = colors or cell_colors(cells)
    fig, (ax,) = _figure(7.5, 5)
    with _style():
        for cell in cells:
            part = curves[curves["cell"] == cell].sort_values("step")
            ax.plot(part["resource"], part["loss"], marker="o", markersize=3, linewidth=1.4,
                    color=palette[cell], label=cell)
        ax.set_xscale("log")
        ax.set_xlabel(f"{label}, log scale")
        ax.set_ylabel(LOSS_LABEL)
        fig.suptitle(f"{study}: validation loss against {label.split(' (')[0]}\n"
                     "(mean over seeds)")
        _legend(fig, ax, len(cells))
    return fig


def _params_points(records: StudyRecords, identity: pd.DataFrame) -> pd.DataFrame:
    """cell, kind, params, loss mean and se over the cell's finished seeds."""
    frame = scaling_frame(records).merge(identity[[RUN_ID, "cell", "kind"]], on=RUN_ID)
    frame = frame[np.isfinite(frame[LOSS]) & np.isfinite(frame[PARAMS]) & (frame[PARAMS] > 0)]
    rows = [{"cell": cell, "kind": group["kind"].iloc[0], "params": group[PARAMS].mean(),
             "loss": group[LOSS].mean(), "se": standard_error(group[LOSS].to_numpy(float))}
            for cell, group in frame.groupby("cell", sort=False)]
    return pd.DataFrame(rows, columns=["cell", "kind", "params", "loss", "se"])


def _params_figure(points: pd.DataFrame, study: str, colors: Mapping[str, str] | None = None):
    cells = list(points["cell"])
    palette = colors or cell_colors(cells)
    fig, (ax,) = _figure(7.5, 5)
    with _style():
        for kind, group in points.groupby("kind", sort=True, dropna=False):
            group = group.sort_values("params")
            ax.plot(group["params"], group["loss"], color=KIND_COLORS.get(kind, "0.5"),
                    linestyle="--", linewidth=1, zorder=1)
            for _, row in group.iterrows():
                ax.errorbar(row["params"], row["loss"], yerr=np.nan_to_num(row["se"]),
                            fmt=KIND_MARKERS.get(kind, "D"), color=palette[row["cell"]],
                            markersize=7, capsize=3, label=row["cell"], zorder=2)
        ax.set_xscale("log")
        ax.margins(x=0.08, y=0.08)  # points at the extremes clear of the frame
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.xaxis.set_minor_formatter(FuncFormatter(_minor_label))
        ax.set_xlabel(f"{RESOURCES[PARAMS]}, log scale")
        ax.set_ylabel(f"final {LOSS_LABEL}")
        joined = (points.groupby("kind", dropna=False).size() > 1).any()
        fig.suptitle(f"{study}: final loss against model size\n(mean ± se over seeds"
                     + ("; dashed: one model kind)" if joined else ")"))
        _legend(fig, ax, len(cells))
    return fig


def _minor_label(value: float, _position=None) -> str:
    """2M and 5M between the decades (not 2x10^6); the other minor ticks unlabelled, where
    their labels would run into each other."""
    leading = round(value / 10 ** np.floor(np.log10(value))) if value > 0 else 0
    return EngFormatter(sep="")(value) if leading in (2, 5) else ""


def _legend(fig, ax, n: int) -> None:
    if n > MAX_LEGEND:  # too many to share the axes: beside them
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, title="cell", loc="outside right center", fontsize=8)
    else:
        ax.legend(title="cell", fontsize=8, loc="best")


def scaling_plot(frame: pd.DataFrame, fits: Mapping[str, PowerLawFit], out_path: Path,
                 resource: str = FLOPS) -> Path | None:
    """Final loss against `resource` per family (runs as faint dots, each point's mean ± se),
    each family's fitted law, and, with two families, where their laws cross in the range the
    data covers (shaded: its bootstrap interval, when most draws cross). None when the frame
    holds no such points."""
    data = frame.dropna(subset=[resource, LOSS])
    data = data[data[resource] > 0]
    if data.empty:
        return None
    lo, hi = float(data[resource].min()), float(data[resource].max())
    fig, (ax,) = _figure(7.5, 5)
    with _style():
        families = sorted(data[FAMILY].dropna().unique(), key=str)
        spare = iter(sns.color_palette("deep", len(families)))
        for family in families:
            color = KIND_COLORS.get(family) or next(spare)
            _draw_family(ax, family, color, data[data[FAMILY] == family], resource,
                         fits.get(family), lo, hi)
        if len(fits) == 2 and lo < hi:
            _mark_crossing(ax, *fits.values(), lo, hi)
        ax.set_xscale("log")
        ax.set_xlabel(f"{RESOURCES.get(resource, resource)}, log scale")
        ax.set_ylabel(f"final {LOSS_LABEL}")
        ax.set_title(f"final loss against {RESOURCES.get(resource, resource)}"
                     + (": L = E + A C^-alpha per family" if fits else ""))
        ax.legend(fontsize=8, loc="best")
    return save(fig, Path(out_path))


def _draw_family(ax, family, color, group: pd.DataFrame, resource: str,
                 fit: PowerLawFit | None, lo: float, hi: float) -> None:
    name = KIND_NAMES.get(family, str(family))
    ax.scatter(group[resource], group[LOSS], color=color, alpha=0.3, s=14, linewidths=0)
    means = group.groupby(resource)[LOSS].agg(
        mean="mean", se=lambda v: standard_error(v.to_numpy(dtype=float)))
    ax.errorbar(means.index, means["mean"], yerr=means["se"].fillna(0),
                fmt=KIND_MARKERS.get(family, "D"), color=color, markersize=7, capsize=3,
                label=f"{name} (mean ± se over seeds)")
    if fit is None:
        return
    c = np.geomspace(lo, hi, 200)
    ax.plot(c, fit.predict(c), color=color, linewidth=1.4, label=f"{name} fit: {_describe(fit)}")


def _describe(fit: PowerLawFit) -> str:
    text = f"E={fit.e:.3f}, alpha={fit.alpha:.3f}"
    if fit.alpha_ci is not None:
        text += f" [{fit.alpha_ci.low:.3f}, {fit.alpha_ci.high:.3f}]"
    return text


def _mark_crossing(ax, fit_a: PowerLawFit, fit_b: PowerLawFit, lo: float, hi: float) -> None:
    at = crossing(fit_a, fit_b, lo, hi)
    if at is None:
        return
    interval = crossing_interval(fit_a, fit_b, lo, hi)
    if interval is not None:
        ax.axvspan(interval.low, interval.high, color="0.85", zorder=0,
                   label=f"crossing, 95% bootstrap interval ({interval.share:.0%} of draws)")
    ax.axvline(at, color="0.3", linestyle=":", linewidth=1.2, label=f"fits cross at {at:.3g}")
    ax.plot([at], fit_a.predict([at]), marker="X", color="0.2", markersize=9, linestyle="none")
