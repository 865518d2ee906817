"""YAML (and JSON, which it reads too) with the line of every mapping key and list item,
so that findings point at real lines of the input file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import yaml

from pysbx.audit.sources.lines import LineDict as LineDict
from pysbx.audit.sources.lines import LineList as LineList


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
# Integers without YAML 1.1's base 60, which Compose and kubectl (YAML 1.2) do not know:
# `- 53:53` under `ports:` is the string "53:53" (port 53), not the number 3233.
_INT = "tag:yaml.org,2002:int"
_LineLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != _INT]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


def load_documents(text: str) -> Iterator[Any]:
    """Every document of a (multi-document) YAML or JSON text. Raises yaml.YAMLError, also
    where PyYAML itself lets another exception out: a value its explicit tag cannot hold
    (`!!int abc` is a ValueError, `!!bool x` a KeyError) and nesting deeper than Python's
    recursion limit (its composer and constructor recurse once per level)."""
    try:
        yield from yaml.load_all(text, Loader=_LineLoader)
    except (ValueError, KeyError):
        # not the error's own text: it quotes the value ("invalid literal for int(): 'x'")
        raise yaml.YAMLError("a value that its tag cannot hold") from None
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


_QUOTED = re.compile(r"'([^']*)'")
_TOKEN_NAME = re.compile(r"<[a-z ]+>")


def describe_problem(error: yaml.YAMLError) -> str:
    """What went wrong, on one line, without the input's own text: PyYAML quotes tags,
    anchors and aliases in its messages, and the input may be any file a link pointed at
    (/proc/self/environ). What stays: token names ('<block end>'), single characters
    ('\\t', ':'), which are what a person needs to find the mistake at the line given."""
    if isinstance(error, yaml.reader.ReaderError):
        if isinstance(error.character, bytes):
            return f"cannot decode byte #x{error.character[0]:02x}"
        return f"unacceptable character #x{error.character:04x}"
    problem = getattr(error, "problem", None) if isinstance(error, yaml.MarkedYAMLError) else str(error)
    return _QUOTED.sub(_quoted_if_not_content, " ".join((problem or "cannot be parsed").split()))


def _quoted_if_not_content(match: re.Match[str]) -> str:
    inner = match.group(1)
    short = len(inner) == 1 or (inner.startswith("\\") and len(inner) <= 6)
    return match.group(0) if short or _TOKEN_NAME.fullmatch(inner) else "(text not shown)"
