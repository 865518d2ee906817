"""The container's root filesystem on disk: each layer unpacked once into a cache folder
keyed by its chain id (the layer and everything below it, as containerd keys snapshots), so
images built on the same base share it; read-only from then on, with mounts.mount_overlay
stacking them under a per-container writable layer. An image whose layers cannot stand alone
is flattened once instead, keyed by its manifest digest. (The cold path of `run` uses this;
sandbox.state holds what the warm path needs.)

Concurrent runs of a new image unpack each layer once: a lock per layer, and every folder
is written under a temporary name and renamed into place, so none is ever seen half-written."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.state import cache_root

if TYPE_CHECKING:
    from images import Image, Layer


def image_lowers(image: Image, id_offset: int) -> tuple[Path, ...]:
    """The folders the container's overlay stacks, top first: the image's layers, each
    unpacked on first use; or one flattened folder when a layer cannot stand alone (it writes
    through a symlink or hard-links into a lower layer)."""
    from images.extract import LayerNeedsParents

    layers_dir = Path(cache_root()) / "layers"
    lowers: list[Path] = []  # top first
    for layer, chain in zip(image.layers, chain_ids(image), strict=True):
        key = f"{chain[:32]}-{id_offset}"
        if (layers_dir / f"{key}.flatten").exists():
            return (image_rootfs(image, id_offset),)
        try:
            lowers.insert(0, _cached_layer(image, layer, layers_dir / key, tuple(lowers), id_offset))
        except LayerNeedsParents:
            (layers_dir / f"{key}.flatten").touch()
            return (image_rootfs(image, id_offset),)
    shown = tuple(folder for folder in lowers if _has_entries(folder))
    return shown or (image_rootfs(image, id_offset),)


def chain_ids(image: Image) -> list[str]:
    """The OCI chain id of each layer: its diff_id folded over those of the layers below."""
    chain: list[str] = []
    for layer in image.layers:
        diff_id = str(layer.diff_id)
        chain.append(
            diff_id if not chain else "sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest()
        )
    return [value.partition(":")[2] for value in chain]


def _cached_layer(image: Image, layer: Layer, folder: Path, lowers: tuple[Path, ...], id_offset: int) -> Path:
    from images.extract import UnpackOptions, unpack_layer_folder

    root = folder / "root"
    if root.is_dir():
        return root
    with _locked(folder.parent / f"{folder.name}.lock"):
        if root.is_dir():  # unpacked by another run while this one waited
            return root
        options = UnpackOptions(id_offset=id_offset, lowers=lowers)
        _publish(folder, lambda staging: unpack_layer_folder(image, layer, staging, options), id_offset)
    return root


def image_rootfs(image: Image, id_offset: int) -> Path:
    """The whole image flattened into one cached folder, for images whose layers cannot be
    stacked."""
    from images.extract import UnpackOptions, unpack_image

    folder = Path(cache_root()) / "images" / f"{image.manifest_digest.hex}-{id_offset}"
    root = folder / "rootfs"
    if root.is_dir():
        return root
    with _locked(folder.parent / f"{folder.name}.lock"):
        if not root.is_dir():
            options = UnpackOptions(id_offset=id_offset)
            _publish(folder, lambda staging: unpack_image(image, staging, options), id_offset, "rootfs")
    return root


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # 0711: the container's mapped ids must traverse to a lower folder, not list the cache.
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _publish(folder: Path, fill: Callable[[Path], object], id_offset: int, name: str = "root") -> None:
    """Fill `folder/name` under a temporary name, then rename it into place: a run killed
    half-way leaves only a `.unpack-*` folder, which no one reads (and prune removes)."""
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=folder.parent))
    try:
        fill(staging / name)
        if os.geteuid() == 0:
            os.chown(staging / name, id_offset, id_offset)
        os.chmod(staging, 0o755)
        os.rename(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _has_entries(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return next(entries, None) is not None


def etc_file(lowers: tuple[str, ...], name: str) -> str | None:
    """The image's /etc/NAME as the container will see it (for USER lookups before it runs)."""
    from images.overlay import visible

    found = visible([Path(folder) for folder in lowers], f"etc/{name}")
    return str(found[0]) if found is not None else None
