"""Figure 4: how evenly a memory layer's hash spreads tokens over each table's buckets.

The paper plots the hit count of every bucket and calls it roughly uniform. Here each layer's
counts (the runs' buckets.npz, pooled over the cell's seeds) are drawn as a histogram of hits per
bucket relative to the uniform share, beside the histogram a perfectly uniform hash would give at
the same number of tokens (binomial), and summarised by the total-variation distance from uniform:
TV = 1/2 sum_i |p_i - 1/n| over a table's n = 2**b buckets (0 = uniform, near 1 = every token in
one bucket). A uniform hash is not at TV 0 with finitely many tokens: its expected TV,
sqrt(n / (2 pi N)) for N tokens per table, is the floor a real table is judged against.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from harness.report.cells import FINISHED

COLUMNS = ["cell", "layer", "runs", "tables", "buckets", "tokens", "unused", "tv", "tv_uniform"]
FAR_FROM_UNIFORM = 3.0  # TV more than this many times the uniform floor: "far from uniform"
MAX_PANELS = 12


def uniformity(buckets: Mapping[str, Mapping[str, np.ndarray]], runs: pd.DataFrame,
               cell: str) -> pd.DataFrame:
    """One row per memory layer of `cell`'s finished runs: COLUMNS, each table's TV averaged."""
    counts = _pooled(buckets, runs, cell)
    pooled_runs = len(_run_ids(runs, cell))
    rows = []
    for layer, tables in counts.items():  # tables: (R * K, n)
        tokens = tables.sum(axis=1)  # (R * K,) hits per table: the tokens of the pass
        n = tables.shape[1]
        shares = tables / tokens[:, None]
        tv = 0.5 * np.abs(shares - 1.0 / n).sum(axis=1)
        rows.append({"cell": cell, "layer": layer, "runs": pooled_runs,
                     "tables": tables.shape[0], "buckets": n, "tokens": float(tokens.mean()),
                     "unused": float((tables == 0).mean()), "tv": float(tv.mean()),
                     "tv_uniform": uniform_tv(n, float(tokens.mean()))})
    return pd.DataFrame(rows, columns=COLUMNS)


def uniform_tv(buckets: int, tokens: float) -> float:
    """Expected TV from uniform of a uniform hash's counts: sqrt(n / (2 pi N)) (normal limit of
    the binomial), at most 1 - 1/n."""
    return min(math.sqrt(buckets / (2 * math.pi * tokens)), 1 - 1 / buckets)


def verdict(table: pd.DataFrame) -> list[str]:
    """Sentences on how far each layer is from uniform, worst layer named."""
    if table.empty:
        return []
    ratio = table["tv"] / table["tv_uniform"]
    far = table[ratio > FAR_FROM_UNIFORM]
    worst = table.loc[ratio.idxmax()]
    cell = table["cell"].iloc[0]
    runs = int(table["runs"].iloc[0])
    lines = [f"Cell {cell}, {runs} finished run{'s' if runs != 1 else ''} pooled: "
             f"total-variation distance from uniform per table {table['tv'].min():.3f} to "
             f"{table['tv'].max():.3f} over {len(table)} layers, against "
             f"{table['tv_uniform'].median():.3f} for a perfectly uniform hash at the same "
             "tokens (its sampling noise)."]
    if far.empty:
        lines.append(f"Every layer is within {FAR_FROM_UNIFORM:g}x of that floor: as uniform "
                     "as the token count can show, the paper's Figure 4 finding.")
    else:
        lines.append(f"{len(far)} of {len(table)} layers are more than {FAR_FROM_UNIFORM:g}x "
                     f"the floor, so not uniform; the worst, {worst['layer']}, is at TV "
                     f"{worst['tv']:.3f} with {worst['unused']:.0%} of its buckets never hit.")
    return lines


def markdown_lines(table: pd.DataFrame) -> list[str]:
    """The verdict, then one table row per layer."""
    lines = [" ".join(verdict(table)), "",
             "| layer | tables | buckets | tokens per table | never hit | TV from uniform | "
             "uniform hash's TV |", "| :--- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {row.layer} | {row.tables} | {row.buckets} | {row.tokens:,.0f} | "
              f"{row.unused:.1%} | {row.tv:.3f} | {row.tv_uniform:.3f} |"
              for row in table.itertuples()]
    return [*lines, "", "TV = 1/2 sum over a table's buckets of |share of hits - 1/buckets|, "
                    "averaged over the layer's tables and the cell's seeds; a uniform hash's TV "
                    "is sqrt(buckets / (2 pi tokens)), its sampling noise."]


def histograms(buckets: Mapping[str, Mapping[str, np.ndarray]], runs: pd.DataFrame, cell: str,
               study: str, color: str = "C0"):
    """Panels, one per layer: each table's buckets sorted from most to least hit, hits relative
    to the uniform share (median over tables, band 10-90%), beside a uniform hash's at the same
    tokens (drawn with a fixed seed). Where the line stops, the rest were never hit."""
    import seaborn as sns
    from matplotlib.figure import Figure

    counts = _pooled(buckets, runs, cell)
    layers = list(counts)[:MAX_PANELS]
    columns = min(3, len(layers))
    rows = math.ceil(len(layers) / columns)
    rng = np.random.default_rng(0)
    with sns.axes_style("whitegrid"):
        fig = Figure(figsize=(4.2 * columns, 3.0 * rows + 0.6), layout="constrained")
        axes = list(fig.subplots(rows, columns, squeeze=False, sharey=True).ravel())
        for ax, layer in zip(axes, layers, strict=False):
            tables = counts[layer]  # (R * K, n)
            n = tables.shape[1]
            tokens = round(float(tables.sum(axis=1).mean()))
            uniform = rng.multinomial(tokens, np.full(n, 1 / n), size=min(len(tables), 32))
            x = (np.arange(n) + 0.5) / n  # share of the table's buckets, most hit first
            for sample, style, label in ((tables, dict(color=color, linewidth=1.8), "this layer"),
                                         (uniform, dict(color="0.15", linewidth=1.2,
                                                        linestyle="--"), "uniform hash")):
                relative = -np.sort(-sample * n / sample.sum(axis=1, keepdims=True), axis=1)
                low, mid, high = np.quantile(relative, [0.1, 0.5, 0.9], axis=0)
                hit = mid > 0  # log scale: a bucket never hit ends the line
                ax.plot(x[hit], mid[hit], label=label, **style)
                ax.fill_between(x[hit], np.maximum(low[hit], 1e-3), high[hit], alpha=0.2,
                                color=style["color"], linewidth=0)
            unused = float((tables == 0).mean())
            ax.set_title(f"{layer} ({unused:.0%} never hit)", fontsize=10)
            ax.set_yscale("log")
            ax.set_xlim(0, 1)
            ax.set_xticks([0, 0.25, 0.5, 0.75])  # no 1.0: it would touch the next panel's 0
            ax.set_xlabel("share of buckets, most hit first")
        for ax in axes[len(layers):]:
            ax.set_visible(False)
        for row in range(rows):
            axes[row * columns].set_ylabel("hits / uniform share")
        axes[0].legend(fontsize=8, loc="upper right")
        fig.suptitle(f"{study}: bucket hits of {cell} (Figure 4; seeds pooled; median over "
                     "tables, band 10-90%)")
    return fig


def figure_cell(cells: pd.DataFrame, buckets: Mapping, runs: pd.DataFrame) -> str | None:
    """The best cell (lowest mean validation perplexity) that has hit counts."""
    with_counts = {cell for cell in runs["cell"].dropna().unique()
                   if any(run in buckets for run in _run_ids(runs, cell))}
    ranked = cells[cells["cell"].isin(with_counts)].sort_values("val_ppl.mean")
    return None if ranked.empty else str(ranked["cell"].iloc[0])


def _run_ids(runs: pd.DataFrame, cell: str) -> list[str]:
    mine = runs[(runs["cell"] == cell) & (runs["status"] == FINISHED)]
    return list(mine["run_id"])


def _pooled(buckets: Mapping[str, Mapping[str, np.ndarray]], runs: pd.DataFrame,
            cell: str) -> dict[str, np.ndarray]:
    """layer -> (R * K, n) counts of the cell's finished runs, layers in the model's order."""
    pooled: dict[str, list[np.ndarray]] = {}
    for run_id in _run_ids(runs, cell):
        for layer, counts in buckets.get(run_id, {}).items():
            pooled.setdefault(layer, []).append(np.asarray(counts, dtype=np.int64))
    from harness.report.plots import layer_key

    return {layer: np.concatenate(pooled[layer]) for layer in sorted(pooled, key=layer_key)}
