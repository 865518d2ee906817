"""The JSON Schema of policy files, generated from the model so that the two cannot drift
(a test compares it with policies/policy.schema.json). Editors use it to validate and
complete policy files as they are typed."""

from __future__ import annotations

import dataclasses
import datetime
import json
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from pysbx.policies import model
from pysbx.policies.render import plain

SCHEMA_PATH = Path(__file__).resolve().parent / "policy.schema.json"
_EGRESS_PATTERN = r"^(\[[0-9a-fA-F:.]+(/[0-9]+)?\]|[0-9.]+(/[0-9]+)?)(:[0-9]+(-[0-9]+)?)?$"
_SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?\s*([KMGTP]i?|[kmgtp]|[KMGTP]?B)?$"
_DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)$"


def policy_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://pysandbox.dev/policy.schema.json",
        "title": "pysandbox / pyaudit policy",
        **_object_schema(model.Policy),
    }


def schema_text() -> str:
    return json.dumps(policy_schema(), indent=2, sort_keys=False) + "\n"


def _object_schema(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    properties = {}
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name])
        prop["description"] = f.metadata["doc"]
        if f.default is not dataclasses.MISSING:
            prop["default"] = plain(f.default, hints[f.name])
        elif f.default_factory is not dataclasses.MISSING:
            prop["default"] = plain(f.default_factory(), hints[f.name])
        properties[f.name] = prop
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
        schema["description"] = " ".join(cls.__doc__.split())
    if required:
        schema["required"] = required
    return schema


def _type_schema(hint: Any) -> dict[str, Any]:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(hint) if arg is not type(None)]
        return {"anyOf": [_type_schema(options[0]), {"type": "null"}]}
    if dataclasses.is_dataclass(hint):
        return _object_schema(hint)  # type: ignore[arg-type]
    if origin is tuple:
        return {"type": "array", "items": _type_schema(get_args(hint)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(get_args(hint)[1])}
    if origin is Literal:
        return {"enum": list(get_args(hint))}
    simple: dict[Any, dict[str, Any]] = {
        bool: {"type": "boolean"},
        int: {"type": "integer", "minimum": 0},
        float: {"type": "number"},
        str: {"type": "string"},
        datetime.date: {"type": "string", "format": "date"},
        model.Syscall: {"type": "string", "pattern": "^[a-z0-9_]+$"},
        model.IPAddress: {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]},
        model.Port: {"type": "integer", "minimum": 1, "maximum": 65535},
        model.Egress: {"type": "string", "pattern": _EGRESS_PATTERN},
        model.Size: {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": _SIZE_PATTERN}]},
        model.Duration: {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": _DURATION_PATTERN}]},
    }
    if hint in simple:
        return dict(simple[hint])
    if hint is model.Capability:
        names = sorted(model.LINUX_CAPABILITIES)
        return {"enum": ["ALL", *names, *(name[4:] for name in names)]}
    raise TypeError(f"no JSON Schema for {hint!r}")
