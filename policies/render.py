"""Policies as plain data and YAML (sizes as 512Mi, durations as 30s), for `policy show`."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, get_type_hints

import yaml

from pysbx.policies import model
from pysbx.policies.values import format_duration, format_size


def plain(value: Any, hint: Any = None) -> Any:
    """Dataclasses, tuples and dates as the dicts, lists and strings YAML shows."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = get_type_hints(type(value))
        return {f.name: plain(getattr(value, f.name), hints[f.name]) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, tuple | list | frozenset):
        return [plain(item) for item in (sorted(value) if isinstance(value, frozenset) else value)]
    if isinstance(value, datetime.date):
        return value.isoformat()
    if hint is not None and value is not None:
        if _is(hint, model.Size):
            return format_size(value)
        if _is(hint, model.Duration):
            return format_duration(value)
    return value


def flow(value: Any) -> str:
    """A plain value as YAML's flow style writes it in a message: true, null, {a: 1}, [x, y]."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {flow(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(item) for item in value) + "]"
    return str(value)


def _is(hint: Any, kind: Any) -> bool:
    return hint is kind or kind in getattr(hint, "__args__", ())


def explicit_plain(explicit: dict[str, Any], cls: type = model.Policy) -> dict[str, Any]:
    """The keys the files set, rendered like `plain` renders whole policies."""
    hints = get_type_hints(cls)
    shown: dict[str, Any] = {}
    for key, value in explicit.items():
        hint = hints[key]
        if isinstance(value, dict) and dataclasses.is_dataclass(hint):
            shown[key] = explicit_plain(value, hint)  # type: ignore[arg-type]
        elif isinstance(value, dict):
            shown[key] = {k: plain(v) if not isinstance(v, dict) else v for k, v in value.items()}
        else:
            shown[key] = plain(value, hint)
    return shown


def to_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
