"""`pysandbox save`: images of the local store, with the signatures attached to them, as a
docker-save archive (Docker 25+'s: an OCI layout plus the legacy manifest.json, which both
`docker load` and OCI tools read), an OCI archive, or an OCI layout folder.

Manifests and every other blob are written byte for byte as stored, so the digests that
signatures sign are the same wherever the images go."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Any

from pysbx.images import mediatypes
from pysbx.images.digest import parse_digest
from pysbx.images.errors import ImageError
from pysbx.images.graph import reachable_blobs
from pysbx.images.image import CONTAINERD_NAME, REF_NAME, is_attached_artifact, open_stored_image
from pysbx.images.jsonfields import canonical_json
from pysbx.images.localstore import LocalStore, StoredImage, subject_of
from pysbx.images.writer import Data, Spooled, write_tar


class SaveFormat(StrEnum):
    docker_archive = "docker-archive"
    oci_archive = "oci-archive"
    oci_dir = "oci-dir"


def save_images(store: LocalStore, wanted: list[str], target: Path, save_format: SaveFormat) -> list[StoredImage]:
    """Write the images `wanted` names (and what is attached to them) to `target`; an
    archive appears whole or not at all."""
    chosen = [_find(store, text) for text in wanted]
    with store.locked(exclusive=False):
        entries = [_index_entry(image, save_format) for image in chosen]
        digests = {str(image.digest) for image in chosen}
        attached = [e for e in store.entries() if is_attached_artifact(e) and subject_of(store, e) in digests]
        live = reachable_blobs(store.read_blob, store.has_blob, [*entries, *attached])
        files: dict[str, Data] = {
            "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
            "index.json": canonical_json(
                {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [*entries, *attached]}
            ),
        }
        for text in sorted(live):
            algorithm, hex_digest = text.split(":", 1)
            path = store.folder / "blobs" / algorithm / hex_digest
            files[f"blobs/{algorithm}/{hex_digest}"] = Spooled(
                path, parse_digest(text, "the image store"), path.stat().st_size
            )
        if save_format is SaveFormat.docker_archive:
            files["manifest.json"] = canonical_json([_legacy_entry(store, image) for image in chosen])
        if save_format is SaveFormat.oci_dir:
            _write_folder(target, files)
        else:
            _write_archive(target, files)
    return chosen


def _find(store: LocalStore, text: str) -> StoredImage:
    found = store.find(text)
    if found is None:
        raise ImageError(f"{text}: no such image in the store")
    return found


def _index_entry(image: StoredImage, save_format: SaveFormat) -> dict[str, Any]:
    """The image's descriptor, named as each format names it: Docker 25+ puts the full name
    in containerd's annotation and the tag alone in ref.name; OCI tools (skopeo) read a
    full name in ref.name."""
    entry = image.descriptor
    if image.name is None:
        return entry
    if save_format is SaveFormat.docker_archive:
        entry["annotations"] = {CONTAINERD_NAME: image.name, REF_NAME: image.name.rsplit(":", 1)[-1]}
    else:
        entry["annotations"] = {REF_NAME: image.name}
    return entry


def _legacy_entry(store: LocalStore, image: StoredImage) -> dict[str, Any]:
    """manifest.json's entry: one platform's config and layers by path (for an index, the
    platform this host runs)."""
    opened = open_stored_image(store.folder, image.digest, image.label)
    return {
        "Config": f"blobs/{opened.config_digest.algorithm}/{opened.config_digest.hex}",
        "RepoTags": [_familiar(image.name)] if image.name else [],
        "Layers": [layer.location for layer in opened.layers],
    }


def _familiar(name: str) -> str:
    """`docker.io/library/busybox:1` as docker save writes it: `busybox:1`."""
    from pysbx.images.summary import familiar

    repository, _, tag = name.rpartition(":")
    return f"{familiar(repository)}:{tag}"


def _write_archive(target: Path, files: dict[str, Data]) -> None:
    folder = target.parent if str(target.parent) else Path(".")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(descriptor)
    try:
        write_tar(Path(temporary), files.items())
        os.chmod(temporary, 0o644 & ~_umask())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_folder(target: Path, files: dict[str, Data]) -> None:
    """A new layout folder, written through descriptors of folders we made: its parent may be
    a folder others can write (/tmp, a shared folder), where a member planted as a symlink
    would otherwise be written through."""
    try:
        os.mkdir(target, 0o755)
    except FileExistsError:
        raise ImageError(f"{target}: exists; an OCI layout is written to a new folder") from None
    root = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(root).st_uid != os.geteuid():
            raise ImageError(f"{target}: replaced by another user's folder while it was being made")
        for name, data in files.items():
            _write_member(root, name.split("/"), data)
    finally:
        os.close(root)


def _write_member(root: int, parts: list[str], data: Data) -> None:
    folder = root
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=folder)
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            if folder != root:
                os.close(folder)
            folder = inner
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(parts[-1], flags, 0o644, dir_fd=folder), "wb") as out:
            if isinstance(data, Spooled):
                with open(data.path, "rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
            else:
                out.write(data)
    finally:
        if folder != root:
            os.close(folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
