"""The `pyaudit` command line: `pyaudit TARGET...` gates, `pyaudit rules [RULE]` explains."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from pysbx.audit.findings import NEVER
from pysbx.audit.formats import FORMATS
from pysbx.cli.exits import EXIT_BAD_INPUT
from pysbx.cli.kit import ExitWith, fail, run_app, version_option
from pysbx.policies.severity import SEVERITIES

app = typer.Typer(
    name="pyaudit",
    help="The CI gate for container images, Dockerfiles, Compose files, Kubernetes manifests and runtime configs.",
    add_completion=True,  # --install-completion / --show-completion for bash, zsh and fish
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
rules_app = typer.Typer(
    name="pyaudit rules",
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


# --format's choices: the format registry's names (audit.formats.FORMATS), first the default.
ReportFormat = StrEnum("ReportFormat", {name: name for name in FORMATS})  # type: ignore[misc]
DEFAULT_FORMAT = ReportFormat("text")


# --fail-on's choices: the severities, then `never` (report, never fail: trivy's --exit-code 0).
FailOn = StrEnum("FailOn", {name: name for name in (*SEVERITIES, NEVER)})  # type: ignore[misc]


@app.command()
def audit(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="Image archives, OCI layouts, Dockerfiles, Compose, Kubernetes, docker inspect or OCI config files; "
            "directories are walked.",
            metavar="TARGET",
        ),
    ],
    output_format: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            help="text for people, json for scripts, sarif for code scanning, junit for dashboards.",
        ),
    ] = DEFAULT_FORMAT,
    output: Annotated[
        Path | None, typer.Option(help="Write the report to this file instead of stdout.", metavar="PATH")
    ] = None,
    fail_on: Annotated[
        FailOn | None,
        typer.Option(
            case_sensitive=False,
            help="Exit 1 on findings at or above this severity, or never (default: the policy's audit.fail_on).",
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(help="A built-in policy (strict, baseline, permissive) or a policy file.", metavar="POLICY"),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(help="Only these rules or categories (repeatable, or comma-separated).", metavar="RULE"),
    ] = None,
    skip: Annotated[list[str] | None, typer.Option(help="Skip these rules or categories.", metavar="RULE")] = None,
    baseline: Annotated[
        Path | None, typer.Option(help="Ignore findings recorded in this baseline file.", metavar="FILE")
    ] = None,
    write_baseline: Annotated[
        Path | None, typer.Option(help="Record the current findings as a baseline and exit 0.", metavar="FILE")
    ] = None,
    skip_non_inputs: Annotated[
        bool,
        typer.Option(
            "--skip-non-inputs",
            help="Pass over named files that are no input, as a directory walk does (for pre-commit hooks).",
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Say on stderr which files a directory walk passed over, and why."),
    ] = False,
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", "-V", callback=version_option("pyaudit"), is_eager=True, help="Print the version and exit."
        ),
    ] = None,
) -> None:
    """Audit TARGETS. Exit 0 when nothing is at or above --fail-on, 1 when something is,
    2 for a usage or input error. Suppress with `# pyaudit: ignore[RULE] reason` comments,
    the policy's audit.ignore list, or --baseline. TARGET `-` reads a Dockerfile or YAML from
    standard input. `pyaudit rules` lists the rule catalogue; `pyaudit rules RULE` explains one."""
    from pysbx.cli.audit_run import AuditRequest, run_audit

    request = AuditRequest(targets)
    request.output_format, request.policy = output_format.value, policy
    request.fail_on = fail_on.value if fail_on else None
    request.output = str(output) if output is not None else None
    request.only, request.skip = only or [], skip or []
    request.skip_non_inputs, request.verbose = skip_non_inputs, verbose
    request.baseline = str(baseline) if baseline is not None else None
    request.write_baseline = str(write_baseline) if write_baseline is not None else None
    code = run_audit(request)
    if code:
        raise ExitWith(code)


@rules_app.command()
def rules(
    rule: Annotated[str | None, typer.Argument(help="A rule id (PA1010) or name (root-user).", metavar="RULE")] = None,
) -> None:
    """List the rule catalogue, or print one rule's help."""
    from pysbx.audit.catalog import RULES, find_rule

    if rule is None:
        typer.echo(f"{'ID':<7} {'NAME':<28} {'CATEGORY':<22} {'SEVERITY':<8} TITLE")
        for item in RULES.values():
            typer.echo(f"{item.id:<7} {item.name:<28} {item.category:<22} {item.severity:<8} {item.title}")
        return
    found = find_rule(rule)
    if found is None:
        fail("pyaudit", f"no rule {rule!r} (pyaudit rules lists them)", EXIT_BAD_INPUT)
    typer.echo(
        f"{found.id} {found.name}: {found.title}\ncategory: {found.category}\ndefault severity: {found.severity}\n"
    )
    typer.echo(found.help)
    if found.references:
        typer.echo(f"\nreferences: {', '.join(found.references)}")


def main() -> None:
    if sys.argv[1:2] == ["rules"]:
        sys.argv.pop(1)
        run_app(rules_app, "pyaudit rules", EXIT_BAD_INPUT)
    run_app(app, "pyaudit", EXIT_BAD_INPUT)
