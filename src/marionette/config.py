"""Typed configuration helpers shared by every concern.

Each concern keeps its own dataclass (fields with a one-line comment, defaults in one place);
this module turns `key=value` overrides into a new instance and rejects unknown keys.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _parse(value: str, annotation: Any) -> Any:
    """Parse one override string into the field's type (bool, int, float, str, tuple)."""
    origin = typing.get_origin(annotation)
    if annotation is bool or annotation == "bool":
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if annotation in (int, "int"):
        return int(value)
    if annotation in (float, "float"):
        return float(value)
    if origin is tuple or (isinstance(annotation, str) and annotation.startswith("tuple")):
        parsed = json.loads(value if value.startswith("[") else f"[{value}]")
        return tuple(parsed)
    return value


def override(config: T, overrides: list[str] | dict[str, Any]) -> T:
    """Return a copy of `config` with `key=value` overrides applied; unknown keys are errors."""
    fields = {f.name: f for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(type(config))
    items = overrides.items() if isinstance(overrides, dict) else (_split(o) for o in overrides)
    changes: dict[str, Any] = {}
    for key, value in items:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ValueError(f"unknown {type(config).__name__} key {key!r} (known: {known})")
        changes[key] = _parse(value, hints[key]) if isinstance(value, str) else value
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def _split(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ValueError(f"override {item!r} is not of the form key=value")
    key, value = item.split("=", 1)
    return key.strip(), value.strip()


def to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from `to_dict` output; unknown keys are errors."""
    return override(cls(), {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def describe(cls: type) -> str:
    """One line per field of a config dataclass: `name = default  comment`, for --help texts.
    The comment is the field's own one-line comment in the source (defaults live in one place)."""
    import inspect
    import re

    comments = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+):.*?#\s*(.*)$", line)
        if match:
            comments[match.group(1)] = match.group(2)
    return "\n".join(f"  {f.name} = {f.default!r}  {comments.get(f.name, '')}" for f in dataclasses.fields(cls))
