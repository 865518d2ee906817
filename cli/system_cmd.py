"""`pysandbox system setup-ids|check`: the host side's housekeeping: reserve the id range
root's containers run as, and re-verify the layer cache against what was unpacked."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from pysbx.cli.kit import fail
from pysbx.sandbox.errors import EXIT_SETUP_FAILED

app = typer.Typer(help="Host set-up and cache checks.", no_args_is_help=True, rich_markup_mode=None)


@app.command("setup-ids")
def setup_ids(
    count: Annotated[int, typer.Option("--count", min=65536, help="How many ids to reserve.")] = 65536,
) -> None:
    """As root: reserve the ids root's containers run as, for a `pysandbox` system user in
    /etc/subuid and /etc/subgid, overlapping no other user's range (kept if already sound)."""
    from pysbx.sandbox.idmap import IdMapError
    from pysbx.sandbox.idsetup import reserve_ids

    if os.geteuid() != 0:
        fail("pysandbox", "setup-ids changes /etc/subuid and /etc/subgid: run it as root", EXIT_SETUP_FAILED)
    try:
        reserved, made = reserve_ids(count)
    except IdMapError as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)
    verb = "reserved" if made else "already reserved"
    typer.echo(f"{verb}: ids {reserved.host}-{reserved.host + reserved.size - 1} for pysandbox")


@app.command("check")
def check(
    repair: Annotated[
        bool, typer.Option("--repair", help="Remove what fails; the next run unpacks it again from the image.")
    ] = False,
) -> None:
    """Re-verify the layer cache: every cached layer against the tree digest (paths, types,
    modes, owners, contents) recorded when it was unpacked. Exit 1 when something failed and
    was not repaired."""
    from pathlib import Path

    from pysbx.sandbox.cachecheck import check_cache
    from pysbx.sandbox.state import StorageError, private_root

    try:
        results = check_cache(Path(private_root()), repair)
    except (StorageError, OSError) as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)
    failed = [item for item in results if item.problem is not None]
    for item in failed:
        typer.echo(f"{'removed' if item.removed else 'FAILED'} {item.path}: {item.problem}")
    typer.echo(f"checked {len(results)} cache folders: {len(results) - len(failed)} intact, {len(failed)} not")
    if failed and not repair:
        raise typer.Exit(1)


@app.command("reset")
def reset(
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove all of your pysandbox storage: layers, flattened images, plans, compiled
    filters, volumes, and what dead runs left (podman's `system reset`). Refused while a
    container runs. An ordinary user's layers belong partly to their subordinate ids, so
    this is how to delete them (or `pysandbox unshare rm -rf ...`)."""
    from pathlib import Path

    from pysbx.sandbox.reset import StorageInUse, reset_storage
    from pysbx.sandbox.state import StorageError, private_root

    try:
        root = Path(private_root())
    except StorageError as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)
    if not force and not confirmed(f"Remove everything under {root}, volumes included?"):
        fail("pysandbox", "nothing removed (confirm, or pass --force)", 1)
    try:
        removed = reset_storage(root)
    except (StorageInUse, OSError) as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)
    typer.echo(f"removed {removed} entries of {root}")


def confirmed(question: str) -> bool:
    """A yes from the terminal; no answer (end of input) is a no."""
    try:
        return typer.confirm(question, err=True)
    except typer.Abort:
        typer.echo("", err=True)
        return False
