"""Typed access to untrusted JSON: each accessor names the document and the field when the
value is not of the expected type, so a malformed file gives one readable sentence."""

from __future__ import annotations

import json
from typing import Any

from pysbx.images.errors import ImageError


def canonical_json(document: object) -> bytes:
    """The one serialisation of a document this project writes (manifests, indexes, configs):
    compact and key-sorted, so the same content always has the same digest."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def load_json_object(data: bytes, where: str) -> dict[str, Any]:
    return as_object(load_json(data, where), where)


def load_json(data: bytes, where: str) -> Any:
    """Parse an untrusted JSON document. Besides malformed text and bad encodings (both
    ValueErrors), json.loads refuses numbers of more than 4300 digits with a plain
    ValueError and raises RecursionError on arrays nested past the recursion limit."""
    try:
        return json.loads(data)
    except ValueError as error:
        raise ImageError(f"{where}: not valid JSON ({error})") from None
    except RecursionError:
        raise ImageError(f"{where}: not valid JSON (nested too deeply)") from None


def as_object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ImageError(f"{where}: expected a JSON object, got {_kind(value)}")
    return value


def as_list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ImageError(f"{where}: expected a JSON array, got {_kind(value)}")
    return value


def opt_object(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key)
    return {} if value is None else as_object(value, f"{where}.{key}")


def opt_str(doc: dict[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ImageError(f"{where}.{key}: expected a string, got {_kind(value)}")
    return value


def opt_str_list(doc: dict[str, Any], key: str, where: str) -> list[str]:
    value = doc.get(key)
    if value is None:
        return []
    items = as_list(value, f"{where}.{key}")
    if not all(isinstance(item, str) for item in items):
        raise ImageError(f"{where}.{key}: expected an array of strings")
    return items


def opt_str_map(doc: dict[str, Any], key: str, where: str) -> dict[str, str]:
    value = opt_object(doc, key, where)
    if not all(isinstance(item, str) for item in value.values()):
        raise ImageError(f"{where}.{key}: expected an object of strings")
    return value


def req_int(doc: dict[str, Any], key: str, where: str) -> int:
    value = doc.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ImageError(f"{where}.{key}: expected a non-negative integer, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )
