"""What both command lines share: how errors become one line and an exit code, --version,
and how a typer app is run so that usage errors use the tool's own exit code."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NoReturn

import typer


class OutputFormat(StrEnum):
    """--format of the commands that print a report: text for people, json for scripts."""

    text = "text"
    json = "json"


_CLICK_USAGE_ERROR = 2  # what typer (click) exits with for a bad option or argument


DISTRIBUTION = "pysandbox-pyaudit"  # pyproject.toml's name ("pysandbox" on the index is another project)


def package_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


def version_option(tool: str) -> Callable[[bool], None]:
    def show(value: bool) -> None:
        if value:
            typer.echo(f"{tool} {package_version()}")
            raise typer.Exit(0)

    return show


class ExitWith(SystemExit):
    """A deliberate exit status of ours. It is a SystemExit, which typer lets through
    untouched, so run_app can tell it from typer's own usage errors (which exit 2)."""


def fail(tool: str, message: str, code: int) -> NoReturn:
    """One line on stderr, then the exit code: never a traceback for bad input."""
    typer.echo(f"{tool}: error: {message}", err=True)
    raise ExitWith(code)


def write_atomically(path: Path, data: bytes) -> None:
    """Whoever reads `path` sees the old content or the new, never half, and a failed write
    loses nothing. The temporary file is made with O_EXCL under a random name, so a link
    another user planted in a shared folder is never written through; it gets the mode a
    plain create would (0666 less the umask). Raises OSError naming `path`."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(stream.fileno(), 0o666 & ~umask)
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_output(tool: str, path: Path, text: str, code: int) -> None:
    """`write_atomically` for a command's --output: an error is one line and `code`."""
    try:
        write_atomically(path, text.encode())
    except OSError as error:
        fail(tool, f"{path}: cannot write ({error.strerror or error})", code)


def run_app(app: typer.Typer, tool: str, usage_code: int) -> NoReturn:
    """Run `app`; a usage error exits with `usage_code` (125 for pysandbox, like Docker)."""
    try:
        app(prog_name=tool)
    except ExitWith:
        raise
    except SystemExit as done:
        if done.code == _CLICK_USAGE_ERROR:
            sys.exit(usage_code)
        raise
    sys.exit(0)
