"""`pysandbox volume create|ls|rm`: named volumes, kept across runs under the state folder
(Docker's volumes: data that outlives containers, unlike the writable layer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pysbx.cli.kit import fail
from pysbx.sandbox.errors import EXIT_SETUP_FAILED
from pysbx.sandbox.names import InvalidName
from pysbx.sandbox.state import StorageError
from pysbx.sandbox.volumes import remove_volume, volume_folder, volumes_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    pass

app = typer.Typer(
    help="Named volumes that persist across runs (-v NAME:/path).", no_args_is_help=True, rich_markup_mode=None
)


def _volumes() -> Path:
    try:
        return volumes_root()
    except StorageError as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)


def _folder(name: str) -> Path:
    try:
        return volume_folder(name)
    except (InvalidName, StorageError) as error:
        fail("pysandbox", str(error), EXIT_SETUP_FAILED)


@app.command()
def create(name: Annotated[str, typer.Argument(help="The volume's name.", metavar="NAME")]) -> None:
    """Create an empty volume (run -v NAME:/path creates one on first use too)."""
    folder = _folder(name)
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    typer.echo(name)


@app.command("ls")
def list_volumes() -> None:
    """List volumes with their size."""
    for folder in sorted(_volumes().iterdir()):
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
        typer.echo(f"{folder.name}\t{size}")


@app.command()
def rm(names: Annotated[list[str], typer.Argument(help="Volumes to delete, with their data.")]) -> None:
    """Delete volumes and everything in them (not one a container still uses)."""
    from pysbx.sandbox.containers import all_containers

    users = {volume: container.name for container in all_containers() for volume in container.listed("volumes")}
    for name in names:
        _folder(name)  # the name checked
        if name in users:
            fail(
                "pysandbox", f"volume {name!r} is in use by container {users[name]}: remove it first", EXIT_SETUP_FAILED
            )
        try:
            removed = remove_volume(name)
        except OSError as error:
            fail("pysandbox", f"cannot remove volume {name!r} entirely: {error.strerror or error}", EXIT_SETUP_FAILED)
        if not removed:
            fail("pysandbox", f"no volume named {name!r}", EXIT_SETUP_FAILED)
        typer.echo(name)
