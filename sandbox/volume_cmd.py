"""`pysandbox volume create|ls|rm`: named volumes, kept across runs under the state folder
(Docker's volumes: data that outlives containers, unlike the writable layer)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Annotated

import typer

from sandbox.clikit import fail
from sandbox.state import cache_root

EXIT_SETUP_FAILED = 125
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

app = typer.Typer(
    help="Named volumes that persist across runs (-v NAME:/path).", no_args_is_help=True, rich_markup_mode=None
)


def _folder(name: str) -> Path:
    if not _NAME.match(name):
        fail("pysandbox", f"volume name {name!r}: letters, digits, '_', '.' and '-' only", EXIT_SETUP_FAILED)
    return Path(cache_root()) / "volumes" / name


@app.command()
def create(name: Annotated[str, typer.Argument(help="The volume's name.")]) -> None:
    """Create an empty volume (run -v NAME:/path creates one on first use too)."""
    folder = _folder(name)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    typer.echo(name)


@app.command("ls")
def list_volumes() -> None:
    """List volumes with their size."""
    root = Path(cache_root()) / "volumes"
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
        typer.echo(f"{folder.name}\t{size}")


@app.command()
def rm(names: Annotated[list[str], typer.Argument(help="Volumes to delete, with their data.")]) -> None:
    """Delete volumes and everything in them."""
    for name in names:
        folder = _folder(name)
        if not folder.is_dir():
            fail("pysandbox", f"no volume named {name!r}", EXIT_SETUP_FAILED)
        shutil.rmtree(folder)
        typer.echo(name)
