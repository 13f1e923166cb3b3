"""From a study's runs table (the layout of `mlflow.search_runs`) to one row per run and one row
per cell: the cell params without the seed, its seeds averaged.

Only FINISHED runs enter the averages. A FAILED run stopped on an error and a KILLED one was
pruned (or lost its worker) part-way, so their last values are not comparable; they are counted
and explained in footnotes instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.report.paper import same_value
from harness.report.quantities import derive
from harness.report.reader import (
    PARAMS,
    TAGS,
    metric_column,
    metric_names,
    param_column,
    tag_column,
)
from harness.runs import records

FINISHED = "FINISHED"
_SEED = "seed"  # the seed's key among a cell's params (the study's seeds), not an axis


@dataclass(frozen=True)
class StudyInfo:
    """What the study's parent run says about it; inferred from its trials if it has none."""

    name: str
    description: str
    axes: tuple[tuple[str, tuple[Any, ...]], ...]  # (name, grid values; () for a search param)
    is_search: bool
    seeds: tuple[int, ...]
    steps: int | None
    val_every: int | None
    objectives: str  # "val_loss:minimize,..."
    parent_run_id: str | None
    budget: str = "steps"  # the resource every run held fixed (records.BUDGET_KINDS)
    budget_amount: float | None = None  # of flops or seconds
    sweeps: tuple[dict[str, Any], ...] = ()  # a tuned comparison's sweeps: arm, values, losses

    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.axes)


def parents(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[_tag(runs, records.ROLE) == records.ROLE_STUDY]


def trials(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[_tag(runs, records.ROLE) == records.ROLE_TRIAL]


def study_info(name: str, runs: pd.DataFrame) -> StudyInfo:
    parent = parents(runs)
    if parent.empty:
        return _inferred_info(name, trials(runs))
    row = parent.sort_values("start_time").iloc[-1]
    param = _getter(row, PARAMS)
    search = json.loads(param("study.search") or "null")
    if search:
        axes = tuple((p["name"], ()) for p in search.get("params", []))
    else:
        axes = tuple((n, tuple(v)) for n, v in json.loads(param("study.axes") or "[]"))
    return StudyInfo(
        name=name, description=_getter(row, TAGS)(records.NOTE) or "",
        axes=axes, is_search=bool(search), seeds=tuple(json.loads(param("study.seeds") or "[]")),
        steps=_int(param("study.steps")), val_every=_int(param("study.val_every")),
        objectives=param("study.objectives") or "", parent_run_id=str(row["run_id"]),
        budget=param("study.budget") or "steps", budget_amount=_float(param("study.budget_amount")),
        sweeps=tuple(json.loads(param("study.sweeps") or "[]")))


def _inferred_info(name: str, runs: pd.DataFrame) -> StudyInfo:
    names: dict[str, None] = {}
    for params in _cell_params(runs):
        names.update(dict.fromkeys(k for k in params if k != _SEED))
    given = pd.to_numeric(_tag(runs, records.SEED), errors="coerce").dropna()
    seeds = sorted({int(s) for s in given})
    return StudyInfo(name=name, description="", axes=tuple((n, ()) for n in names),
                     is_search=False, seeds=tuple(seeds), steps=None, val_every=None,
                     objectives="", parent_run_id=None)


def per_run(runs: pd.DataFrame, info: StudyInfo) -> pd.DataFrame:
    """One row per trial run: identity (cell, seed, kind, status, reason) and every quantity."""
    runs = trials(runs)
    params = _cell_params(runs, info.axis_names)
    kinds = _tag(runs, records.KIND).fillna(runs.get(param_column("model.kind"), pd.Series(
        index=runs.index, dtype=object)))  # older runs: the config's model.kind param
    reasons = _tag(runs, records.FAILURE_REASON).fillna(_tag(runs, records.STOP_REASON))
    out = pd.DataFrame({
        "run_id": runs["run_id"],
        "trial": pd.to_numeric(_tag(runs, records.TRIAL), errors="coerce"),
        "status": runs["status"],
        "reason": reasons.fillna(""),
        "seed": [p.get(_SEED) for p in params],
        "kind": kinds,
        "start_time": runs.get("start_time"),
        "end_time": runs.get("end_time"),
    }, index=runs.index)
    for axis in info.axis_names:
        out[axis] = [p.get(axis) for p in params]
    out["cell"] = [cell_label(p, info.axis_names) for p in params]
    out = pd.concat([out, derive(runs, kinds)], axis=1)
    order = [(_order(p, info, t), _number(p.get(_SEED)))
             for p, t in zip(params, out["trial"], strict=True)]
    return out.iloc[sorted(range(len(out)), key=order.__getitem__)].reset_index(drop=True)


def layer_usage(runs: pd.DataFrame, per_run_frame: pd.DataFrame) -> pd.DataFrame:
    """Bucket usage per memory layer of each finished run (buckets/<layer>/<stat> metrics):
    columns cell, seed, layer, unused_share, entropy."""
    found = [(*layer, metric_column(name)) for name in metric_names(runs.columns)
             if (layer := records.bucket_layer(name))]
    columns = ["cell", "seed", "layer", "unused_share", "entropy"]
    if not found:
        return pd.DataFrame(columns=columns)
    identity = per_run_frame.set_index("run_id")[["cell", "seed", "status"]]
    rows = []
    for _, run in trials(runs).iterrows():
        if run["run_id"] not in identity.index:
            continue
        who = identity.loc[run["run_id"]]
        if who["status"] != FINISHED:
            continue
        stats: dict[str, dict[str, float]] = {}
        for layer, stat, column in found:
            stats.setdefault(layer, {})[stat] = run[column]
        rows += [(who["cell"], who["seed"], layer, v.get("unused_share", np.nan),
                  v.get("entropy", np.nan)) for layer, v in stats.items()]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.dropna(subset=["unused_share", "entropy"], how="all").reset_index(drop=True)


def cell_label(params: dict[str, Any], axes: tuple[str, ...]) -> str:
    """`chunk_size=4` as records.cell_label names runs, floats shortened: the seed left out."""
    names = axes or tuple(k for k in params if k != _SEED)
    return records.cell_label(params, names, show=format_value) if names else "all runs"


def format_value(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return str(value)


def aggregate(runs: pd.DataFrame, axes: tuple[str, ...], keys: list[str]) -> pd.DataFrame:
    """One row per cell: its axis values, kind, run counts, and mean, se, n of each quantity."""
    columns = ["cell", "kind", "n_runs", "n_finished", *axes,
               *(f"{key}.{stat}" for key in keys for stat in ("mean", "se", "n"))]
    rows = []
    for cell, group in runs.groupby("cell", sort=False):
        finished = group[group["status"] == FINISHED]
        row: dict[str, Any] = {"cell": cell, "kind": _first(group["kind"]),
                               "n_runs": len(group), "n_finished": len(finished)}
        row.update({axis: group[axis].iloc[0] for axis in axes})
        for key in keys:
            values = finished[key].dropna().to_numpy(dtype=float)
            row[f"{key}.mean"] = values.mean() if len(values) else np.nan
            row[f"{key}.se"] = standard_error(values)
            row[f"{key}.n"] = len(values)
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def standard_error(values: np.ndarray) -> float:
    """Standard error of the mean over seeds; NaN below two values (no spread to measure)."""
    if len(values) < 2:
        return math.nan
    if np.ptp(values) == 0:  # equal values (a cell's timing on each of its runs): exactly none,
        return 0.0  # not the rounding residue of their mean
    return float(values.std(ddof=1) / math.sqrt(len(values)))


def _order(params: dict[str, Any], info: StudyInfo, trial: float) -> tuple[float, ...]:
    """Grid cells in the study file's order of axis values; searched points by trial number."""
    if info.is_search or not any(values for _, values in info.axes):
        return (_number(trial),)
    key = []
    for name, values in info.axes:
        value = params.get(name)
        key.append(next((i for i, v in enumerate(values) if same_value(v, value)), len(values)))
    return tuple(float(k) for k in key)


def _number(value: Any) -> float:
    """A sort key: numbers first, in order; anything else after them."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.inf
    return math.inf if math.isnan(number) else number


def _cell_params(runs: pd.DataFrame, axes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The trial's cell params (a JSON tag); parsed from its `k=v,...` label for runs that lack
    the tag, with short keys mapped back to the study's axis names."""
    full = {name.split(".")[-1]: name for name in axes}
    out = []
    for raw, label in zip(_tag(runs, records.CELL_PARAMS), _tag(runs, records.CELL), strict=True):
        if isinstance(raw, str) and raw:
            out.append(json.loads(raw))
        elif isinstance(label, str) and label:
            pairs = (part.split("=", 1) for part in label.split(",") if "=" in part)
            out.append({full.get(k, k): _scalar(v) for k, v in pairs})
        else:
            out.append({})
    return out


def _scalar(text: str) -> Any:
    """`4` -> 4, `0.001` -> 0.001, `gelu` -> "gelu": what the JSON tag would have held."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _tag(runs: pd.DataFrame, name: str) -> pd.Series:
    column = runs.get(tag_column(name))
    if column is None:
        return pd.Series(None, index=runs.index, dtype=object)
    return column.astype(object).where(column.notna(), None)


def _getter(row: pd.Series, prefix: str):
    def get(name: str) -> str | None:
        value = row.get(prefix + name)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(
            value)

    return get


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _first(values: pd.Series) -> Any:
    present = values.dropna()
    return present.iloc[0] if len(present) else None
