"""Field checks shared by every config dataclass; each error names the field and what is allowed."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from harness.errors import ConfigError


def check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not allowed; allowed: {', '.join(allowed)}")


def check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(name, f"{value!r} is not an integer; allowed: integers >= {minimum}")
    if value < minimum:
        raise ConfigError(name, f"{value} is too small; allowed: integers >= {minimum}")


def check_number(name: str, value: Any, *, positive: bool = False,
                 maximum: float | None = None) -> None:
    """A finite real >= 0 (> 0 when positive), at most `maximum` when given."""
    low = "> 0" if positive else ">= 0"
    allowed = f"numbers {low}" if maximum is None else f"numbers {low} and <= {maximum}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(name, f"{value!r} is not a number; allowed: {allowed}")
    if (not math.isfinite(value) or value < 0 or (positive and value == 0)
            or (maximum is not None and value > maximum)):
        raise ConfigError(name, f"{value} is out of range; allowed: {allowed}")


def check_str(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(name, f"{value!r} is not allowed; allowed: a non-empty string")


class ConfigFields:
    """replace / to_dict / from_dict for a frozen config dataclass; unknown fields are refused
    with the list of allowed ones (a typo in `--set` or a study file never passes silently)."""

    def replace(self, **changes: Any) -> Any:
        allowed = [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]
        unknown = sorted(set(changes) - set(allowed))
        if unknown:
            raise ConfigError(unknown[0], f"unknown field; allowed: {', '.join(allowed)}")
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Any:
        return cls().replace(**values)
