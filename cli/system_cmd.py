"""`pysandbox system setup-ids|check|reset|df|prune`: the host side's housekeeping: reserve
the id range root's containers run as, re-verify the layer cache against what was unpacked,
say what storage holds and remove what nothing uses."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from pysbx.cli.kit import fail
from pysbx.images.errors import ImageError
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


@app.command("df")
def disk_free() -> None:
    """Show what pysandbox's storage holds: images, containers, volumes and the layer cache,
    how many of each are in use, their size, and what `system prune -a` could free."""
    from pathlib import Path

    from pysbx.cli.store_cmd import existing_store_or_none
    from pysbx.images.summary import human_size
    from pysbx.sandbox.housekeeping import disk_usage
    from pysbx.sandbox.listing import columns
    from pysbx.sandbox.state import StorageError, private_root

    try:
        rows = disk_usage(Path(private_root()), existing_store_or_none())
    except (StorageError, ImageError, OSError) as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)
    cells = [
        [row.kind, str(row.total), str(row.active), human_size(row.size),
         f"{human_size(row.reclaimable)} ({100 * row.reclaimable // row.size if row.size else 0}%)"]
        for row in rows
    ]  # fmt: skip
    typer.echo(columns(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], cells))


@app.command("prune")
def system_prune(
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Every image no container uses, not only nameless ones.")
    ] = False,
    volumes: Annotated[bool, typer.Option("--volumes", help="Also volumes no container uses.")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove stopped containers, networks no container uses, images without a name (-a: every
    image no container uses), the layer cache of images no longer kept, what dead runs left
    behind, and with --volumes the anonymous volumes no container uses (-a --volumes: every
    such volume). Nothing a running container uses is ever removed."""
    from pathlib import Path

    from pysbx.cli.network_cmd import prune_networks
    from pysbx.cli.store_cmd import existing_store_or_none
    from pysbx.images.summary import human_size
    from pysbx.sandbox import housekeeping
    from pysbx.sandbox.containers import all_containers
    from pysbx.sandbox.lifecycle import prune_containers
    from pysbx.sandbox.prune import prune as remove_leftovers
    from pysbx.sandbox.state import StorageError, private_root

    images = "all images without a container" if all_ else "all images without a name"
    what = ["all stopped containers", "all networks not used by a container", images, "unused layer cache"]
    if volumes:
        what.append("all volumes not used by a container" if all_ else "all anonymous volumes not used by a container")
    if not force and not confirmed("This removes:\n  - " + "\n  - ".join(what) + "\nContinue?"):
        fail("pysandbox", "nothing removed (confirm, or pass --force)", 1)
    try:
        cache = Path(private_root())
        for container in prune_containers():
            typer.echo(f"Deleted container: {container.id}")
        for name in prune_networks():
            typer.echo(f"Deleted network: {name}")
        containers = list(all_containers())
        store = existing_store_or_none()
        freed = 0
        if store is not None:
            going, freed = housekeeping.prune_images(cache, store, containers, all_)
            for image in going:
                typer.echo(f"Deleted image: {image.label}")
        layers = housekeeping.removable_layers(cache, housekeeping.stored_chains(store, named_only=True), containers)
        count, layer_bytes = housekeeping.prune_layers(layers)
        freed += layer_bytes
        if count:
            typer.echo(f"Deleted layer cache: {count} layers")
        if volumes:
            names, volume_bytes = housekeeping.prune_volumes(
                housekeeping.unused_volumes(cache, containers, anonymous_only=not all_)
            )
            freed += volume_bytes
            for name in names:
                typer.echo(f"Deleted volume: {name}")
        for item in remove_leftovers(cache):
            if item.error is None:
                typer.echo(f"Deleted {item.kind}: {item.path} ({item.why})")
    except (StorageError, ImageError, OSError) as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)
    typer.echo(f"Total reclaimed space: {human_size(freed)}")
