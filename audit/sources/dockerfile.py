"""A Dockerfile parser for auditing: parser directives (`# syntax=`, `# escape=`), line
continuations, BuildKit heredocs, exec and shell forms, stages with aliases, and ARG
defaults substituted into FROM. Every instruction keeps its real first line."""

from __future__ import annotations

import json
import re

from pysbx.policies.record import Record

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$")
_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_INSTRUCTION_WORD = re.compile(r"[A-Z]{1,16}")  # what a misspelt keyword looks like, upper-cased
INSTRUCTIONS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip


class DockerfileError(ValueError):
    """Text that is not a Dockerfile; the message names the line."""


class Instruction(Record):
    """One instruction, as the parser reads it (Records, not dataclasses: see policies/record.py)."""

    __slots__ = ("arguments", "end_line", "flags", "heredocs", "keyword", "line")

    def __init__(
        self,
        keyword: str,
        arguments: str,
        line: int,
        end_line: int,
        flags: dict[str, str] | None = None,
        heredocs: list[str] | None = None,
    ) -> None:
        self.keyword = keyword
        self.arguments = arguments  # flags removed, continuation joined
        self.line = line
        self.end_line = end_line
        self.flags: dict[str, str] = flags if flags is not None else {}
        self.heredocs: list[str] = heredocs if heredocs is not None else []

    @property
    def exec_form(self) -> list[str] | None:
        text = self.arguments.strip()
        if not text.startswith("["):
            return None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):  # not JSON; a 5000-digit number; brackets 5000 deep
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    @property
    def script(self) -> str:
        """What a RUN executes: its command and any heredoc bodies."""
        return "\n".join([self.arguments, *self.heredocs])


class Stage(Record):
    """A FROM and the instructions up to the next."""

    __slots__ = ("alias", "base", "base_resolved", "index", "instructions", "line", "platform")

    def __init__(
        self,
        index: int,
        base: str,
        base_resolved: str,
        alias: str | None,
        platform: str | None,
        line: int,
        instructions: list[Instruction] | None = None,
    ) -> None:
        self.index = index
        self.base = base  # as written
        self.base_resolved = base_resolved  # ARG defaults substituted
        self.alias = alias
        self.platform = platform
        self.line = line
        self.instructions: list[Instruction] = instructions if instructions is not None else []


class Dockerfile(Record):
    """A parsed Dockerfile: its directives, global ARG defaults and stages."""

    __slots__ = ("directives", "global_args", "path", "stages")

    def __init__(self, path: str, directives: dict[str, str], global_args: dict[str, str], stages: list[Stage]) -> None:
        self.path = path
        self.directives = directives
        self.global_args = global_args
        self.stages = stages

    def stage_named(self, name: str) -> Stage | None:
        for stage in self.stages:
            if stage.alias is not None and stage.alias.lower() == name.lower():
                return stage
        return stage_by_index(self.stages, name)


def stage_by_index(stages: list[Stage], name: str) -> Stage | None:
    """`--from=1`: a stage by its number. Only ASCII digits count, as in Docker (str.isdigit
    also accepts '²', which int() refuses), and no more of them than a stage count can have
    (int() refuses a 4,300-digit string too)."""
    is_number = name.isascii() and name.isdigit() and len(name) <= 6
    return stages[int(name)] if is_number and int(name) < len(stages) else None


def parse_dockerfile(text: str, path: str) -> Dockerfile:
    lines = text.splitlines()
    directives, first = _directives(lines)
    escape = directives.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(f"{path}:1: escape directive must be \\ or `")
    instructions = list(_instructions(lines, first, escape, path))
    return _stages(instructions, directives, path)


def _directives(lines: list[str]) -> tuple[dict[str, str], int]:
    """Parser directives: `# key=value` comments before anything else."""
    directives: dict[str, str] = {}
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match or match.group(1).lower() in directives:
            return directives, index
        directives[match.group(1).lower()] = match.group(2)
    return directives, len(lines)


def _instructions(lines: list[str], start: int, escape: str, path: str) -> list[Instruction]:
    found = []
    index = start
    while index < len(lines):
        raw = lines[index]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            index += 1
            continue
        first_line = index + 1
        parts = []
        while True:
            text = lines[index]
            body = text.rstrip()
            if body.endswith(escape):
                parts.append(body[: -len(escape)])
                index += 1
                # comment and empty lines inside a continuation are dropped
                while index < len(lines) and (not lines[index].strip() or lines[index].lstrip().startswith("#")):
                    index += 1
                if index >= len(lines):
                    break
                continue
            parts.append(text)
            index += 1
            break
        logical = " ".join(part.strip() for part in parts)
        keyword, _, rest = logical.partition(" ")
        keyword = keyword.upper()
        if keyword not in INSTRUCTIONS:
            raise DockerfileError(f"{path}:{first_line}: {_unknown_instruction(keyword)}")
        instruction = Instruction(keyword, rest.strip(), first_line, index)
        instruction.flags, instruction.arguments = _flags(instruction.arguments)
        if keyword in ("RUN", "COPY", "ADD"):
            index = _read_heredocs(instruction, lines, index)
        found.append(instruction)
    return found


def _unknown_instruction(keyword: str) -> str:
    """Name a misspelt instruction ('FORM'), but never echo other text: the file may be
    anything a link pointed at (/proc/self/environ), and its first word a token."""
    if _INSTRUCTION_WORD.fullmatch(keyword):
        return f"unknown instruction {keyword!r} (expected FROM, RUN, COPY or another instruction)"
    return "not an instruction (expected FROM, RUN, COPY or another instruction)"


def _flags(arguments: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = arguments
    while rest.startswith("--"):
        token, _, remainder = rest.partition(" ")
        name, _, value = token[2:].partition("=")
        flags[name.lower()] = value
        rest = remainder.lstrip()
    return flags, rest


def _read_heredocs(instruction: Instruction, lines: list[str], index: int) -> int:
    """BuildKit heredocs: `<<EOF` ... `EOF` bodies follow the instruction's line."""
    for match in _HEREDOC.finditer(instruction.arguments):
        strip_tabs, name = match.group(1) == "-", match.group(3)
        body = []
        while index < len(lines):
            line = lines[index]
            index += 1
            if (line.lstrip("\t") if strip_tabs else line) == name:
                break
            body.append(line.lstrip("\t") if strip_tabs else line)
        instruction.heredocs.append("\n".join(body))
        instruction.end_line = index
    return index


def substitute(text: str, values: dict[str, str]) -> str:
    """${VAR}, $VAR, ${VAR:-default}, ${VAR:+alt} with the values known (else left as is)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4)
        value = values.get(name)
        operator, word = match.group(2), match.group(3) or ""
        if operator == "-":
            return value if value else word
        if operator == "+":
            return word if value else ""
        return value if value is not None else match.group(0)

    return _VARIABLE.sub(replace, text)


def _arg_default(arguments: str) -> tuple[str, str | None]:
    name, has_value, value = arguments.partition("=")
    return name.strip(), value.strip().strip("\"'") if has_value else None


def _stages(instructions: list[Instruction], directives: dict[str, str], path: str) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            if not words:
                raise DockerfileError(f"{path}:{instruction.line}: FROM needs an image")
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(
                Stage(
                    len(stages),
                    words[0],
                    substitute(words[0], global_args),
                    alias,
                    instruction.flags.get("platform"),
                    instruction.line,
                    [instruction],
                )
            )
        elif not stages:
            if instruction.keyword == "ARG":
                name, value = _arg_default(instruction.arguments)
                if value is not None:
                    global_args[name] = value
                else:
                    global_args.setdefault(name, "")
            else:
                raise DockerfileError(f"{path}:{instruction.line}: {instruction.keyword} before the first FROM")
        else:
            stages[-1].instructions.append(instruction)
    if not stages:
        raise DockerfileError(f"{path}:1: no FROM instruction")
    return Dockerfile(path, directives, global_args, stages)


def looks_like_dockerfile(text: str) -> bool:
    """The first instruction (after directives and comments) is FROM or ARG."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        return stripped.split(None, 1)[0].upper() in ("FROM", "ARG")
    return False
