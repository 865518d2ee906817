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
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pysbx.policies.record import Record
from pysbx.sandbox.state import PRIVATE, private_folder, private_root

if TYPE_CHECKING:
    from pysbx.images import Image, Layer
    from pysbx.images.extract import UnpackOptions
    from pysbx.sandbox.idmap import IdMaps

T = TypeVar("T")


NAMESPACE_KEY = "ns-"  # in a cache key: unpacked as root of a user namespace (chain ids are hex)


class LayerOwners(Record):
    """Who owns the files of unpacked layers on the host. Root unpacks with each image id
    plus `offset` (its reserved range); an ordinary user with subordinate ids unpacks as root
    of a user namespace mapped by `userns` (the containers' own map), so the image's ids land
    on the mapped host ids; without them, as the user alone (other owners are recorded in an
    xattr). An id at or above `limit` is refused. All of it is in the cache key."""

    __slots__ = ("limit", "offset", "userns")

    def __init__(self, offset: int = 0, limit: int | None = None, userns: IdMaps | None = None) -> None:
        self.offset = offset
        self.limit = limit
        self.userns = userns

    def key(self) -> str:
        """The cache key's suffix: the same owners on disk, the same key."""
        if self.userns is None:
            return f"{self.offset}-{self.limit or 'any'}"
        mapped = ".".join(f"{r.container}:{r.host}:{r.size}" for r in (*self.userns.uids, *self.userns.gids))
        return f"{NAMESPACE_KEY}{hashlib.sha256(mapped.encode()).hexdigest()[:16]}-{self.limit}"

    def unpack_options(self, lowers: tuple[Path, ...] = ()) -> UnpackOptions:
        from pysbx.images.extract import UnpackOptions

        return UnpackOptions(id_offset=self.offset, id_limit=self.limit, lowers=lowers)


def unpacked_in_namespace(folder_name: str) -> bool:
    """Whether a cache folder's name (LayerOwners.key's suffix) says it was unpacked in a
    user namespace: reading it as it was written takes one."""
    return f"-{NAMESPACE_KEY}" in folder_name


def owners_for(id_maps: IdMaps) -> LayerOwners:
    """How the layers of a container mapped by `id_maps` are unpacked for this invoker."""
    if os.geteuid() == 0:
        return LayerOwners(id_maps.root_host_uid, id_maps.uids[0].size)
    if id_maps.via_helpers:
        from pysbx.sandbox.userns import mapped_size

        return LayerOwners(0, mapped_size(id_maps), id_maps)
    return LayerOwners()


def image_lowers(image: Image, owners: LayerOwners) -> tuple[Path, ...]:
    """The folders the container's overlay stacks, top first: the image's layers, each
    unpacked on first use; or one flattened folder when a layer cannot stand alone (it writes
    through a symlink or hard-links into a lower layer)."""
    from pysbx.images.extract import LayerNeedsParents

    layers_dir = Path(private_folder(os.path.join(private_root(), "layers")))
    lowers: list[Path] = []  # top first
    for layer, chain in zip(image.layers, chain_ids(image), strict=True):
        key = f"{chain[:32]}-{owners.key()}"
        if (layers_dir / f"{key}.flatten").exists():
            return (image_rootfs(image, owners),)
        try:
            lowers.insert(0, _cached_layer(image, layer, layers_dir / key, tuple(lowers), owners))
        except LayerNeedsParents:
            (layers_dir / f"{key}.flatten").touch()
            return (image_rootfs(image, owners),)
    shown = tuple(folder for folder in lowers if _has_entries(folder))
    return shown or (image_rootfs(image, owners),)


def chain_ids(image: Image) -> list[str]:
    """The OCI chain id of each layer: its diff_id folded over those of the layers below."""
    chain: list[str] = []
    for layer in image.layers:
        diff_id = str(layer.diff_id)
        chain.append(
            diff_id if not chain else "sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest()
        )
    return [value.partition(":")[2] for value in chain]


def _cached_layer(image: Image, layer: Layer, folder: Path, lowers: tuple[Path, ...], owners: LayerOwners) -> Path:
    from pysbx.images.extract import unpack_layer_folder

    root = folder / "root"
    if root.is_dir():
        return root
    with locked(folder.parent / f"{folder.name}.lock"):
        if root.is_dir():  # unpacked by another run while this one waited
            return root
        options = owners.unpack_options(lowers)
        _publish(folder, lambda staging: unpack_layer_folder(image, layer, staging, options), owners)
    return root


def image_rootfs(image: Image, owners: LayerOwners) -> Path:
    """The whole image flattened into one cached folder, for images whose layers cannot be
    stacked."""
    from pysbx.images.extract import unpack_image

    images = Path(private_folder(os.path.join(private_root(), "images")))
    folder = images / f"{image.manifest_digest.hex}-{owners.key()}"
    root = folder / "rootfs"
    if root.is_dir():
        return root
    with locked(folder.parent / f"{folder.name}.lock"):
        if not root.is_dir():
            options = owners.unpack_options()
            _publish(folder, lambda staging: unpack_image(image, staging, options), owners, "rootfs")
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


def _publish(folder: Path, fill: Callable[[Path], object], owners: LayerOwners, name: str = "root") -> None:
    """Fill `folder/name` under a temporary name, record its tree digest (for `pysandbox
    system check`), then rename it into place: a run killed half-way leaves only a
    `.unpack-*` folder, which no one reads (and prune removes). With a user namespace to
    unpack in, filling and digesting happen there, so the digest sees the owners the
    containers see."""
    from pysbx.sandbox.prune import remove_tree
    from pysbx.sandbox.treedigest import write_digest

    def fill_and_digest() -> None:
        fill(staging / name)
        if os.geteuid() == 0 and owners.userns is None:
            os.chown(staging / name, owners.offset, owners.offset)
        write_digest(str(staging), name)

    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=folder.parent))
    try:
        in_namespace(owners.userns, fill_and_digest)
        os.chmod(staging, PRIVATE)  # the runner reaches the root by descriptor, as its owner
        os.rename(staging, folder)
    finally:
        if staging.exists():
            with contextlib.suppress(OSError):  # what is left is a `.unpack-*` folder prune removes
                remove_tree(staging)


def in_namespace(userns: IdMaps | None, work: Callable[[], T]) -> T:
    """`work()` as root of a user namespace mapped by `userns`, or here when there is none."""
    if userns is None:
        return work()
    from pysbx.sandbox.userns import as_container_root

    return as_container_root(userns, work)


def _has_entries(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return next(entries, None) is not None


ETC_FILE_LIMIT = 4 << 20  # a passwd or group file of 4 MiB holds some 50,000 accounts


def etc_text(lowers: tuple[str, ...], name: str, userns: IdMaps | None = None) -> str:
    """The image's /etc/NAME as the container will see it, for USER lookups before it runs:
    read inside the layers (no symlink followed, regular files only, bounded), "" when the
    image has none (numeric ids still work). An ImageError when it is too large. Layers
    unpacked in a user namespace are read there when their owners kept us out (an /etc of
    mode 0700, as the container's root sees it, is still readable to that root)."""
    from pysbx.images.overlay import read_visible_file

    def read() -> bytes | None:
        return read_visible_file([Path(folder) for folder in lowers], f"etc/{name}", ETC_FILE_LIMIT)

    try:
        data = read()
    except PermissionError:
        if userns is None:
            raise
        data = in_namespace(userns, read)
    return "" if data is None else data.decode(errors="replace")
