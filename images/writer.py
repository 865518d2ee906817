"""Writing images: OCI layouts and archives, and docker-save archives (legacy and Docker 25+).

Used by `pysandbox image build` to turn a folder into an image, by the tests to build every
layout and compression they read back, and by the benchmarks. Output is deterministic:
the same input gives the same digests."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from pysbx.images import mediatypes
from pysbx.images.digest import Digest, digest_bytes
from pysbx.images.errors import ImageError
from pysbx.images.platform import DEFAULT_PLATFORM, Platform

_OCI_LAYER_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
_DOCKER_LAYER_TYPES = {
    "gzip": mediatypes.DOCKER_LAYER_GZIP,
    "zstd": "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "none": "application/vnd.docker.image.rootfs.diff.tar",
}


@dataclass
class NewLayer:
    tar: bytes
    compression: str = "gzip"
    created_by: str = ""


@dataclass
class NewImage:
    layers: list[NewLayer]
    config: dict[str, Any] = field(default_factory=dict)
    platform: Platform = DEFAULT_PLATFORM
    created: str = "1970-01-01T00:00:00Z"
    docker_media_types: bool = False


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":
        return bytes(zstandard.ZstdCompressor(level=3).compress(data))
    if compression == "none":
        return data
    raise ImageError(f"unknown compression {compression!r} (gzip, zstd or none)")


class Blobs:
    """Content-addressed blobs waiting to be written; each returns its descriptor."""

    def __init__(self) -> None:
        self.data: dict[Digest, bytes] = {}

    def add(self, data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        digest = digest_bytes(data)
        self.data[digest] = data
        return {"mediaType": media_type, "digest": str(digest), "size": len(data), **extra}


def config_document(image: NewImage) -> dict[str, Any]:
    history = [
        {"created": image.created, "created_by": layer.created_by or "pysandbox image build"} for layer in image.layers
    ]
    document: dict[str, Any] = {
        "created": image.created,
        "architecture": image.platform.architecture,
        "os": image.platform.os,
        "config": image.config,
        "rootfs": {"type": "layers", "diff_ids": [str(digest_bytes(layer.tar)) for layer in image.layers]},
        "history": history,
    }
    if image.platform.variant:
        document["variant"] = image.platform.variant
    return document


def add_image(blobs: Blobs, image: NewImage) -> dict[str, Any]:
    """Add config, layers and manifest of one image; return the manifest's descriptor."""
    docker = image.docker_media_types
    layer_types = _DOCKER_LAYER_TYPES if docker else _OCI_LAYER_TYPES
    config = blobs.add(
        _canonical(config_document(image)),
        mediatypes.DOCKER_CONFIG if docker else mediatypes.OCI_CONFIG,
    )
    layers = [
        blobs.add(compress(layer.tar, layer.compression), layer_types[layer.compression]) for layer in image.layers
    ]
    manifest_type = mediatypes.DOCKER_MANIFEST if docker else mediatypes.OCI_MANIFEST
    manifest = {"schemaVersion": 2, "mediaType": manifest_type, "config": config, "layers": layers}
    return blobs.add(_canonical(manifest), manifest_type)


def add_index(blobs: Blobs, images: list[NewImage]) -> dict[str, Any]:
    """A multi-platform image index over `images`."""
    manifests = []
    for image in images:
        descriptor = add_image(blobs, image)
        platform = {"os": image.platform.os, "architecture": image.platform.architecture}
        if image.platform.variant:
            platform["variant"] = image.platform.variant
        manifests.append({**descriptor, "platform": platform})
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": manifests}
    return blobs.add(_canonical(index), mediatypes.OCI_INDEX)


def _canonical(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _layout_files(blobs: Blobs, tagged: list[tuple[str | None, dict[str, Any]]]) -> dict[str, bytes]:
    entries = []
    for ref, descriptor in tagged:
        entry = dict(descriptor)
        if ref is not None:
            entry["annotations"] = {"org.opencontainers.image.ref.name": ref}
        entries.append(entry)
    files = {
        "oci-layout": _canonical({"imageLayoutVersion": "1.0.0"}),
        "index.json": _canonical({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}),
    }
    for digest, data in blobs.data.items():
        files[f"blobs/{digest.algorithm}/{digest.hex}"] = data
    return files


def write_oci_layout(target: Path, tagged: list[tuple[str | None, list[NewImage]]]) -> None:
    """Write an OCI layout folder; a tag with several images becomes a multi-platform index."""
    blobs = Blobs()
    descriptors = [(ref, _image_or_index(blobs, images)) for ref, images in tagged]
    for name, data in _layout_files(blobs, descriptors).items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def write_oci_archive(target: Path, tagged: list[tuple[str | None, list[NewImage]]]) -> None:
    blobs = Blobs()
    descriptors = [(ref, _image_or_index(blobs, images)) for ref, images in tagged]
    write_tar(target, _layout_files(blobs, descriptors).items())


def _image_or_index(blobs: Blobs, images: list[NewImage]) -> dict[str, Any]:
    return add_image(blobs, images[0]) if len(images) == 1 else add_index(blobs, images)


def write_docker_archive(
    target: Path, image: NewImage, repo_tags: list[str], oci_inside: bool = False, compress_legacy: bool = False
) -> None:
    """`docker save` output: the legacy layout, or (oci_inside) Docker 25+'s, which is an
    OCI layout plus the legacy manifest.json pointing into blobs/. Legacy layers are stored
    uncompressed as `<id>/layer.tar`, as docker save writes them (dive reads nothing else);
    `compress_legacy` writes them compressed, as some other tools do, for readers to cope."""
    if oci_inside:
        blobs = Blobs()
        descriptor = add_image(blobs, image)
        files = _layout_files(blobs, [])
        manifest = json.loads(blobs.data[Digest("sha256", descriptor["digest"].split(":")[1])])
        index_entries = [
            {
                **descriptor,
                "annotations": {
                    "io.containerd.image.name": tag,
                    "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[-1],
                },
            }
            for tag in repo_tags
        ] or [descriptor]
        files["index.json"] = _canonical(
            {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": index_entries}
        )
        files["manifest.json"] = _canonical(
            [
                {
                    "Config": "blobs/" + manifest["config"]["digest"].replace(":", "/"),
                    "RepoTags": repo_tags,
                    "Layers": ["blobs/" + layer["digest"].replace(":", "/") for layer in manifest["layers"]],
                }
            ]
        )
        write_tar(target, files.items())
        return
    config = _canonical(config_document(image))
    config_name = f"{digest_bytes(config).hex}.json"
    files = {config_name: config}
    layer_names = []
    for layer in image.layers:
        layer_id = digest_bytes(layer.tar).hex
        name = f"{layer_id}/layer.tar"
        files[name] = compress(layer.tar, layer.compression) if compress_legacy else layer.tar
        files[f"{layer_id}/VERSION"] = b"1.0"
        layer_names.append(name)
    files["manifest.json"] = _canonical([{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}])
    write_tar(target, files.items())


def write_tar(target: Path, files: Iterable[tuple[str, bytes]]) -> None:
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))


def tar_from_directory(root: Path, owner: tuple[int, int] | None = (0, 0), clamp_mtime: int | None = None) -> bytes:
    """A layer tar of everything under `root`, in sorted order, hard links kept; files are
    owned by `owner` (root by default, as a build would) unless owner is None. With
    `clamp_mtime` (SOURCE_DATE_EPOCH), no entry is newer than it, as BuildKit's
    rewrite-timestamp does: the same tree checked out at different times gives one digest."""
    buffer = io.BytesIO()
    seen_inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in _sorted_walk(root):
            name = path.relative_to(root).as_posix()
            info = archive.gettarinfo(str(path), arcname=name)
            if owner is not None:
                info.uid, info.gid = owner
                info.uname = info.gname = ""
            if clamp_mtime is not None:
                info.mtime = min(int(info.mtime), clamp_mtime)
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in seen_inodes:
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, seen_inodes[key], 0
                else:
                    seen_inodes[key] = name
            if info.isfile():
                with open(path, "rb") as data:
                    archive.addfile(info, data)
            else:
                archive.addfile(info)
    return buffer.getvalue()


def _sorted_walk(root: Path) -> Iterable[Path]:
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        path = Path(entry.path)
        yield path
        if entry.is_dir(follow_symlinks=False):
            yield from _sorted_walk(path)
