"""One colour per cell, the same in every figure of a report: a reader follows a cell from the
loss curves to the bucket usage to the throughput bars by its colour alone.

The mapping depends only on the study's cell order (the table's row order), so every plot that
is handed the same cells, or builds the mapping itself from the same runs, agrees.
"""

from __future__ import annotations

from collections.abc import Iterable

DISTINCT = 10  # "deep" has ten colours; more cells than that take evenly spaced hues


def cell_colors(cells: Iterable[str]) -> dict[str, str]:
    """cell -> hex colour, in the order given (duplicates kept at their first place)."""
    import seaborn as sns
    from matplotlib.colors import to_hex

    order = list(dict.fromkeys(cells))
    palette = sns.color_palette("husl" if len(order) > DISTINCT else "deep", len(order))
    return {cell: to_hex(color) for cell, color in zip(order, palette, strict=True)}


def study_colors(runs) -> dict[str, str]:
    """The mapping of a study from its per-run frame (`cells.per_run`), in its cell order."""
    return cell_colors(runs["cell"])
