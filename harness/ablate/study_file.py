"""Study files (`ablations/*.yaml`): a base preset, a budget, and either a grid or a search.

    name: expansion-bits
    description: Table 5 at CPU size
    base: {preset: memoryformer-nano, set: {data.tokenizer: byte}}
    budget: {steps: 300, val_every: 50}        # or tokens: 1_000_000, flops: 3.0e12, seconds: 60
    axes: {model.expansion_bits: [0, 1, 2, 3]}  # a grid: every combination x every seed, once
    seeds: [0, 1]
    objectives: [val_loss]

A tuning study has `search` instead of `axes`:

    search:
      sampler: tpe                              # tpe | nsga2 | random
      n_trials: 20
      params:
        optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
        model.chunk_size: {choices: [4, 8]}
    pruner: median                              # none | median | hyperband

The whole file is validated, and every cell's run config built, before anything runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from harness.ablate.arms import Arm, parse_arms
from harness.errors import ConfigError
from harness.runs.config import SECTIONS, RunConfig, build_run_config
from harness.runs.records import FLOPS_BUDGET, OBJECTIVES, SECONDS_BUDGET
from harness.validate import check_choice, check_int, check_number

SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("none", "median", "hyperband")
DIRECTIONS = ("minimize", "maximize")
TOP_KEYS = ("name", "description", "base", "budget", "arms", "axes", "search", "seeds",
            "objectives",
            "pruner", "evaluate", "checkpoint_dir")


@dataclass(frozen=True)
class Objective:
    metric: str  # a name of records.OBJECTIVES, which says where a run records it
    direction: str


@dataclass(frozen=True)
class SearchParam:
    name: str  # "section.field"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Search:
    sampler: str
    n_trials: int
    params: tuple[SearchParam, ...]


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    preset: str
    overrides: tuple[tuple[str, Any], ...]  # ("section.field", value), applied to every cell
    steps: int
    val_every: int
    axes: tuple[tuple[str, tuple[Any, ...]], ...]  # grid axes; "preset" or "section.field"
    search: Search | None
    seeds: tuple[int, ...]
    objectives: tuple[Objective, ...]
    pruner: str
    evaluate: tuple[str, ...]  # evaluation tasks run at the end of each trial
    # Where trials write checkpoints (a path every worker can read, or an fsspec URL): how the
    # study runs, not what it is, so not part of its digest. `--checkpoint-dir` overrides it.
    checkpoint_dir: str | None = None
    # The resource every run holds fixed: "steps" (steps and tokens budgets: `steps` above),
    # "flops" or "seconds" (`budget_amount` of it, the same for every cell, so each cell runs
    # its own number of steps). `validations`: how often a flops-budget run validates.
    budget: str = "steps"
    budget_amount: float | None = None
    validations: int = 0
    # Named arms (arms.py): the grid's first axis, `arm`, runs each with its own preset and
    # settings (a matched dense baseline, a tuned learning rate).
    arms: tuple[Arm, ...] = ()
    # A compare phase's arms were tuned (protocol.py): each arm's sweep, for the report. Derived
    # from the tuning phases' results, so not part of the digest.
    sweeps: tuple[Any, ...] = ()

    @property
    def is_grid(self) -> bool:
        return self.search is None

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def cells(self) -> list[dict[str, Any]]:
        """Every grid point with its seed, in a fixed order: what the grid sampler enumerates."""
        names = [name for name, _ in self.axes] + ["seed"]
        values = [list(v) for _, v in self.axes] + [list(self.seeds)]
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]

    def grid_space(self) -> dict[str, list[Any]]:
        return {**{name: list(values) for name, values in self.axes}, "seed": list(self.seeds)}

    def run_config(self, params: dict[str, Any]) -> RunConfig:
        """The RunConfig of one cell (or one sampled trial): base, then the cell's values."""
        preset = params.get("preset", self.preset)
        values = dict(self.overrides)
        if "arm" in params:
            arm = next(a for a in self.arms if a.label == params["arm"])
            preset = arm.preset
            values.update(arm.values)
        values.update({"train.max_steps": self.steps, "train.val_every": self.val_every,
                       **self._budget_values()})
        # the cell's own values last: an axis may vary the budget (train.flops_budget: [...])
        values.update({k: v for k, v in params.items() if k not in ("preset", "seed", "arm")})
        values["train.seed"] = params.get("seed", self.seeds[0])
        return build_run_config(preset, values=values)

    def _budget_values(self) -> dict[str, Any]:
        if self.budget == "flops":
            return {FLOPS_BUDGET: self.budget_amount,
                    "train.validations": self.validations}
        if self.budget == "seconds":
            return {SECONDS_BUDGET: self.budget_amount}
        return {}

    def digest(self) -> str:
        """Identity of the definition: a study name reused with other cells is refused."""
        body = asdict(replace(self, description="", checkpoint_dir=None))
        del body["sweeps"]
        del body["checkpoint_dir"]  # digests of studies made before the field existed hold
        if self.budget == "steps":  # so do those of step budgets, from before budgets had kinds
            for key in ("budget", "budget_amount", "validations"):
                del body[key]
        if not self.arms:
            del body["arms"]
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()

    def with_seeds(self, seeds: tuple[int, ...]) -> Study:
        return replace(self, seeds=tuple(_seeds(list(seeds))))

    def check(self) -> None:
        """Build every cell's config now, so a bad combination fails before any trial starts."""
        if self.is_grid:
            for cell in self.cells():
                _cell_config(self, cell)
        else:
            assert self.search is not None
            for param in self.search.params:  # both ends of each range, one at a time
                for value in _corners(param):
                    _cell_config(self, {param.name: value})


def load_study(path: Path | str) -> Study:
    study = parse_study(read_study_file(path))
    study.check()
    return study


def read_study_file(path: Path | str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("study", f"{path} is not a file; allowed: a study YAML such as "
                          "ablations/quickstart.yaml")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError("study", f"{path} is not valid YAML: {error}") from None


def parse_study(raw: Any) -> Study:
    if not isinstance(raw, dict):
        raise ConfigError("study", "the file must be a mapping; allowed keys: "
                          f"{', '.join(TOP_KEYS)}")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key; allowed: {', '.join(TOP_KEYS)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        raise ConfigError("name", f"{name!r}; allowed: a non-empty name without spaces or slashes")
    base = _mapping(raw.get("base"), "base", ("preset", "set"))
    overrides = tuple(sorted(_mapping(base.get("set") or {}, "base.set", None).items()))
    for key, _ in overrides:
        _check_field_key(f"base.set.{key}", key)
    axes_raw = _mapping(raw.get("axes") or {}, "axes", None)
    search = _search(raw.get("search"))
    arms = parse_arms(raw.get("arms"), overrides)
    if arms and search is not None:
        raise ConfigError("arms", "arms are the axis of a grid; allowed: arms with axes, or a "
                          "search without arms")
    if bool(axes_raw or arms) == (search is not None):
        raise ConfigError("axes", "a study has exactly one of `axes` (a grid) or `search` "
                          "(tuning); allowed: one of them")
    axes = tuple((key, _axis_values(key, values)) for key, values in axes_raw.items())
    if arms:
        if "preset" in axes_raw:
            raise ConfigError("axes.preset", "each arm names its preset; allowed: arms, or a "
                              "preset axis, not both")
        axes = (("arm", tuple(a.label for a in arms)), *axes)
    budget = _budget(raw.get("budget"), str(base.get("preset")), overrides)
    objectives = _objectives(raw.get("objectives", ["val_loss"]))
    pruner = raw.get("pruner", "none")
    check_choice("pruner", pruner, PRUNERS)
    if pruner != "none" and (search is None or len(objectives) > 1):
        raise ConfigError("pruner", f"{pruner!r} needs a single-objective `search` study (a grid "
                          "runs every cell in full); allowed: none")
    evaluate = raw.get("evaluate") or []
    if not isinstance(evaluate, list) or not all(isinstance(t, str) for t in evaluate):
        raise ConfigError("evaluate", f"{evaluate!r}; allowed: a list of task names")
    return Study(
        name=name, description=str(raw.get("description", "")), preset=str(base.get("preset")),
        overrides=overrides, steps=budget.steps, val_every=budget.val_every, axes=axes,
        search=search, budget=budget.kind, budget_amount=budget.amount,
        validations=budget.validations, arms=arms,
        seeds=tuple(_seeds(raw.get("seeds", [0]))), objectives=objectives, pruner=pruner,
        evaluate=tuple(evaluate), checkpoint_dir=_checkpoint_dir(raw.get("checkpoint_dir")),
    )


def _checkpoint_dir(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise ConfigError("checkpoint_dir", f"{value!r}; allowed: a path or an fsspec URL such as "
                      "s3://bucket/prefix")


def _mapping(value: Any, where: str, allowed: tuple[str, ...] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(where, f"{value!r} is not a mapping"
                          + (f"; allowed keys: {', '.join(allowed)}" if allowed else ""))
    if allowed is not None:
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}",
                              f"unknown key; allowed: {', '.join(allowed)}")
    return value


def _check_field_key(where: str, key: Any) -> None:
    """`preset` or `section.field` naming a real config field."""
    if key == "preset":
        return
    section, _, name = str(key).partition(".")
    if section not in SECTIONS:
        raise ConfigError(where, f"unknown section {section!r}; allowed: preset, "
                          + ", ".join(f"{s}.FIELD" for s in SECTIONS))
    from dataclasses import fields

    allowed = [f.name for f in fields(SECTIONS[section])]
    if name not in allowed:
        raise ConfigError(where, f"unknown field {name!r} of {section}; allowed: "
                          + ", ".join(allowed))


def _axis_values(key: str, values: Any) -> tuple[Any, ...]:
    _check_field_key(f"axes.{key}", key)
    if key == "train.seed":
        raise ConfigError("axes.train.seed", "seeds are their own key; allowed: seeds: [0, 1]")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"axes.{key}", f"{values!r}; allowed: a non-empty list of values")
    values = [_number(v) for v in values]
    for value in values:
        if not (value is None or isinstance(value, str | int | float | bool)):
            raise ConfigError(f"axes.{key}", f"{value!r}; allowed: numbers, strings, booleans")
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(f"axes.{key}", f"{values!r} repeats a value; allowed: distinct values")
    return tuple(values)


def _search(raw: Any) -> Search | None:
    if raw is None:
        return None
    raw = _mapping(raw, "search", ("sampler", "n_trials", "params"))
    sampler = raw.get("sampler", "tpe")
    check_choice("search.sampler", sampler, SAMPLERS)
    check_int("search.n_trials", raw.get("n_trials"), 1)
    params = []
    for key, spec in _mapping(raw.get("params"), "search.params", None).items():
        _check_field_key(f"search.params.{key}", key)
        spec = _mapping(spec, f"search.params.{key}", ("low", "high", "log", "step", "choices"))
        if "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"]:
                raise ConfigError(f"search.params.{key}.choices", "allowed: a non-empty list")
            params.append(SearchParam(key, choices=tuple(spec["choices"])))
            continue
        low, high = spec.get("low"), spec.get("high")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
            raise ConfigError(f"search.params.{key}", f"low={low!r}, high={high!r}; allowed: "
                              "numbers low < high, or choices: [...]")
        if not low < high or (spec.get("log") and low <= 0):
            raise ConfigError(f"search.params.{key}", f"low={low}, high={high}; allowed: "
                              "low < high (and low > 0 with log: true)")
        params.append(SearchParam(key, low=low, high=high, log=bool(spec.get("log", False)),
                                  step=spec.get("step")))
    if not params:
        raise ConfigError("search.params", "empty; allowed: at least one section.field range")
    return Search(sampler=sampler, n_trials=raw["n_trials"], params=tuple(params))


@dataclass(frozen=True)
class _Budget:
    kind: str  # Study.budget
    amount: float | None
    steps: int  # the run's length (a placeholder under flops, a cap under seconds)
    val_every: int
    validations: int


BUDGET_KEYS = ("steps", "tokens", "flops", "seconds")
# YAML 1.1 reads 1.0e12 (an exponent without its sign) as a string: a number the user meant
_UNSIGNED_EXPONENT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE]\d+$")
FLOPS_VALIDATIONS = 5  # a flops-budget run validates this many times unless told otherwise


def _budget(raw: Any, preset: str, overrides: tuple[tuple[str, Any], ...]) -> _Budget:
    raw = _mapping(raw, "budget", (*BUDGET_KEYS, "val_every", "validations"))
    given = [key for key in BUDGET_KEYS if key in raw]
    if len(given) != 1:
        raise ConfigError("budget", "give exactly one of steps, tokens, flops or seconds; "
                          "allowed: {steps: N}, {tokens: N}, {flops: F} or {seconds: S}")
    kind = given[0]
    if kind in ("flops", "seconds"):
        return _resource_budget(kind, raw)
    if "validations" in raw:
        raise ConfigError("budget.validations", "applies to a flops budget; allowed: val_every")
    if kind == "steps":
        check_int("budget.steps", raw["steps"], 1)
        steps = raw["steps"]
    else:
        check_int("budget.tokens", raw["tokens"], 1)
        data = build_run_config(preset, values=dict(overrides)).data
        steps = math.ceil(raw["tokens"] / (data.batch_size * (data.seq_len or 1)))
    val_every = raw.get("val_every", max(1, steps // 5))
    check_int("budget.val_every", val_every, 1)
    return _Budget("steps", None, steps, min(val_every, steps), 0)


def _number(value: Any) -> Any:
    """1.0e12 as YAML 1.1 leaves it, a string (its exponent has no sign), as the number meant."""
    return float(value) if isinstance(value, str) and _UNSIGNED_EXPONENT.match(value) else value


def _resource_budget(kind: str, raw: dict[str, Any]) -> _Budget:
    """FLOPs or seconds, the same for every cell: each cell's step count follows from it."""
    amount = _number(raw[kind])
    check_number(f"budget.{kind}", amount, positive=True)
    if kind == "flops":
        if "val_every" in raw:
            raise ConfigError("budget.val_every", "a flops budget sets each cell's steps; "
                              "allowed: validations (how many times a run validates)")
        validations = raw.get("validations", FLOPS_VALIDATIONS)
        check_int("budget.validations", validations, 1)
        return _Budget("flops", float(amount), 1, 1, validations)
    if "validations" in raw:
        raise ConfigError("budget.validations", "a seconds budget has no step count to divide; "
                          "allowed: val_every")
    val_every = raw.get("val_every", 50)
    check_int("budget.val_every", val_every, 1)
    return _Budget("seconds", float(amount), 1, val_every, 0)


def _objectives(raw: Any) -> tuple[Objective, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("objectives", f"{raw!r}; allowed: a list of {', '.join(OBJECTIVES)}")
    out = []
    for item in raw:
        if isinstance(item, str):
            item = {"metric": item}
        item = _mapping(item, "objectives", ("metric", "direction"))
        check_choice("objectives.metric", item.get("metric"), tuple(OBJECTIVES))
        direction = item.get("direction", OBJECTIVES[item["metric"]].direction)
        check_choice("objectives.direction", direction, DIRECTIONS)
        out.append(Objective(item["metric"], direction))
    return tuple(out)


def _seeds(raw: Any) -> list[int]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("seeds", f"{raw!r}; allowed: a non-empty list of integers >= 0")
    for seed in raw:
        check_int("seeds", seed, 0)
    if len(set(raw)) != len(raw):
        raise ConfigError("seeds", f"{raw!r} repeats a seed; allowed: distinct integers")
    return raw


def _corners(param: SearchParam) -> list[Any]:
    if param.choices is not None:
        return list(param.choices)
    return [param.low, param.high]


def _cell_config(study: Study, params: dict[str, Any]) -> RunConfig:
    try:
        return study.run_config(params)
    except ConfigError as error:
        label = ", ".join(f"{k}={v}" for k, v in params.items())
        raise ConfigError(error.field, f"{error.message} (in the cell {label})") from None
