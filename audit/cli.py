"""The `pyaudit` command line."""

from __future__ import annotations

from typing import Annotated

import typer

from sandbox.clikit import fail, run_app, version_option

EXIT_USAGE = 2

app = typer.Typer(
    name="pyaudit",
    help="The CI gate for container images, Dockerfiles, Compose files and Kubernetes manifests.",
    add_completion=False,
    rich_markup_mode=None,
)


@app.command()
def audit(
    targets: Annotated[
        list[str],
        typer.Argument(help="Image archives, OCI layouts, Dockerfiles, Compose or Kubernetes files."),
    ],
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=version_option("pyaudit"), is_eager=True, help="Print the version and exit."
        ),
    ] = None,
) -> None:
    """Audit TARGETS and fail the build on findings (the rule catalogue is not built yet)."""
    fail("pyaudit", "no audit rules exist in this version yet; nothing was checked", EXIT_USAGE)


def main() -> None:
    run_app(app, "pyaudit", EXIT_USAGE)
