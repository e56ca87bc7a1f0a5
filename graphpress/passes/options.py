"""Typed, range-checked pass options.

A pass declares its options as :class:`Option` objects; pipeline strings and keyword arguments are both
checked against them before any pass runs, so a typo or an out-of-range ratio fails in a millisecond with
a message naming the pass and the option, never half-way through a long compression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import OptionError

__all__ = ["Option", "validate_options"]

_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list}


@dataclass(frozen=True)
class Option:
    """One option of a pass: ``kind`` is int, float, str, bool or list (of str)."""

    name: str
    kind: str
    default: Any = None
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: Sequence[Any] | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    extra: dict = field(default_factory=dict)

    def describe(self) -> str:
        parts = [self.kind]
        if self.choices:
            parts.append("|".join(map(str, self.choices)))
        if self.low is not None or self.high is not None:
            lo = "[" if self.low_inclusive else "("
            hi = "]" if self.high_inclusive else ")"
            parts.append(f"{lo}{self.low if self.low is not None else '-inf'}, "
                         f"{self.high if self.high is not None else 'inf'}{hi}")
        default = "" if self.default is None else f", default {self.default}"
        return f"{self.name} ({', '.join(parts)}{default}): {self.help}"

    def coerce(self, value: Any, pass_name: str) -> Any:
        """Convert ``value`` to this option's type and check its range; raise OptionError if it can't."""
        where = f"option '{self.name}' of pass '{pass_name}'"
        try:
            value = self._convert(value)
        except (TypeError, ValueError):
            raise OptionError(f"{where} must be {self.kind}, got {value!r}") from None
        if self.choices is not None and value not in self.choices:
            raise OptionError(f"{where} must be one of {', '.join(map(str, self.choices))}; got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.low is not None and (value < self.low or (value == self.low and not self.low_inclusive)):
                raise OptionError(f"{where} is out of range: {value!r}; expected {self.describe()}")
            if self.high is not None and (value > self.high or (value == self.high and not self.high_inclusive)):
                raise OptionError(f"{where} is out of range: {value!r}; expected {self.describe()}")
        return value

    def _convert(self, value: Any) -> Any:
        if value is None:
            return None
        if self.kind == "bool":
            if isinstance(value, str):
                lowered = value.lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if not isinstance(value, (bool, int)):
                raise TypeError(value)
            return bool(value)
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            if isinstance(value, bool):
                raise TypeError(value)
            return int(value)
        if self.kind == "float":
            if isinstance(value, bool):
                raise TypeError(value)
            out = float(value)
            if out != out:
                raise ValueError(value)
            return out
        if self.kind == "list":
            if isinstance(value, str):
                return [v for v in value.split("|") if v]
            return [str(v) for v in value]
        return str(value)


def validate_options(pass_name: str, declared: Sequence[Option], given: dict[str, Any]) -> dict[str, Any]:
    """Return a full option dict (defaults filled in) or raise OptionError for unknown/bad options."""
    by_name = {o.name: o for o in declared}
    unknown = [k for k in given if k not in by_name]
    if unknown:
        known = ", ".join(by_name) or "none"
        raise OptionError(f"pass '{pass_name}' has no option {', '.join(map(repr, unknown))} (its options: {known})")
    return {name: opt.coerce(given.get(name, opt.default), pass_name) for name, opt in by_name.items()}
