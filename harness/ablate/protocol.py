"""Tune, then compare: every arm first gets a learning-rate sweep of its own, extended past an edge
of what was tried while the best rate sits on it; then every arm runs at its own best rate, over
many seeds, under each budget of the comparison (equal FLOPs, equal seconds, ...).

    name: fair-dense-vs-memory
    kind: tune-then-compare
    base: {set: {data.tokenizer: bpe}}
    arms: {dense: {preset: dense-nano}, memoryformer: {preset: memoryformer-nano}}
    conditions: {data.tokenizer: [bpe, byte]}       # crossed with every arm, tuned apart
    tune: {values: [3.0e-4, 1.0e-3, 3.0e-3], budget: {steps: 300}, seeds: [0], extend: 2}
    compare: {budgets: [{flops: 3.0e12}, {seconds: 30}], seeds: [0, 1, 2, 3, 4]}

Each phase is an ordinary grid study, so it resumes, spreads over workers and reports like one:
`NAME-tune-ARM-R` sweeps arm ARM (round R = 0, 1, ... its extensions) over `tune.param` (default
optim.lr) and every condition; `NAME-KIND` (KIND = flops, seconds, steps, or KIND-2 for a second
budget of a kind) compares the arms at their tuned rates, one cell per arm and condition. What a
phase needs of the one before it is read from the storage, so every worker derives the same.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.ablate.cells import Cell
from harness.ablate.study_file import Study, load_study, parse_study, read_study_file
from harness.errors import ConfigError
from harness.validate import check_int

PROTOCOL_KEYS = ("name", "description", "kind", "base", "arms", "conditions", "tune", "compare",
                 "checkpoint_dir")
KIND = "tune-then-compare"


@dataclass(frozen=True)
class Sweep:
    """One arm's sweep in one condition: every value tried, its mean loss, the best."""

    arm: str  # the compare phase's arm label (arm, or arm@condition)
    values: tuple[float, ...]  # sorted
    losses: tuple[float, ...]  # mean objective over the tuning seeds, per value
    best: float

    @property
    def bracketed(self) -> bool:
        """The best value has a worse one tried on each side: an optimum, not an edge."""
        return self.values[0] < self.best < self.values[-1]


@dataclass(frozen=True)
class Protocol:
    raw: dict[str, Any]  # the file, validated: each phase is parsed from it
    name: str
    arms: tuple[str, ...]
    conditions: tuple[tuple[str, tuple[Any, ...]], ...]
    param: str
    values: tuple[float, ...]
    extend: int

    @property
    def checkpoint_dir(self) -> str | None:
        return self.raw.get("checkpoint_dir")

    def first_phases(self) -> list[Study]:
        """Each arm's first sweep and the compare studies (their rates not yet known)."""
        return [*(self.tune_study(arm, 0, self.values) for arm in self.arms),
                *self.compare_studies(self._untuned())]

    def _untuned(self) -> list[Sweep]:
        return [Sweep(_label(a, c), self.values, (0.0,) * len(self.values), self.values[0])
                for a, c in self._cells()]

    def tune_study(self, arm: str, round_: int, values: tuple[float, ...]) -> Study:
        raw, tune = self.raw, self.raw["tune"]
        return parse_study(_drop_none({
            "name": f"{self.name}-tune-{arm}-{round_}", "base": raw.get("base"),
            "description": f"{self.name}: learning-rate sweep of arm {arm}, round {round_}",
            "budget": tune["budget"], "arms": {arm: raw["arms"][arm]},
            "axes": {self.param: list(values), **{k: list(v) for k, v in self.conditions}},
            "seeds": tune.get("seeds", [0]), "checkpoint_dir": raw.get("checkpoint_dir")}))

    def compare_studies(self, sweeps: list[Sweep]) -> list[Study]:
        best = {s.arm: s.best for s in sweeps}
        arms = {}
        for arm, condition in self._cells():
            spec = dict(self.raw["arms"][arm])
            label = _label(arm, condition)
            spec["set"] = {**(spec.get("set") or {}), **condition, self.param: best[label]}
            arms[label] = spec
        studies = []
        for number, budget in enumerate(self.raw["compare"]["budgets"]):
            kind = next(iter(set(budget) - {"val_every", "validations"}))
            earlier = sum(kind in b for b in self.raw["compare"]["budgets"][:number])
            name = f"{self.name}-{kind}" + (f"-{earlier + 1}" if earlier else "")
            study = parse_study(_drop_none({
                "name": name, "base": self.raw.get("base"), "budget": budget, "arms": arms,
                "description": _description(self, kind, sweeps),
                "seeds": self.raw["compare"].get("seeds", [0, 1, 2, 3, 4]),
                "checkpoint_dir": self.raw.get("checkpoint_dir")}))
            studies.append(study)
        return studies

    def _cells(self) -> list[tuple[str, dict[str, Any]]]:
        """(arm, condition values) of every compare cell."""
        names = [k for k, _ in self.conditions]
        combos = list(itertools.product(*[v for _, v in self.conditions])) if names else [()]
        return [(arm, dict(zip(names, combo, strict=True)))
                for arm in self.arms for combo in combos]


def parse_protocol(raw: dict[str, Any]) -> Protocol:
    """Validate a tune-then-compare file: its first round and every compare study build."""
    unknown = sorted(set(raw) - set(PROTOCOL_KEYS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key of a {KIND} study; allowed: "
                          f"{', '.join(PROTOCOL_KEYS)}")
    for key in ("arms", "tune", "compare"):
        if not isinstance(raw.get(key), dict) or not raw[key]:
            raise ConfigError(key, f"{raw.get(key)!r}; allowed: a mapping (see "
                              "ablations/fair-dense-vs-memory.yaml)")
    tune, compare = raw["tune"], raw["compare"]
    values = tuple(sorted(float(v) for v in tune.get("values") or []))
    if len(values) < 2 or values[0] <= 0:
        raise ConfigError("tune.values", f"{tune.get('values')!r}; allowed: two or more "
                          "positive values on a log grid, e.g. [3.0e-4, 1.0e-3, 3.0e-3]")
    budgets = compare.get("budgets")
    if not isinstance(budgets, list) or not budgets:
        raise ConfigError("compare.budgets", f"{budgets!r}; allowed: a list of budgets such as "
                          "[{flops: 3.0e12}, {seconds: 30}]")
    extend = tune.get("extend", 2)
    check_int("tune.extend", extend, 0)
    conditions = tuple((k, tuple(v)) for k, v in (raw.get("conditions") or {}).items())
    protocol = Protocol(raw, str(raw.get("name")), tuple(raw["arms"]), conditions,
                        str(tune.get("param", "optim.lr")), values, extend)
    for arm in protocol.arms:
        protocol.tune_study(arm, 0, values).check()
    for study in protocol.compare_studies(protocol._untuned()):
        study.check()
    return protocol


def next_values(sweeps: list[Sweep], values: tuple[float, ...]) -> tuple[float, ...]:
    """The values beyond each edge some condition's best sits on (one grid step further)."""
    ratio = (values[-1] / values[0]) ** (1 / (len(values) - 1))
    tried = sorted({v for s in sweeps for v in s.values})
    more = set()
    for sweep in sweeps:
        if sweep.best == tried[0]:
            more.add(tried[0] / ratio)
        if sweep.best == tried[-1]:
            more.add(tried[-1] * ratio)
    return tuple(sorted(_round(v) for v in more))


def sweeps_of(arm: str, protocol: Protocol, finished: list[list[Cell]]) -> list[Sweep]:
    """Each condition's sweep of `arm`, from the cells of its tuning rounds so far."""
    names = [k for k, _ in protocol.conditions]
    scores: dict[tuple, dict[float, list[float]]] = {}
    for cell in (c for cells in finished for c in cells):
        trial = cell.trial
        if trial.values is None:
            continue  # failed or pruned: no value to rank
        condition = tuple(trial.params.get(n) for n in names)
        scores.setdefault(condition, {}).setdefault(float(trial.params[protocol.param]),
                                                    []).append(trial.values[0])
    sweeps = []
    for condition, by_value in sorted(scores.items(), key=lambda kv: repr(kv[0])):
        tried = tuple(sorted(by_value))
        losses = tuple(sum(by_value[v]) / len(by_value[v]) for v in tried)
        best = tried[min(range(len(tried)), key=lambda i: losses[i])]
        label = _label(arm, dict(zip(names, condition, strict=True)))
        sweeps.append(Sweep(label, tried, losses, best))
    return sweeps


def _label(arm: str, condition: dict[str, Any]) -> str:
    return "@".join([arm, *(str(v) for v in condition.values())])


def _round(value: float) -> float:
    """4 significant digits: extension values that read well and repeat exactly."""
    return float(f"{value:.4g}")


def _description(protocol: Protocol, kind: str, sweeps: list[Sweep]) -> str:
    parts = [f"{protocol.name}: every arm at its own tuned {protocol.param}, equal {kind}."]
    for sweep in sweeps:
        mark = "" if sweep.bracketed else " (NOT bracketed: the best is at an edge of the sweep)"
        parts.append(f"{sweep.arm}: {protocol.param} {sweep.best:g}{mark}")
    return " ".join(parts)


def _drop_none(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if v is not None}


def load(path: Path | str, seeds: tuple[int, ...] | None = None) -> Study | Protocol:
    """A study file: an ordinary study, or a tune-then-compare protocol (`kind: KIND`).
    `seeds` replace the study's seeds, or the protocol's compare seeds."""
    raw = read_study_file(path)
    if not (isinstance(raw, dict) and raw.get("kind") == KIND):
        if isinstance(raw, dict) and "kind" in raw:
            raise ConfigError("kind", f"{raw['kind']!r}; allowed: {KIND} (or no kind: a study)")
        study = load_study(path)
        return study.with_seeds(seeds) if seeds else study
    if seeds:
        raw = {**raw, "compare": {**(raw.get("compare") or {}), "seeds": list(seeds)}}
    return parse_protocol(raw)
