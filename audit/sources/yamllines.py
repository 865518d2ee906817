"""YAML (and JSON, which it reads too) with the line of every mapping key and list item,
so that findings point at real lines of the input file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml


class LineDict(dict[str, Any]):
    """A mapping that remembers its own line and the line of each key."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list[Any]):
    line: int = 0
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> LineDict:  # type: ignore[override]
        mapping = LineDict()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {}
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = str(self.construct_object(key_node, deep=True))
            mapping[key] = self.construct_object(value_node, deep=True)
            mapping.key_lines[key] = key_node.start_mark.line + 1
        return mapping

    def construct_sequence(self, node: yaml.SequenceNode, deep: bool = False) -> LineList:
        items = LineList(self.construct_object(child, deep=True) for child in node.value)
        items.line = node.start_mark.line + 1
        items.item_lines = [child.start_mark.line + 1 for child in node.value]
        return items


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_sequence)
# Timestamps and the like stay strings: an audit compares what was written.
_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _LineLoader.construct_yaml_str)  # type: ignore[type-var]


def load_documents(text: str) -> Iterator[Any]:
    """Every document of a (multi-document) YAML or JSON text. Raises yaml.YAMLError, also
    where PyYAML itself lets another exception out: a value its explicit tag cannot hold
    (`!!int abc` is a ValueError, `!!bool x` a KeyError) and nesting deeper than Python's
    recursion limit (its composer and constructor recurse once per level)."""
    try:
        yield from yaml.load_all(text, Loader=_LineLoader)
    except (ValueError, KeyError) as error:
        raise yaml.YAMLError(f"a value that its tag cannot hold ({error})") from None
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
