"""JSON documents read without importing `json`: its decoder module imports `re` (and with it
`enum`, `functools`, `collections`), about 5 ms of every `exec`, `ps` and `stop`, which only
read small records. The scanner is CPython's own C one (`_json`, what `json.loads` runs), so
what it accepts and the values it builds are json.loads's; only the module around it is not
loaded. Writing still goes through `json` (sandbox.containers.write_json)."""

from __future__ import annotations

from _json import make_scanner

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Context:
    """What the C scanner reads from a decoder: json.JSONDecoder's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


_scan = make_scanner(_Context())  # type: ignore[arg-type]  # typeshed: a decoder, which it reads the same way


def loads(data: bytes | str) -> object:
    """The value `data` (UTF-8, as json.dumps writes it) holds, as json.loads gives it;
    ValueError when it is not one JSON value (json.JSONDecodeError, a ValueError, from the
    scanner itself)."""
    text = data.decode() if isinstance(data, bytes) else data
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as stop:
        raise ValueError(f"expected a JSON value at character {stop.value}") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"extra data after the JSON value at character {end}")
    return value
