"""Listings as Docker's CLI prints them: aligned columns, or a Go template of {{.Field}}
placeholders (`--format 'table {{.Repository}}\t{{.Tag}}'`). Shared by `ps`, `images` and
the other commands that list things."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

from pysbx.sandbox.errors import SandboxError

Field = tuple[str, Callable[[dict[str, str]], str]]  # (column header, value of a row)
_PLACEHOLDER = r"{{\s*\.(\w+)\s*}}"


class TemplateError(SandboxError):
    """A --format that is neither a known word nor a template of known fields."""


def columns(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns three spaces apart, trailing blanks trimmed."""
    widths = [max(len(str(line[index])) for line in [headers, *cells]) for index in range(len(headers))]
    return "\n".join(
        "   ".join(str(value).ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *cells]
    )


def fill_template(rows: list[dict[str, str]], template: str, fields: Mapping[str, Field]) -> str:
    """Each row through a Go template as Docker's CLI takes one; \\t is a tab, and a
    leading `table ` adds the header row."""
    header, text = template.startswith("table "), template.removeprefix("table ").replace("\\t", "\t")
    placeholder = re.compile(_PLACEHOLDER)  # compiled here: a listing without a template never pays for it
    unknown = [name for name in placeholder.findall(text) if name not in fields]
    if unknown or "{{" in placeholder.sub("", text):
        raise TemplateError(
            f"--format {template}: expected table, json or a template of {{{{.Field}}}} with {', '.join(fields)}"
        )
    lines = [placeholder.sub(lambda match: fields[match.group(1)][0], text)] if header else []
    return "\n".join(lines + [_fill(placeholder, text, row, fields) for row in rows])


def _fill(placeholder: re.Pattern[str], text: str, row: dict[str, str], fields: Mapping[str, Field]) -> str:
    return placeholder.sub(lambda match: fields[match.group(1)][1](row), text)
