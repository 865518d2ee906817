"""`pysandbox ps`, `stop` and `exec` without the CLI framework: what they do (shared with
their typer commands in cli.container_cmd) and a reader for their common command lines, so
that these frequent, scripted calls start as fast as `run` (typer's import alone is about
100 ms). Like cli.runargs, the reader never guesses: anything it does not know for sure
(help, an unknown or unusual flag) makes it answer None, and typer decides."""

from __future__ import annotations

import os
import sys

from pysbx.sandbox.errors import EXIT_SETUP_FAILED, SandboxError

NOT_FOUND = 1  # Docker's status when a container is not there


def _error(message: str, code: int) -> int:
    print(f"pysandbox: error: {message}", file=sys.stderr)
    return code


def ps(include_exited: bool, quiet: bool, filters: list[str], output: str) -> int:
    import json  # only here: exec and stop read no JSON through it (sandbox.jsonread)

    from pysbx.sandbox.lifecycle import listing, table, templated

    try:
        rows = listing(include_exited, filters)
        if quiet:
            shown = "".join(f"{row['id'][:12]}\n" for row in rows)
        elif output in ("table", "json"):
            shown = (json.dumps(rows, indent=2) if output == "json" else table(rows)) + "\n"
        else:
            shown = templated(rows, output) + ("\n" if rows or output.startswith("table ") else "")
    except (SandboxError, OSError) as error:
        return _error(str(error), EXIT_SETUP_FAILED)
    print(shown, end="")
    return 0


def stop(references: list[str], seconds: int | None) -> int:
    from pysbx.sandbox.containers import find
    from pysbx.sandbox.lifecycle import stop_container

    for reference in references:
        try:
            stop_container(find(reference), seconds)
        except (SandboxError, OSError) as error:
            return _error(str(error), NOT_FOUND)
        print(reference, flush=True)
    return 0


def exec_command(
    reference: str,
    argv: list[str],
    env: list[str],
    workdir: str | None,
    tty: bool,
    interactive: bool,
    user: str | None = None,
) -> int:
    from pysbx.sandbox.containers import find
    from pysbx.sandbox.enter import exec_in, exec_spec

    if tty and interactive and not os.isatty(0):
        return _error("the input device is not a TTY: -it needs a terminal on stdin", EXIT_SETUP_FAILED)
    try:
        container = find(reference)
    except (SandboxError, OSError) as error:
        return _error(str(error), NOT_FOUND)
    try:
        return exec_in(container, exec_spec(container, argv, env, workdir, tty, user), tty, interactive)
    except (SandboxError, OSError) as error:
        return _error(str(error), EXIT_SETUP_FAILED)


# ----- the fast reader -------------------------------------------------------------------------


def fast(command: str, argv: list[str]) -> int | None:
    """Run `pysandbox COMMAND ARGV` when ARGV is a form read here for sure, else None."""
    reader = {"ps": _read_ps, "stop": _read_stop, "exec": _read_exec}.get(command)
    return None if reader is None else reader(argv)


def _read_ps(argv: list[str]) -> int | None:
    flags: set[str] = set()
    filters: list[str] = []
    output = "table"
    index = 0
    while index < len(argv):
        word = argv[index]
        if word in ("-a", "--all", "-q", "--quiet", "-aq", "-qa"):
            flags |= set(word.lstrip("-")) if len(word) <= 3 else {word[2]}
            index += 1
        elif word in ("--format", "--filter", "-f") and index + 1 < len(argv) and not argv[index + 1].startswith("-"):
            if word == "--format":
                output = argv[index + 1]
            else:
                filters.append(argv[index + 1])
            index += 2
        else:
            return None
    return ps("a" in flags, "q" in flags, filters, output)


def _read_stop(argv: list[str]) -> int | None:
    seconds = None
    if argv[:1] in (["-t"], ["--time"]):
        if len(argv) < 2 or not argv[1].isdigit():
            return None
        seconds, argv = int(argv[1]), argv[2:]
    if not argv or any(word.startswith("-") for word in argv):
        return None
    return stop(argv, seconds)


def _read_exec(argv: list[str]) -> int | None:
    env: list[str] = []
    workdir = None
    flags: set[str] = set()
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        word = argv[index]
        if word in ("-i", "-t", "-it", "-ti", "--interactive", "--tty"):
            flags |= {"t"} if word == "--tty" else {"i"} if word == "--interactive" else set(word[1:])
            index += 1
        elif word in ("-e", "--env", "-w", "--workdir") and index + 1 < len(argv):
            if argv[index + 1].startswith("-"):
                return None
            if word in ("-e", "--env"):
                env.append(argv[index + 1])
            else:
                workdir = argv[index + 1]
            index += 2
        else:
            return None
    if len(argv) - index < 2:
        return None
    return exec_command(argv[index], argv[index + 1 :], env, workdir, "t" in flags, "i" in flags)
