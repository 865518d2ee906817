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


def run_app(app: typer.Typer, tool: str, usage_code: int, group_codes: dict[str, int] | None = None) -> NoReturn:
    """Run `app`; a usage error (an unknown option, a bad value) is one line naming the
    command's --help, and exits with `usage_code` (125 for pysandbox, like Docker), or with
    the code of the command group it is in (`group_codes`: 2 for `pysandbox policy`)."""
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name=tool, standalone_mode=False)
    except ExitWith:
        raise
    except typer.Abort:
        typer.echo("", err=True)
        sys.exit(130)  # interrupted at a prompt: the shell's status for SIGINT
    except Exception as error:
        # click's ClickException and UsageError (typer vendors click from 0.29 on, so the
        # classes are matched by what they carry, not imported)
        message = getattr(error, "format_message", None)
        if message is None or not isinstance(getattr(error, "exit_code", None), int):
            raise
        if type(error).__name__ == "NoArgsIsHelpError":  # `pyaudit` alone: the help, as asked
            typer.echo(error.ctx.get_help(), err=True)  # type: ignore[attr-defined]
            sys.exit(usage_code)
        context = getattr(error, "ctx", None)
        path = context.command_path.split() if context is not None else [tool]
        code = (group_codes or {}).get(path[1] if len(path) > 1 else "", usage_code)
        fail(tool, f"{_plain(message())} (see {' '.join(path)} --help)", code)
    sys.exit(code if isinstance(code, int) else 0)


def _plain(message: str) -> str:
    """click's message on one line, without the validation library's "Value error, "."""
    return " ".join(message.replace("Value error, ", "").split())
