"""Typed configuration shared by every concern.

Each concern keeps its own dataclass of settings. Every field is declared once, with
`setting(default, help, rule)`: its default, the one line that `--help` prints, and the `Rule` its
value must pass (bool fields need none), so that every command that uses it rejects a bad value with
one line, `NAME=VALUE: must be ...`. This module also turns `key=value` overrides into a new
instance and rejects unknown keys.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from marionette.errors import InputError

T = TypeVar("T")

MAX_SHOTS = 8  # most targets (K) anything takes: episodes, training, evaluation, target videos (paper: K = 1..8)


class SettingError(InputError, ValueError):
    """A setting with a bad key or value; the message is `NAME=VALUE: why`."""


@dataclass(frozen=True)
class Rule:
    """What a setting's value must be: `test(value)` is true, `text` says it ("an integer in 0..51")."""

    test: Callable[[Any], bool]
    text: str


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def between(low: float, high: float) -> Rule:
    """A finite number in [low, high]."""
    return Rule(lambda v: _number(v) and low <= v <= high, f"in {low}..{high}")


def at_least(low: float) -> Rule:
    """A finite number >= low."""
    return Rule(lambda v: _number(v) and v >= low, f">= {low}")


def above(low: float) -> Rule:
    """A finite number > low."""
    return Rule(lambda v: _number(v) and v > low, f"> {low}")


def one_of(*choices: Any) -> Rule:
    return Rule(lambda v: v in choices, "one of " + ", ".join(map(str, choices)))


def off_or(rule: Rule) -> Rule:
    """0 (off) or a value that passes `rule`."""
    return Rule(lambda v: v == 0 or rule.test(v), f"0 (off) or {rule.text}")


def each(rule: Rule, length: int | None = None) -> Rule:
    """A non-empty tuple whose items pass `rule` (`length` items when given)."""
    def test(v: Any) -> bool:
        return (isinstance(v, tuple) and len(v) > 0 and (length is None or len(v) == length)
                and all(rule.test(x) for x in v))
    return Rule(test, f"{length or 'a list of'} values, each {rule.text}")


def text(optional: bool = False) -> Rule:
    """A non-empty string (a path, a name); None too when `optional`."""
    return Rule(lambda v: (optional and v is None) or (isinstance(v, str) and v.strip() != ""),
                "a non-empty text" + (" or None" if optional else ""))


def setting(default: Any, help: str, rule: Rule | None = None) -> Any:
    """A field of a `Settings` dataclass: its default, its one-line help and its rule (None: a bool)."""
    return dataclasses.field(default=default, metadata={"help": help, "rule": rule})


def rule_of(cls: type, name: str) -> Rule:
    """The rule of field `name` of a `Settings` dataclass (for a field that mirrors another class's)."""
    return {f.name: f for f in dataclasses.fields(cls)}[name].metadata["rule"]


class Settings:
    """Base of every config dataclass: checks each field against its `setting` rule on creation."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            rule = f.metadata.get("rule")
            if rule is None and isinstance(value, bool):
                continue
            if rule is None:
                raise AssertionError(f"{type(self).__name__}.{f.name} has no rule")
            if not rule.test(value):
                raise SettingError(f"{f.name}={_show(value)}: must be {rule.text}")

    def require(self, ok: bool, name: str, why: str) -> None:
        """A check across fields: SettingError `name=value: why` unless `ok`."""
        if not ok:
            raise SettingError(f"{name}={_show(getattr(self, name))}: {why}")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _parse(key: str, value: str, annotation: Any) -> Any:
    """Parse one override string into the field's type (bool, int, float, str, optional str, tuple)."""
    origin = typing.get_origin(annotation)
    try:
        if annotation is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("not a boolean (true or false)")
        if annotation is int:
            return int(value)
        if annotation is float:
            return float(value)
        if origin is tuple:
            item = typing.get_args(annotation)[0]
            items = [x.strip() for x in value.strip("[]").split(",") if x.strip()]
            return tuple(_parse(key, x.strip("\"'"), item) for x in items)
        if value.lower() == "none" and type(None) in typing.get_args(annotation):
            return None
        return value
    except ValueError as e:
        why = str(e) if "boolean" in str(e) else f"not {'an integer' if annotation is int else 'a number'}"
        raise SettingError(f"{key}={value}: {why}") from None


def override(config: T, overrides: list[str] | dict[str, Any]) -> T:
    """Return a copy of `config` with `key=value` overrides applied; unknown keys and values out of
    range are SettingErrors."""
    fields = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(type(config))
    items = overrides.items() if isinstance(overrides, dict) else (_split(o) for o in overrides)
    changes: dict[str, Any] = {}
    for key, value in items:
        if key not in fields:
            raise SettingError(f"{key}={_show(value)}: unknown {type(config).__name__} setting "
                               f"(known: {', '.join(sorted(fields))})")
        changes[key] = _parse(key, value, hints[key]) if isinstance(value, str) else value
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def _split(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise SettingError(f"{item}: not a setting of the form KEY=VALUE")
    key, value = item.split("=", 1)
    return key.strip(), value.strip()


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from `to_dict` output; unknown keys are errors."""
    return override(cls(), {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def describe(cls: type, skip: tuple[str, ...] = ()) -> str:
    """One line per field of a `Settings` dataclass, `name = default  help [rule]`, for --help texts."""
    return "\n".join(f"  {f.name} = {f.default!r}  {f.metadata['help']}"
                     + (f" [{f.metadata['rule'].text}]" if f.metadata["rule"] else "")
                     for f in dataclasses.fields(cls) if f.name not in skip)
