"""Every pysandbox and pyaudit command line the docs and CI examples show uses commands and
flags that exist: each is checked against the --help of the command it names, so a renamed
flag breaks this test, not a user's pipeline."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent
SOURCES = (
    "README.md",
    "policies/README.md",
    "examples/demo.sh",
    "examples/ci/github-actions.yml",
    "examples/ci/gitlab-ci.yml",
)


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, words) of each line that runs pysandbox or pyaudit, up to a shell operator."""
    found = []
    for source in SOURCES:
        for number, line in enumerate((ROOT / source).read_text().splitlines(), start=1):
            match = re.search(r"(?:^|[\s`$(:-])((?:pysandbox|pyaudit) [^`#|;&<>]*)", line)
            if not match or "install" in line.split(match.group(1))[0][-12:]:
                continue
            try:
                words = shlex.split(match.group(1).replace("\\", ""))
            except ValueError:
                continue
            if len(words) > 1:
                found.append((f"{source}:{number}", words))
    return found


@cache
def help_of(command: tuple[str, ...]) -> str:
    result = subprocess.run([str(BIN / command[0]), *command[1:], "--help"], capture_output=True, text=True, cwd="/")
    return result.stdout if result.returncode == 0 else ""


def command_path(words: list[str]) -> tuple[str, ...]:
    """The longest prefix of `words` that is a command with a help of its own."""
    path: tuple[str, ...] = (words[0],)
    for word in words[1:]:
        if word.startswith("-") or not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        if not help_of((*path, word)).startswith(f"Usage: {' '.join((*path, word))} "):
            break
        path = (*path, word)
    return path


def own_words(path: tuple[str, ...], words: list[str]) -> list[str]:
    """The words after the command's name that are its own: for `pysandbox run`, those
    before IMAGE (what follows is the container's command, read as run reads it); for
    `pysandbox learn`, its flags before run's."""
    rest = words[len(path) :]
    if path == ("pysandbox", "learn"):  # its own flags, then run's (IMAGE and the command after them)
        from pysbx.cli.learn_cmd import split_arguments

        _, run_words = split_arguments(rest)
        return rest[: len(rest) - len(run_words)] if run_words else rest
    if path != ("pysandbox", "run"):
        return rest
    from pysbx.cli.runargs import parse

    try:
        image = parse(rest).image
    except SystemExit:
        return rest  # not a command line run accepts: its flags are checked one by one
    return rest[: rest.index(image)] if image in rest else rest


@pytest.mark.parametrize(("where", "words"), documented_commands())
def test_a_documented_command_uses_flags_that_exist(where: str, words: list[str]) -> None:
    path = command_path(words)
    text = help_of(path)
    assert text, f"{where}: {' '.join(path)} --help fails"
    for flag in flags_of(own_words(path, words)):
        assert re.search(rf"(^|[\s,]){re.escape(flag)}([\s,=/]|$)", text, re.M), (
            f"{where}: {' '.join(path)} has no {flag}"
        )


def flags_of(words: list[str]) -> list[str]:
    """The flags among `words`, a cluster of short ones (-it) as each of its letters."""
    found = []
    for word in words:
        if re.fullmatch(r"-[A-Za-z]{2,}", word):
            found += [f"-{letter}" for letter in word[1:]]
        elif re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", word):
            found.append(word.split("=")[0])
    return found


def test_the_docs_show_commands_to_check() -> None:
    assert len(documented_commands()) > 20
