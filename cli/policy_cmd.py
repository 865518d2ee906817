"""`pysandbox policy show|lint|diff|export`."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pysbx.cli.exits import EXIT_BAD_INPUT
from pysbx.cli.kit import ExitWith, fail
from pysbx.images.regular import read_bounded
from pysbx.policies.errors import PolicyError, Problem
from pysbx.policies.loader import MAX_POLICY_BYTES, LoadedPolicy, load_policy, load_policy_text
from pysbx.policies.render import explicit_plain, plain, to_yaml
from pysbx.policies.values import counted

if TYPE_CHECKING:
    from pysbx.policies.diff import Change

EXIT_LINT_FAILED = 2
EXIT_LOOSENS = 1

app = typer.Typer(
    help="Show, lint, compare and export policy files (YAML, reviewed in pull requests).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
POLICY_HELP = "A built-in policy (strict, baseline, permissive) or a policy file."


class LintFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


@contextmanager
def _policy_errors() -> Iterator[None]:
    try:
        yield
    except PolicyError as error:
        fail("pysandbox", str(error).replace("\n", "; "), EXIT_BAD_INPUT)


def _load(reference: str, other: str | None = None) -> LoadedPolicy:
    with _policy_errors():
        return _read(reference, other)


def _read(reference: str, other: str | None = None) -> LoadedPolicy:
    """A policy named on the command line: a built-in, a file, `-` (standard input) or a pipe
    (`<(git show REV:path)`). What a read policy refers to (extends, keys, a seccomp profile)
    is resolved beside OTHER when that is a file (the old version of a file lived there),
    else in the current folder. Raises PolicyError."""
    if reference != STDIN and not _is_pipe(reference):
        return load_policy(reference)
    base = Path(other).resolve().parent if other and Path(other).is_file() else Path.cwd()
    return load_policy_text(_read_stream(reference), reference, base)


STDIN = "-"


def _is_pipe(reference: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(reference).st_mode)
    except OSError:
        return False


def _read_stream(reference: str) -> str:
    """All of standard input or a pipe, bounded; a FIFO without a writer reads as empty
    rather than waiting (opened non-blocking)."""
    try:
        if reference == STDIN:
            data = sys.stdin.buffer.read(MAX_POLICY_BYTES + 1)
        else:
            fd = os.open(reference, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                os.set_blocking(fd, True)
                data = read_bounded(fd, MAX_POLICY_BYTES)
            finally:
                os.close(fd)
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise PolicyError([Problem(reference, 1, 1, "the policy is not UTF-8 text")]) from None
    except ValueError:  # read_bounded: more than the bound
        raise PolicyError([Problem(reference, 1, 1, f"the policy is larger than {MAX_POLICY_BYTES} bytes")]) from None
    except OSError as error:
        raise PolicyError([Problem(reference, 1, 1, f"cannot read the policy: {error.strerror}")]) from None


@app.command()
def show(
    policy: Annotated[str, typer.Argument(help=POLICY_HELP, metavar="POLICY")],
    effective: Annotated[
        bool, typer.Option(help="Every setting, defaults included, not only those the files set.")
    ] = False,
) -> None:
    """Print the policy as YAML with `extends` resolved: what the files set, merged; with
    --effective, every setting the tools will enforce."""
    loaded = _load(policy)
    typer.echo(f"# {policy}: " + " <- ".join(loaded.chain))
    shown = plain(loaded.policy) if effective else explicit_plain(loaded.explicit)
    shown.pop("extends", None)
    typer.echo(to_yaml(shown), nl=False)


@app.command()
def lint(
    policies: Annotated[
        list[str], typer.Argument(help="Policy files (or built-in names, or - for standard input).", metavar="POLICY")
    ],
    output_format: Annotated[
        LintFormat, typer.Option("--format", help="text; json; github (inline pull-request annotations).")
    ] = LintFormat.text,
) -> None:
    """Check policy files: unknown keys, wrong types, sizes, durations, capability and
    syscall names, contradictions, and that the files they name (keys, trusted roots, seccomp
    profiles) exist and parse. Exit 0 when all are clean, 2 otherwise."""
    from pysbx.policies.references import referenced_file_problems

    problems: list[Problem] = []
    for policy in policies:
        try:
            problems += referenced_file_problems(_read(policy))
        except PolicyError as error:
            problems += error.problems
    problems = [Problem(shown_path(p.file), p.line, p.column, p.message) for p in problems]
    if output_format is LintFormat.json:
        typer.echo(json.dumps({"problems": [p.as_dict() for p in problems], "checked": policies}, indent=2))
    elif output_format is LintFormat.github:
        for p in problems:
            typer.echo(f"::error file={p.file},line={p.line},col={p.column},title=policy::{p.message}")
    else:
        for p in problems:
            typer.echo(str(p))
        checked = counted(len(policies), "policy", "policies")
        typer.echo(f"{checked} checked, {counted(len(problems), 'problem')}", err=True)
    if problems:
        raise ExitWith(EXIT_LINT_FAILED)


def shown_path(path: str) -> str:
    """A path as a review shows it: relative to the current folder when it is under it (as
    GitHub's annotations need), as it is otherwise (built-ins, `-`, /dev/fd/63)."""
    relative = os.path.relpath(path) if os.path.isabs(path) else path
    return relative if not relative.startswith("..") else path


@app.command()
def diff(
    old: Annotated[
        str, typer.Argument(help=POLICY_HELP + " - reads standard input; <(git show REV:FILE) works.", metavar="OLD")
    ],
    new: Annotated[str, typer.Argument(help=POLICY_HELP, metavar="NEW")],
    output_format: Annotated[
        LintFormat, typer.Option("--format", help="text; json; github (pull-request annotations on NEW's lines).")
    ] = LintFormat.text,
) -> None:
    """Compare the effective policies OLD and NEW, marking each change as loosening or
    tightening by its effect (a seccomp profile by what it allows, a key by its content).
    Exit 1 when anything loosens, so it can guard pull requests; 2 when a policy cannot be
    read. A policy read from standard input or a pipe finds the files it names beside NEW."""
    from pysbx.policies.diff import diff_policies, loosens

    if old == new == STDIN:
        fail("pysandbox", "only one of OLD and NEW can be - (standard input)", EXIT_BAD_INPUT)
    newer, older = _load(new, other=old), _load(old, other=new)
    changes = diff_policies(older.policy, newer.policy)
    for reference, loaded in ((old, older), (new, newer)):
        if reference == STDIN or _is_pipe(reference):
            _warn_about_files_read_now(reference, loaded, output_format)
    loosened = sum(map(loosens, changes))
    if output_format is LintFormat.json:
        listed = [{"field": ".".join(c.path), "change": c.describe(), "effect": c.effect} for c in changes]
        typer.echo(json.dumps({"old": old, "new": new, "changes": listed, "loosened": loosened}, indent=2))
    elif output_format is LintFormat.github:
        for change in changes:
            file, line, column = _located(newer, change)
            level = "error" if loosens(change) else "notice"
            typer.echo(
                f"::{level} file={file},line={line},col={column},title=policy {change.effect}::{change.describe()}"
            )
    else:
        width = max((len(change.describe()) for change in changes), default=0)
        for change in changes:
            typer.echo(f"{change.describe():<{width}}  {change.effect}")
        typer.echo(
            f"{counted(len(changes), 'change')}, {loosened} {'loosens' if loosened == 1 else 'loosen'}", err=True
        )
    if loosened:
        raise ExitWith(EXIT_LOOSENS)


def _warn_about_files_read_now(reference: str, loaded: LoadedPolicy, output_format: LintFormat) -> None:
    """A policy read from a pipe (`git show REV:p.yaml`) brings only itself: the files it names
    (what it extends, keys, a trusted root, a profile) were read as they are now, beside the
    other policy, not as they were at REV. A change in them is not in this diff: say which,
    so that a review compares them too."""
    from pysbx.policies.loader import BUILTIN_DIR

    named = [path for path in loaded.chain[1:] if Path(path).parent != BUILTIN_DIR]
    signing, profile = loaded.policy.signing, loaded.policy.sandbox.seccomp.profile
    named += [*signing.keys, *([signing.trusted_root] if signing.trusted_root else [])]
    named += [profile] if os.path.isabs(profile) else []
    for path in named:
        message = (
            f"{reference} was read from a pipe: {shown_path(path)} was read as it is now, not as it was; "
            f"compare it too (pysandbox policy diff <(git show REV:{shown_path(path)}) {shown_path(path)})"
        )
        if output_format is LintFormat.github:
            typer.echo(f"::warning title=policy files read as they are now::{message}")
        else:
            typer.echo(f"pysandbox: warning: {message}", err=True)


def _located(loaded: LoadedPolicy, change: Change) -> tuple[str, int, int]:
    """Where in NEW's files a change shows: the nearest recorded node of its path (a removed
    item points at its list), else the top of NEW."""
    for length in range(len(change.location), 0, -1):
        location = loaded.locations.get(change.location[:length])
        if location is not None:
            return shown_path(location[0]), location[1], location[2]
    return shown_path(loaded.chain[0]), 1, 1


class ExportTarget(StrEnum):
    oci = "oci"
    docker = "docker"
    kubernetes = "kubernetes"


def _reserved_base() -> int | None:
    """The first id this host reserves for root's containers, if it reserves a sound range."""
    from pysbx.sandbox.idmap import PASSWD, SUBUID, IdMapError, reserved_range

    try:
        return reserved_range(SUBUID, PASSWD).host
    except (IdMapError, OSError):
        return None


@app.command()
def export(
    policy: Annotated[str, typer.Argument(help=POLICY_HELP, metavar="POLICY")],
    to: Annotated[
        ExportTarget,
        typer.Option(
            "--to",
            help="oci: runtime config.json; docker: run flags + seccomp JSON; kubernetes: securityContext.",
        ),
    ],
    output: Annotated[
        Path | None, typer.Option(help="A directory for the files (stdout by default).", metavar="PATH")
    ] = None,
) -> None:
    """Export the policy for the engines you may move to: an OCI runtime config.json that
    runc and crun accept, `docker run` flags with a seccomp profile, or Kubernetes
    securityContext with a Localhost seccomp profile."""
    from pysbx.policies.export import export_files

    loaded = _load(policy)
    with _policy_errors():
        files = export_files(loaded.policy, to.value, _reserved_base())
    if output is None:
        for name, text in files.items():
            if len(files) > 1:
                typer.echo(f"# --- {name}")
            typer.echo(text, nl=not text.endswith("\n"))
        return
    output.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (output / name).write_text(text)
        typer.echo(f"wrote {output / name}")
