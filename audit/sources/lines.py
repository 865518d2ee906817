"""Mappings and lists that remember the line each key and item was read from (yamllines
makes them): in a module of their own, so that what only reads them (shapes, Compose and
Kubernetes readers) does not import the YAML library, which a Dockerfile's audit never needs."""

from __future__ import annotations

from typing import Any


class LineDict(dict[str, Any]):
    """A mapping that remembers its own line and the line of each key."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list[Any]):
    line: int = 0
    item_lines: list[int]
