"""Named volumes in the invoker's private storage (`volumes/NAME/data`), and Docker's
anonymous volumes: `-v /path` with no source is a volume of its own, named by a random id,
which belongs to the container that made it (`rm -v` and `--rm` remove it with the
container; `volume rm` may remove it once no container uses it)."""

from __future__ import annotations

import os
from pathlib import Path

from pysbx.sandbox.names import check_name
from pysbx.sandbox.state import private_folder, private_root


def is_bind_source(source: str) -> bool:
    """A -v source that is a host path (a named volume is a bare name)."""
    return source.startswith(("/", "."))


def is_anonymous(volume: str) -> bool:
    """`-v /path`: Docker's anonymous volume (no source)."""
    return volume.startswith("/") and ":" not in volume


def volumes_root() -> Path:
    return Path(private_folder(os.path.join(private_root(), "volumes")))


def volume_folder(name: str) -> Path:
    """The volume's folder (its name checked: it is joined into a path)."""
    return volumes_root() / check_name("volume", name)


def data_folder(name: str, owner: int | None) -> Path:
    """A named volume's data folder, made when missing; when root runs us, it belongs to the
    container's mapped root. The folders above it are private, so what a container leaves in
    a volume (a setuid file) is out of every other user's reach."""
    path = Path(private_folder(str(volume_folder(name)))) / "data"
    path.mkdir(mode=0o755, exist_ok=True)
    if owner is not None and path.stat().st_uid == 0 and not any(path.iterdir()):
        os.chown(path, owner, owner)  # made by `volume create` or just now: hand it to container root
    return path


def remove_volume(name: str) -> bool:
    """Delete a volume and its data (as container root where a container's other users own
    files); False when there was none."""
    from pysbx.sandbox.prune import remove_tree

    folder = volume_folder(name)
    if not folder.is_dir():
        return False
    remove_tree(folder)
    return True


def with_anonymous_volumes(volumes: list[str]) -> tuple[list[str], list[str]]:
    """-v flags with each `-v /path` (Docker's anonymous volume) given a new volume of its
    own, `ID:/path`; and the names made up."""
    flags: list[str] = []
    made: list[str] = []
    for volume in volumes:
        if is_anonymous(volume):
            made.append(os.urandom(32).hex())
            volume = f"{made[-1]}:{volume}"
        flags.append(volume)
    return flags, made


def volume_names(volumes: list[str]) -> list[str]:
    """The named volumes -v flags use (a bind's source is a path)."""
    sources = (volume.partition(":")[0] for volume in volumes)
    return [source for source in sources if source and not is_bind_source(source)]


def remove_anonymous(names: list[str]) -> None:
    """Remove a container's anonymous volumes (--rm, rm -v); each name checked again."""
    for name in names:
        remove_volume(name)
