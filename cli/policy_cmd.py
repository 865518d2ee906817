"""`pysandbox policy show|lint|diff|export`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pysbx.cli.kit import ExitWith, fail
from pysbx.policies.errors import PolicyError, Problem
from pysbx.policies.loader import LoadedPolicy, load_policy
from pysbx.policies.render import explicit_plain, plain, to_yaml

EXIT_LINT_FAILED = 2
EXIT_LOOSENS = 1
EXIT_BAD_INPUT = 2  # a policy tool's usage and input errors, as pyaudit's

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


def _load(reference: str) -> LoadedPolicy:
    with _policy_errors():
        return load_policy(reference)


@app.command()
def show(
    policy: Annotated[str, typer.Argument(help=POLICY_HELP)],
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
    policies: Annotated[list[str], typer.Argument(help="Policy files (or built-in names) to check.")],
    output_format: Annotated[
        LintFormat, typer.Option("--format", help="text; json; github (inline pull-request annotations).")
    ] = LintFormat.text,
) -> None:
    """Check policy files: unknown keys, wrong types, sizes, durations, capability and
    syscall names, contradictions. Exit 0 when all are clean, 2 otherwise."""
    problems: list[Problem] = []
    for policy in policies:
        try:
            load_policy(policy)
        except PolicyError as error:
            problems += error.problems
    if output_format is LintFormat.json:
        typer.echo(json.dumps({"problems": [p.__dict__ for p in problems], "checked": policies}, indent=2))
    elif output_format is LintFormat.github:
        for p in problems:
            typer.echo(f"::error file={p.file},line={p.line},col={p.column},title=policy::{p.message}")
    else:
        for p in problems:
            typer.echo(str(p))
        typer.echo(f"{len(policies)} policies checked, {len(problems)} problems", err=True)
    if problems:
        raise ExitWith(EXIT_LINT_FAILED)


@app.command()
def diff(
    old: Annotated[str, typer.Argument(help=POLICY_HELP)],
    new: Annotated[str, typer.Argument(help=POLICY_HELP)],
) -> None:
    """Compare the effective policies OLD and NEW, marking each change as loosening or
    tightening by its effect (a seccomp profile by what it allows, a key by its content).
    Exit 1 when anything loosens, so it can guard pull requests."""
    from pysbx.policies.diff import diff_policies, loosens

    changes = diff_policies(_load(old).policy, _load(new).policy)
    width = max((len(change.describe()) for change in changes), default=0)
    for change in changes:
        typer.echo(f"{change.describe():<{width}}  {change.effect}")
    loosened = sum(map(loosens, changes))
    typer.echo(f"{len(changes)} changes, {loosened} loosen", err=True)
    if loosened:
        raise ExitWith(EXIT_LOOSENS)


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
    policy: Annotated[str, typer.Argument(help=POLICY_HELP)],
    to: Annotated[
        ExportTarget,
        typer.Option(
            "--to",
            help="oci: runtime config.json; docker: run flags + seccomp JSON; kubernetes: securityContext.",
        ),
    ],
    output: Annotated[Path | None, typer.Option(help="A directory for the files (stdout by default).")] = None,
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
