"""Policy problems located at file:line:column, one sentence each."""

from __future__ import annotations

from pysbx.policies.record import Record


class Problem(Record):
    """One located problem. A Record, not a dataclass: pyaudit names this module on every
    start, and dataclasses' import (inspect, ast, dis, tokenize) is a third of that start."""

    __slots__ = ("file", "line", "column", "message")  # noqa: RUF023 (the order of lint's JSON)

    def __init__(self, file: str, line: int, column: int, message: str) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.message = message

    def __lt__(self, other: Problem) -> bool:
        """Problems sort by file, line, column, then message: the order they are reported in."""
        return (self.file, self.line, self.column, self.message) < (other.file, other.line, other.column, other.message)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class PolicyError(Exception):
    """A policy that does not load; `problems` holds every located problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
