"""The report's figures. Each function takes frames and returns a matplotlib Figure (tests read its
axes); `save` writes it. Figures are built without pyplot, so nothing is ever shown or kept in a
global registry, and the Agg backend renders them.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: never look for a display

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from harness.report.cells import FINISHED
from harness.report.colors import cell_colors
from harness.report.spread import Spread
from harness.report.stats import pareto_front
from harness.runs import records

KIND_COLORS = {"dense": "#4C72B0", "memoryformer": "#DD8452"}
KIND_MARKERS = {"dense": "s", "memoryformer": "o"}
KIND_NAMES = {"dense": "dense (Pythia-style)", "memoryformer": "MemoryFormer"}
AXIS_LABELS = {  # what a study axis means, for axis titles
    "model.chunk_size": "chunk size tau (inputs hashed per table)",
    "model.bucket_bits": "bucket bits b (table rows = 2^b)",
    "model.num_tables": "number of tables K",
    "model.expansion_bits": "expansion bits e of the Memory Block",
    "model.temperature": "weight temperature t",
    "model.weighting": "row weighting",
    "model.ffn_activation": "Memory Block activation",
    "optim.lr": "peak learning rate",
    "preset": "preset",
}
PPL_LABEL = "validation perplexity (exp of val loss)"
FLOPS_LABEL = "forward FLOPs per token (exact count)"
MAX_LEGEND = 12  # more cells than this: the legend moves outside the axes (resource_plots)


def axis_label(name: str) -> str:
    return AXIS_LABELS.get(name, name)


def save(fig: Figure, path: Path, dpi: int = 120) -> Path:
    fig.savefig(path, dpi=dpi)
    return path


def _style():
    return sns.axes_style("whitegrid")


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    with _style():
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def _colors(colors: Mapping[str, str] | None, cells) -> dict[str, str]:
    """The report's cell -> colour mapping, or the same mapping built from these cells."""
    return dict(colors) if colors is not None else cell_colors(cells)


def ppl_vs_flops(cells: pd.DataFrame, study: str, colors: Mapping[str, str] | None = None
                 ) -> Figure:
    """Perplexity against exact FLOPs per token, one point per cell (± se; colour: the cell,
    marker: its model kind), its Pareto front (both lower is better) joined, and the best dense
    cell drawn as a baseline. Cells are named in the legend, not beside their points, where
    labels of nearby points would collide."""
    data = cells.dropna(subset=["val_ppl.mean", "flops_exact.mean"])
    colors = _colors(colors, cells["cell"])
    fig, (ax,) = _figure(8.5, 5)
    with _style():
        for _, row in data.iterrows():
            ax.errorbar(row["flops_exact.mean"], row["val_ppl.mean"],
                        yerr=np.nan_to_num(row["val_ppl.se"]),
                        fmt=KIND_MARKERS.get(row["kind"], "D"), color=colors[row["cell"]],
                        markersize=8, capsize=3, label=_short_label(row["cell"]))
        front = data[pareto_front(data["flops_exact.mean"], data["val_ppl.mean"])]
        front = front.sort_values("flops_exact.mean")
        ax.step(front["flops_exact.mean"], front["val_ppl.mean"], where="post", color="0.3",
                linewidth=1, linestyle=":", zorder=0)
        ax.scatter(front["flops_exact.mean"], front["val_ppl.mean"], s=260, facecolors="none",
                   edgecolors="0.2", linewidths=1.2, label="Pareto front (lower-left is better)")
        dense = data[data["kind"] == "dense"]
        if not dense.empty:
            best = dense.loc[dense["val_ppl.mean"].idxmin()]
            ax.axhline(best["val_ppl.mean"], color="0.4", linestyle="--", linewidth=1,
                       label="best dense cell")
        _log_if_wide(ax, data["flops_exact.mean"], "x")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.margins(x=0.1, y=0.12)
        ax.set_xlabel(FLOPS_LABEL)
        ax.set_ylabel(PPL_LABEL)
        ax.set_title(f"{study}: perplexity against compute per token")
        fig.legend(*ax.get_legend_handles_labels(), title="cell (marker: model kind)",
                   loc="outside right center", fontsize=8)
    return fig


def loss_curves(history: pd.DataFrame, runs: pd.DataFrame, study: str,
                colors: Mapping[str, str] | None = None) -> Figure:
    """Validation (left) and training (right) loss against step, one line per cell: the mean
    over its seeds, shaded ± se where there are several; one legend for both panels."""
    data = history.merge(runs[["run_id", "cell", "seed"]], on="run_id")
    data = data[np.isfinite(data["value"])]
    order = list(dict.fromkeys(runs["cell"]))
    palette = _colors(colors, order)
    fig, axes = _figure(12, 4.8, ncols=2)
    titles = {records.VAL_LOSS: "validation loss", records.TRAIN_LOSS: "training loss"}
    with _style():
        for ax, (key, title) in zip(axes, titles.items(), strict=True):
            part = data[data["key"] == key]
            if not part.empty:
                sns.lineplot(data=part, x="step", y="value", hue="cell", hue_order=order,
                             palette={c: palette[c] for c in order}, errorbar="se",
                             marker="o" if key == records.VAL_LOSS else None, markersize=4,
                             ax=ax, legend=key == records.VAL_LOSS)
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(f"{title} (nats/token)")
            ax.set_title(title)
        fig.suptitle(f"{study}: loss per cell (mean over seeds, band ± se)")
        _legend_beside(fig, axes[0])
    return fig


def axis_effect(runs: pd.DataFrame, axis: str, others: tuple[str, ...], study: str,
                search: bool = False) -> Figure:
    """Perplexity (left) and whole-model table memory (right, when the axis changes it) against
    one numeric axis; other axes, if any, as colours. A search shows its trials as points."""
    data = runs[runs["status"] == FINISHED].copy()
    data[axis] = pd.to_numeric(data[axis], errors="coerce")
    data = data.dropna(subset=[axis])
    data["table_mb"] = data["table_bytes"] / 1e6
    hue = None
    if others:
        hue = "other axes"
        data[hue] = [",".join(f"{o.split('.')[-1]}={row[o]}" for o in others)
                     for _, row in data.iterrows()]
    short = axis.split(".")[-1]
    panels = [("val_ppl", PPL_LABEL, f"perplexity against {short}")]
    if data["table_mb"].nunique() > 1:
        panels.append(("table_mb", "table memory, whole model (MB)",
                       f"table memory against {short}"))
    fig, axes = _figure(5.5 * len(panels) + 1, 4.5, ncols=len(panels))
    with _style():
        for ax, (column, label, title) in zip(axes, panels, strict=True):
            if search:
                sns.scatterplot(data=data, x=axis, y=column, hue=hue, ax=ax, s=60)
            else:
                sns.lineplot(data=data, x=axis, y=column, hue=hue, errorbar="se",
                             err_style="bars", marker="o", markersize=8, ax=ax)
            _log_if_wide(ax, data[axis], "x")
            ax.set_xlabel(axis_label(axis))
            ax.set_ylabel(label)
            ax.set_title(title)
            if not search and data[axis].nunique() <= 8:
                ax.set_xticks(sorted(data[axis].unique()))
        fig.suptitle(f"{study}: the effect of {short}"
                     + ("" if search else " (mean ± se over seeds)"))
    return fig


def throughput(runs: pd.DataFrame, study: str, colors: Mapping[str, str] | None = None,
               spreads: Mapping[str, Spread] | None = None) -> Figure:
    """Training tokens per second of each cell: a horizontal bar (mean ± se) in the cell's
    colour, a dot per seed; a cell whose seeds differ by more than spread.SPREAD_LIMIT says so
    in its label."""
    data = runs[(runs["status"] == FINISHED) & runs["tokens_per_s"].notna()].copy()
    data["ktok"] = data["tokens_per_s"] / 1e3
    order = list(dict.fromkeys(data["cell"]))
    palette = _colors(colors, runs["cell"])
    spreads = spreads or {}
    fig, (ax,) = _figure(8.5, 1.6 + 0.55 * max(len(order), 2))
    with _style():
        sns.barplot(data=data, y="cell", x="ktok", hue="cell", order=order, hue_order=order,
                    palette={c: palette[c] for c in order}, errorbar="se", capsize=0.2,
                    saturation=1, orient="h", legend=False, ax=ax)  # saturation 1: the
        # cell's own colour, as its lines elsewhere, not seaborn's muted bar shade
        with _fixed_jitter():
            sns.stripplot(data=data, y="cell", x="ktok", order=order, color="white",
                          edgecolor="0.1", linewidth=1.2, size=7, jitter=0.15, zorder=3,
                          orient="h", ax=ax)
        ax.set_yticks(range(len(order)))
        ax.set_yticklabels([_short_label(c) + (f"\n(seeds {spreads[c].ratio:.1f}x apart)"
                                               if c in spreads else "") for c in order])
        ax.set_ylabel("cell")
        ax.set_xlabel("training throughput (thousand tokens/s)")
        fig.suptitle(f"{study}: training throughput\n(bars: mean ± se; dots: seeds)")
    return fig


def bucket_usage(layers: pd.DataFrame, study: str, note: str = "",
                 colors: Mapping[str, str] | None = None) -> Figure:
    """Per memory layer: share of never-hit buckets (left) and normalised hit entropy (right),
    one bar per cell (mean over seeds). The Figure 4 analogue, from per-layer summaries."""
    order = sorted(layers["layer"].unique(), key=layer_key)
    cells = list(dict.fromkeys(layers["cell"]))
    palette = _colors(colors, cells)
    height = 1.8 + 0.28 * len(order) * max(2, len(cells))
    fig, axes = _figure(12 + (2.5 if len(cells) > 1 else 0), height, ncols=2)
    with _style():
        for ax, (column, label) in zip(axes, (
                ("unused_share", "share of buckets never hit (0 to 1)"),
                ("entropy", "normalised hit entropy (1 = uniform)")), strict=True):
            sns.barplot(data=layers, y="layer", x=column, hue="cell", order=order,
                        hue_order=cells, palette={c: palette[c] for c in cells},
                        errorbar="se", orient="h", saturation=1, ax=ax,
                        legend=len(cells) > 1 and column == "entropy")
            ax.set_xlabel(label)
            ax.set_xlim(0, 1)
        axes[0].set_ylabel("memory layer")
        axes[1].set_ylabel("")
        axes[1].tick_params(axis="y", labelleft=False)  # the same layers as on the left
        axes[0].set_title("unused buckets per layer (lower is better)")
        axes[1].set_title("bucket hit entropy per layer (higher is better)")
        who = f" of {cells[0]}" if len(cells) == 1 else ""
        fig.suptitle(f"{study}: bucket usage{who} (Figure 4 analogue{note}; per-layer "
                     "summaries)")
        _legend_beside(fig, axes[1])
    return fig


def heatmap(cells: pd.DataFrame, axes_names: tuple[str, ...], study: str,
            max_panels: int = 6) -> Figure:
    """Mean perplexity over the first two axes of a grid, one panel per value of the rest, on one
    colour scale. An empty square is a cell with no finished run."""
    rows, cols, rest = axes_names[0], axes_names[1], axes_names[2:]
    data = cells.copy()
    data["_panel"] = [", ".join(f"{r.split('.')[-1]}={c[r]}" for r in rest)
                      for _, c in data.iterrows()] if rest else ""
    panels = list(dict.fromkeys(data["_panel"]))[:max_panels]
    vmin, vmax = data["val_ppl.mean"].min(), data["val_ppl.mean"].max()
    row_order = list(dict.fromkeys(data[rows]))
    col_order = list(dict.fromkeys(data[cols]))
    width = max(7.5, min(18.0, 2.5 + len(panels) * (1.0 * len(col_order) + 1.2)))
    fig, axes = _figure(width, 2.2 + 0.7 * len(row_order), ncols=len(panels))
    with _style():
        for i, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
            part = data[data["_panel"] == panel]
            grid = part.pivot_table(index=rows, columns=cols, values="val_ppl.mean",
                                    aggfunc="mean", dropna=False)
            grid = grid.reindex(index=row_order, columns=col_order).astype(float)
            last = i == len(panels) - 1
            sns.heatmap(grid, annot=True, fmt=".2f", cmap="viridis_r", vmin=vmin, vmax=vmax,
                        cbar=last, cbar_kws={"label": PPL_LABEL} if last else None,
                        linewidths=0.5, ax=ax)
            ax.set_xlabel(axis_label(cols))
            ax.set_ylabel(axis_label(rows) if i == 0 else "")
            ax.tick_params(axis="y", labelrotation=0)
            ax.grid(False)
            for (r, c), value in np.ndenumerate(grid.to_numpy()):
                if np.isnan(value):
                    ax.text(c + 0.5, r + 0.5, "no finished\nrun", ha="center", va="center",
                            fontsize=8, color="0.45")
            if panel:
                ax.set_title(panel, fontsize=10)
        fig.suptitle(f"{study}: mean validation perplexity (lower is better)")
    return fig


def _log_if_wide(ax, values: pd.Series, which: str) -> None:
    """A log scale when positive values span more than 20x: learning rates, FLOPs of mixed
    kinds."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    values = values[values > 0]
    if len(values) and values.max() / values.min() > 20:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")


def _short_label(cell: str, limit: int = 44) -> str:
    return cell if len(cell) <= limit else cell[:limit - 1] + "…"


def layer_key(name: str) -> tuple:
    """blocks.0.qkv, blocks.0.ffn.layer_in, blocks.0.ffn.layer_out, blocks.1.qkv, ..."""
    numbers = [int(n) for n in re.findall(r"\d+", name)] or [math.inf]
    rank = next((i for i, part in enumerate(("qkv", "layer_in", "layer_out")) if part in name), 3)
    return (numbers[0], rank, name)


def _legend_beside(fig, ax) -> None:
    """One legend of cells right of the figure, in place of the one seaborn drew on `ax`."""
    legend = ax.get_legend()
    if legend is not None:
        handles, labels = ax.get_legend_handles_labels()
        legend.remove()
        fig.legend(handles, [_short_label(t) for t in labels], title="cell",
                   loc="outside right center", fontsize=8)


@contextlib.contextmanager
def _fixed_jitter():
    """Seaborn jitters strip points with NumPy's global generator: seed it for the one call, so
    a report rebuilt from the same data draws the same PNG."""
    state = np.random.get_state()
    np.random.seed(0)
    try:
        yield
    finally:
        np.random.set_state(state)
