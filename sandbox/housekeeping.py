"""`system df` and `system prune`: what pysandbox's storage holds, and removing what nothing
uses. Four kinds, as Docker counts them: images (the local store), containers (detached
ones, with their writable layers), volumes, and the layer cache (each image layer unpacked
once per id mapping, the part Docker calls its build cache: it can always be made again).

A layer or a volume that a running container uses is never removed, whatever started that
container (sandbox.inuse); nor one a stopped container would use when started again."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pysbx.images.localstore import LocalStore, StoredImage
from pysbx.sandbox import inuse
from pysbx.sandbox.containers import Container, all_containers
from pysbx.sandbox.prune import remove_tree

LAYER_FOLDERS = ("layers", "images")  # unpacked layers, and images flattened whole (sandbox.rootfs)


@dataclass(frozen=True)
class Usage:
    kind: str
    total: int
    active: int
    size: int
    reclaimable: int


def tree_size(path: Path) -> int:
    """Bytes on disk under `path`, as du counts them; what cannot be read (a container's
    other users' folders, for an ordinary user) is left out."""
    total = 0
    for folder, subfolders, files in os.walk(path, onerror=lambda _: None):
        for name in files + subfolders:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


def container_lowers(containers: list[Container]) -> set[str]:
    """The layer folders every detached container (running or stopped) mounts."""
    from pysbx.sandbox.specfile import load_spec

    used: set[str] = set()
    for container in containers:
        try:
            spec, _ = load_spec(str(container.folder))
        except (OSError, ValueError, KeyError):
            continue  # being set up or removed: its layers are held (sandbox.inuse) while it runs
        used.update(os.path.normpath(lower) for lower in spec.lowers)
    return used


def stored_chains(store: LocalStore | None, named_only: bool) -> set[str]:
    """The chain ids (and manifest digests, for flattened images) of the store's images, by
    which their unpacked layers are named."""
    kept: set[str] = set()
    if store is None:
        return kept
    for image in store.images():
        if not named_only or image.name is not None:
            kept |= stored_chains_of(store, image)
    return kept


def stored_chains_of(store: LocalStore, image: StoredImage) -> set[str]:
    from pysbx.images.errors import ImageError
    from pysbx.images.image import open_stored_image
    from pysbx.sandbox.rootfs import chain_ids

    try:
        opened = open_stored_image(store.folder, image.digest, image.label)
    except ImageError:
        return set()
    return {chain[:32] for chain in chain_ids(opened)} | {opened.manifest_digest.hex}


def images_in_use(cache: Path, store: LocalStore | None, containers: list[Container]) -> set[str]:
    """Digests of the stored images a container uses: a detached one's record says which;
    a foreground run holds its layers' locks (sandbox.inuse), so an image any of whose
    unpacked layers is held is in use."""
    used = {str(container.record.get("image_digest", "")) for container in containers}
    if store is None:
        return used
    held = {folder.name.split("-", 1)[0] for folder in layer_folders(cache) if _held(folder)}
    for image in store.images():
        if str(image.digest) not in used and held & stored_chains_of(store, image):
            used.add(str(image.digest))
    return used


def prune_images(
    cache: Path, store: LocalStore, containers: list[Container], all_: bool
) -> tuple[list[StoredImage], int]:
    """Remove the images no container uses that have no name (with `all_`, every such image),
    then every blob nothing reaches; the images removed and the bytes freed."""
    used = images_in_use(cache, store, containers)
    going = [image for image in store.images() if str(image.digest) not in used and (all_ or image.name is None)]
    store.remove({str(image.digest) for image in going})
    return going, store.collect_garbage()[1]


def _held(folder: Path) -> bool:
    claim = inuse.claim_unused(inuse.layer_lock_of(_lower_of(folder)))
    if claim is None:
        return os.path.exists(inuse.layer_lock_of(_lower_of(folder)))
    os.close(claim)
    return False


def layer_folders(cache: Path) -> Iterator[Path]:
    for kind in LAYER_FOLDERS:
        folder = cache / kind
        if folder.is_dir():
            yield from (entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def _lower_of(folder: Path) -> str:
    return str(folder / ("rootfs" if folder.parent.name == "images" else "root"))


def removable_layers(cache: Path, keep_chains: set[str], containers: list[Container]) -> list[Path]:
    """Layer folders no container mounts and no kept image is made of."""
    mounted = container_lowers(containers)
    return [
        folder
        for folder in layer_folders(cache)
        if _lower_of(folder) not in mounted and folder.name.split("-", 1)[0] not in keep_chains
    ]


def prune_layers(folders: list[Path]) -> tuple[int, int]:
    """Remove each layer folder no run holds (sandbox.inuse): renamed away under its lock,
    then deleted. Returns (layers removed, bytes freed)."""
    removed = freed = 0
    for folder in folders:
        claim = inuse.claim_unused(inuse.layer_lock_of(_lower_of(folder)), create=True)
        if claim is None:
            continue  # a run holds it
        unpacking = inuse.claim_unused(inuse.unpack_lock_of(_lower_of(folder)), create=True)
        if unpacking is None:
            os.close(claim)
            continue  # being unpacked (a run about to use it)
        claim_fds = (claim, unpacking)
        try:
            size = tree_size(folder)
            doomed = folder.with_name(f".prune-{folder.name}")
            os.rename(folder, doomed)
            remove_tree(doomed)
            removed, freed = removed + 1, freed + size
        finally:
            inuse.release(claim_fds)
    return removed, freed


def unused_volumes(cache: Path, containers: list[Container], anonymous_only: bool = False) -> list[Path]:
    """Volumes no detached container names (with `anonymous_only`, only those `-v /path`
    made, whose names are 64 hex digits)."""
    volumes = cache / "volumes"
    named = {volume for container in containers for volume in container.listed("volumes")}
    found = sorted(entry for entry in volumes.iterdir() if not entry.name.startswith(".")) if volumes.is_dir() else []
    return [f for f in found if f.name not in named and (not anonymous_only or _is_anonymous(f.name))]


def _is_anonymous(name: str) -> bool:
    return len(name) == 64 and all(char in "0123456789abcdef" for char in name)


def prune_volumes(folders: list[Path]) -> tuple[list[str], int]:
    """Remove each volume no run holds; returns the names removed and the bytes freed."""
    names, freed = [], 0
    for folder in folders:
        claim = inuse.claim_unused(str(folder), directory=True)
        if claim is None:
            continue
        try:
            size = tree_size(folder)
            doomed = folder.with_name(f".prune-{folder.name}")
            os.rename(folder, doomed)
            remove_tree(doomed)
            names.append(folder.name)
            freed += size
        finally:
            os.close(claim)
    return names, freed


def disk_usage(cache: Path, store: LocalStore | None) -> list[Usage]:
    """One row per kind: how many, how many in use, bytes, bytes a prune -a could free."""
    containers = list(all_containers())
    used = images_in_use(cache, store, containers)  # what prune -a spares
    images = [] if store is None else store.images()
    active_images = [image for image in images if str(image.digest) in used]
    image_bytes = 0 if store is None else store.disk_usage()
    active_bytes = 0 if store is None else store.reachable_size(active_images)
    running = {c.folder for c in containers if c.state() in ("running", "paused", "restarting")}
    volumes = unused_volumes(cache, [])
    idle_volumes = set(unused_volumes(cache, containers))
    idle_layers = set(removable_layers(cache, set(), containers))
    return [
        Usage("Images", len(images), len(active_images), image_bytes, image_bytes - active_bytes),
        _usage("Containers", [c.folder for c in containers], {c.folder for c in containers} - running),
        _usage("Local Volumes", volumes, idle_volumes),
        _usage("Layer cache", list(layer_folders(cache)), idle_layers),
    ]


def _usage(kind: str, folders: list[Path], idle: set[Path]) -> Usage:
    sizes = {folder: tree_size(folder) for folder in folders}
    return Usage(kind, len(folders), len(folders) - len(idle), sum(sizes.values()), sum(sizes[f] for f in idle))
