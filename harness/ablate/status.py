"""`harness status FILE`: every cell of a study and where it stands, from the storage alone."""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from harness.ablate.attrs import CELL, DEATHS, REASON, RUN_ID
from harness.ablate.cells import cells, is_finished, total_cells
from harness.ablate.storage import Heartbeat, open_storage
from harness.ablate.study_file import Study
from harness.errors import ConfigError
from harness.runs.records import cell_label
from harness.tracking.stores import redact


@dataclass(frozen=True)
class CellStatus:
    cell: str
    state: str  # COMPLETE, PRUNED, FAIL (for good), RETRY (its last attempt died or raised:
    # the next worker retries it), RUNNING, WAITING (a queued retry) or "not started"
    trial: int | None
    values: tuple[float, ...] | None
    run_id: str | None
    reason: str | None
    deaths: int = 0  # attempts whose worker died


def study_status(study: Study, storage_url: str) -> list[CellStatus]:
    storage = open_storage(storage_url, Heartbeat())
    try:
        optuna_study = optuna.load_study(study_name=study.name, storage=storage)
    except KeyError:
        raise ConfigError("name", f"no study named {study.name!r} in {redact(storage_url)}; "
                          "allowed: a study started with `harness ablate`") from None
    rows = []
    for cell in cells(optuna_study):
        trial = cell.trial
        state = trial.state.name
        if trial.state.name == "FAIL" and not is_finished(trial):
            state = "RETRY"
        rows.append(CellStatus(
            cell=trial.user_attrs.get(CELL) or cell_label(trial.params),
            state=state, trial=trial.number,
            values=tuple(trial.values) if trial.values else None,
            run_id=trial.user_attrs.get(RUN_ID), reason=trial.user_attrs.get(REASON),
            deaths=int(trial.user_attrs.get(DEATHS, 0))))
    if study.is_grid:  # cells no worker has claimed yet
        started = {row.cell for row in rows}
        rows += [CellStatus(label, "not started", None, None, None, None)
                 for label in map(cell_label, study.cells()) if label not in started]
    missing = total_cells(study) - len(rows)
    rows += [CellStatus("(not sampled yet)", "not started", None, None, None, None)] * max(
        missing, 0)
    return rows


def format_status(study: Study, rows: list[CellStatus]) -> str:
    done = sum(r.state in ("COMPLETE", "PRUNED", "FAIL") for r in rows)
    objectives = ", ".join(o.metric for o in study.objectives)
    lines = [f"study {study.name}: {done}/{len(rows)} cells finished; values = {objectives}",
             f"{'cell':<44} {'state':<11} {'trial':>5}  {'values':<20} run"]
    for r in rows:
        values = ", ".join(f"{v:.4g}" for v in r.values) if r.values else "-"
        trial = "-" if r.trial is None else str(r.trial)
        lines.append(f"{r.cell:<44} {r.state:<11} {trial:>5}  {values:<20} {r.run_id or '-'}")
        if r.reason:
            lines.append(f"{'':<44} reason: {r.reason}")
        if r.deaths:
            lines.append(f"{'':<44} retried after {r.deaths} dead worker(s)")
    return "\n".join(lines)
