"""What both command lines share: how errors become one line and an exit code, --version,
and how a typer app is run so that usage errors use the tool's own exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import StrEnum
from typing import NoReturn

import typer

from pysbx.cli.version import DISTRIBUTION, package_version
from pysbx.images.outfile import write_atomically

__all__ = [
    "DISTRIBUTION",
    "ExitWith",
    "OutputFormat",
    "fail",
    "package_version",
    "run_app",
    "version_option",
    "write_atomically",
]


class OutputFormat(StrEnum):
    """--format of the commands that print a report: text for people, json for scripts."""

    text = "text"
    json = "json"


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
