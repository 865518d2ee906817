"""The shape a document source expects of the fields it reads. A field that is absent is
fine (a Kustomize patch is a partial Deployment); a field that is there with the wrong shape
(`containers: "oops"`) is an input error naming the file, the line and the field: read as
nothing, it would pass the gate with nothing checked."""

from __future__ import annotations

from typing import Any

from pysbx.audit.inputs import AuditInputError
from pysbx.audit.sources.lines import LineDict, LineList

MAPPING = (LineDict, "a mapping")
LIST = (LineList, "a list")


class ShapeError(AuditInputError):
    """A field of a recognised document holds a value of the wrong shape."""


def field_of(mapping: LineDict, key: str, shape: tuple[type, str], target: str, where: str) -> Any:
    """mapping[key] when it has the shape, None when absent or null; otherwise a ShapeError
    `target:line: where.key: expected ..., found ...`."""
    value = mapping.get(key)
    if value is None or isinstance(value, shape[0]):
        return value
    raise ShapeError(f"{target}:{mapping.line_of(key)}: {where}{key}: expected {shape[1]}, found {described(value)}")


def items_of(items: LineList | None, shape: tuple[type, str], target: str, where: str) -> list[Any]:
    """The items of a list (none for None), each of the shape; a null item is passed over
    (Compose and kubectl treat it as absent), any other is a ShapeError naming its line."""
    if items is None:
        return []
    for item, line in zip(items, items.item_lines, strict=True):
        if item is not None and not isinstance(item, shape[0]):
            raise ShapeError(f"{target}:{line}: {where}: expected {shape[1]} per item, found {described(item)}")
    return [item for item in items if item is not None]


def described(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
