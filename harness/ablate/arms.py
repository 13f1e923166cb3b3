"""Named arms of a comparison: each a preset with settings of its own, so a study can set dense
against MemoryFormer on more than the same shape.

    arms:
      memoryformer: {preset: memoryformer-nano}
      dense-twin: {preset: dense-nano}                              # same depth, width, heads
      dense-params: {match: {preset: memoryformer-nano, on: params}}  # as many parameters
      dense-flops: {match: {preset: memoryformer-nano, on: forward_flops}}
      dense-ngram: {ngram: {preset: memoryformer-nano, order: 2}}   # + hashed n-gram tables of
                                                                    #   the same table bytes
      memoryformer-fast: {preset: memoryformer-nano, set: {optim.lr: 4.0e-3}}

A matched arm is resolved when the file is read, from the arithmetic of models/ (the same on every
worker, so every worker builds the same cells). Matching on measured throughput is not
deterministic across machines: `harness match PRESET --on throughput` measures it on this machine
and prints the settings to give an arm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError
from harness.models.presets import pair_of
from harness.runs.config import build_run_config

ARM_KEYS = ("preset", "set", "match", "ngram")
STUDY_MATCHES = ("params", "forward_flops")  # deterministic: allowed in a study file
SHAPE = ("n_layer", "d_model", "n_head")


@dataclass(frozen=True)
class Arm:
    label: str  # the value of the study's `arm` axis and of its runs' cell labels
    preset: str
    values: tuple[tuple[str, Any], ...]  # ("section.field", value) on top of the study's base
    note: str = ""  # how a matched arm was chosen, and how close it came


def parse_arms(raw: Any, base: tuple[tuple[str, Any], ...]) -> tuple[Arm, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("arms", f"{raw!r}; allowed: a mapping of arm names to "
                          "{preset: P, set: {...}}, {match: {...}} or {ngram: {...}}")
    return tuple(_arm(str(label), spec, base) for label, spec in raw.items())


def _arm(label: str, spec: Any, base: tuple[tuple[str, Any], ...]) -> Arm:
    where = f"arms.{label}"
    if not isinstance(spec, dict) or not spec or set(spec) - set(ARM_KEYS):
        raise ConfigError(where, f"{spec!r}; allowed keys: {', '.join(ARM_KEYS)}")
    kinds = [k for k in ("preset", "match", "ngram") if k in spec]
    if len(kinds) != 1:
        raise ConfigError(where, "give exactly one of preset, match or ngram; allowed: "
                          "{preset: P}, {match: {preset: P, on: params}}, {ngram: {preset: P}}")
    own = spec.get("set") or {}
    if not isinstance(own, dict):
        raise ConfigError(f"{where}.set", f"{own!r}; allowed: a mapping of section.field: value")
    values = {**dict(base), **own}
    if kinds[0] == "preset":
        build_run_config(str(spec["preset"]), values=values)  # a bad preset or field fails now
        return Arm(label, str(spec["preset"]), tuple(sorted(own.items())))
    if kinds[0] == "match":
        return _matched(label, spec["match"], values, own)
    return _ngram(label, spec["ngram"], values, own)


def _target(where: str, spec: Any, keys: tuple[str, ...], values: dict[str, Any]):
    if not isinstance(spec, dict) or "preset" not in spec or set(spec) - set(keys):
        raise ConfigError(where, f"{spec!r}; allowed keys: {', '.join(keys)} (preset required)")
    config = build_run_config(str(spec["preset"]), values=values)
    if config.model.kind != "memoryformer":
        raise ConfigError(f"{where}.preset", f"{spec['preset']!r} is {config.model.kind}; "
                          "allowed: a MemoryFormer preset to match a dense model to")
    return config


def _matched(label: str, spec: Any, values: dict[str, Any], own: dict[str, Any]) -> Arm:
    from harness.models.matching import match_dense

    where = f"arms.{label}.match"
    if isinstance(spec, dict):  # YAML 1.1 reads the key `on` as True
        spec = {("on" if key is True else key): value for key, value in spec.items()}
    target = _target(where, spec, ("preset", "on"), values)
    on = spec.get("on", "params")
    if on not in STUDY_MATCHES:
        raise ConfigError(f"{where}.on", f"{on!r}; allowed: {', '.join(STUDY_MATCHES)} "
                          "(throughput: measure with `harness match` and give the shape in set)")
    match = match_dense(target.model, on, target.seq_len)
    shape = {f"model.{k}": getattr(match.config, k) for k in SHAPE}
    note = (f"dense matched to {spec['preset']} on {on}: {match.matched_value:.4g} against "
            f"{match.target_value:.4g} ({match.ratio:.3f}x), {match.config.n_layer} layers x "
            f"{match.config.d_model} wide")
    return Arm(label, pair_of(str(spec["preset"])), tuple(sorted({**shape, **own}.items())), note)


def _ngram(label: str, spec: Any, values: dict[str, Any], own: dict[str, Any]) -> Arm:
    from harness.models.matching import ngram_control

    where = f"arms.{label}.ngram"
    target = _target(where, spec, ("preset", "order"), values)
    control = ngram_control(target.model, int(spec.get("order", 2)))
    settings = {"model.ngram_order": control.ngram_order, "model.ngram_rows": control.ngram_rows}
    note = (f"dense twin of {spec['preset']} plus hashed {control.ngram_order}-gram tables of "
            f"{control.ngram_rows} rows (about its table bytes)")
    return Arm(label, pair_of(str(spec["preset"])), tuple(sorted({**settings, **own}.items())),
               note)
