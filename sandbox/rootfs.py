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

from pysbx.sandbox.state import PRIVATE, private_folder, private_root

if TYPE_CHECKING:
    from pysbx.images import Image, Layer


def image_lowers(image: Image, id_offset: int, id_limit: int | None = None) -> tuple[Path, ...]:
    """The folders the container's overlay stacks, top first: the image's layers, each
    unpacked on first use; or one flattened folder when a layer cannot stand alone (it writes
    through a symlink or hard-links into a lower layer). Files are owned by their image id
    plus `id_offset`; an id at or above `id_limit` is refused (both are in the cache key)."""
    from pysbx.images.extract import LayerNeedsParents

    layers_dir = Path(private_folder(os.path.join(private_root(), "layers")))
    lowers: list[Path] = []  # top first
    for layer, chain in zip(image.layers, chain_ids(image), strict=True):
        key = f"{chain[:32]}-{id_offset}-{id_limit or 'any'}"
        if (layers_dir / f"{key}.flatten").exists():
            return (image_rootfs(image, id_offset, id_limit),)
        try:
            lowers.insert(0, _cached_layer(image, layer, layers_dir / key, tuple(lowers), (id_offset, id_limit)))
        except LayerNeedsParents:
            (layers_dir / f"{key}.flatten").touch()
            return (image_rootfs(image, id_offset, id_limit),)
    shown = tuple(folder for folder in lowers if _has_entries(folder))
    return shown or (image_rootfs(image, id_offset, id_limit),)


def chain_ids(image: Image) -> list[str]:
    """The OCI chain id of each layer: its diff_id folded over those of the layers below."""
    chain: list[str] = []
    for layer in image.layers:
        diff_id = str(layer.diff_id)
        chain.append(
            diff_id if not chain else "sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest()
        )
    return [value.partition(":")[2] for value in chain]


def _cached_layer(
    image: Image, layer: Layer, folder: Path, lowers: tuple[Path, ...], ids: tuple[int, int | None]
) -> Path:
    from pysbx.images.extract import UnpackOptions, unpack_layer_folder

    root = folder / "root"
    if root.is_dir():
        return root
    with locked(folder.parent / f"{folder.name}.lock"):
        if root.is_dir():  # unpacked by another run while this one waited
            return root
        options = UnpackOptions(id_offset=ids[0], id_limit=ids[1], lowers=lowers)
        _publish(folder, lambda staging: unpack_layer_folder(image, layer, staging, options), ids[0])
    return root


def image_rootfs(image: Image, id_offset: int, id_limit: int | None = None) -> Path:
    """The whole image flattened into one cached folder, for images whose layers cannot be
    stacked."""
    from pysbx.images.extract import UnpackOptions, unpack_image

    images = Path(private_folder(os.path.join(private_root(), "images")))
    folder = images / f"{image.manifest_digest.hex}-{id_offset}-{id_limit or 'any'}"
    root = folder / "rootfs"
    if root.is_dir():
        return root
    with locked(folder.parent / f"{folder.name}.lock"):
        if not root.is_dir():
            options = UnpackOptions(id_offset=id_offset, id_limit=id_limit)
            _publish(folder, lambda staging: unpack_image(image, staging, options), id_offset, "rootfs")
    return root


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    private_folder(str(path.parent))
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _publish(folder: Path, fill: Callable[[Path], object], id_offset: int, name: str = "root") -> None:
    """Fill `folder/name` under a temporary name, record its tree digest (for `pysandbox
    system check`), then rename it into place: a run killed half-way leaves only a
    `.unpack-*` folder, which no one reads (and prune removes)."""
    from pysbx.sandbox.treedigest import write_digest

    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=folder.parent))
    try:
        fill(staging / name)
        if os.geteuid() == 0:
            os.chown(staging / name, id_offset, id_offset)
        write_digest(str(staging), name)
        os.chmod(staging, PRIVATE)  # the runner reaches the root by descriptor, as its owner
        os.rename(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _has_entries(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return next(entries, None) is not None


ETC_FILE_LIMIT = 4 << 20  # a passwd or group file of 4 MiB holds some 50,000 accounts


def etc_text(lowers: tuple[str, ...], name: str) -> str:
    """The image's /etc/NAME as the container will see it, for USER lookups before it runs:
    read inside the layers (no symlink followed, regular files only, bounded), "" when the
    image has none (numeric ids still work). An ImageError when it is too large."""
    from pysbx.images.overlay import read_visible_file

    data = read_visible_file([Path(folder) for folder in lowers], f"etc/{name}", ETC_FILE_LIMIT)
    return "" if data is None else data.decode(errors="replace")
