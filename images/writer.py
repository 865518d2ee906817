"""Writing images: OCI layouts and archives, and docker-save archives (legacy and Docker 25+).

Used by `pysandbox image build` to turn a folder into an image, by the tests to build every
layout and compression they read back, and by the benchmarks. Output is deterministic:
the same input gives the same digests."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
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
from pysbx.images.jsonfields import canonical_json
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


@dataclass(frozen=True)
class Spooled:
    """Bytes written to a file as they were made, with their digest and size: a layer of
    `image build` is never held in memory whole."""

    path: Path
    digest: Digest
    size: int


class _HashingFile:
    """A write-only file that digests what passes through it (tarfile and the compressors
    write to it)."""

    def __init__(self, path: Path) -> None:
        import hashlib

        self._file = open(path, "xb")  # noqa: SIM115 - closed by spooled()
        self._hash = hashlib.sha256()
        self._size = 0
        self.path = path

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self._size += len(data)
        return self._file.write(data)

    def tell(self) -> int:
        return self._size

    def flush(self) -> None:
        self._file.flush()

    def spooled(self) -> Spooled:
        self._file.close()
        return Spooled(self.path, Digest("sha256", self._hash.hexdigest()), self._size)


Data = bytes | Spooled  # a blob in memory, or spooled to a file


@dataclass
class NewLayer:
    tar: Data
    compression: str = "gzip"
    created_by: str = ""

    @property
    def diff_id(self) -> Digest:
        return self.tar.digest if isinstance(self.tar, Spooled) else digest_bytes(self.tar)


@dataclass
class NewImage:
    layers: list[NewLayer]
    config: dict[str, Any] = field(default_factory=dict)
    platform: Platform = DEFAULT_PLATFORM
    created: str = "1970-01-01T00:00:00Z"
    docker_media_types: bool = False


def compress_data(data: Data, compression: str) -> Data:
    """`compress` for a blob in memory, or streamed file to file for a spooled one."""
    if not isinstance(data, Spooled):
        return compress(data, compression)
    if compression == "none":
        return data
    target = _HashingFile(data.path.with_name(data.path.name + f".{compression}"))
    try:
        with open(data.path, "rb") as source:
            if compression == "gzip":
                _gzip(source, target)
            elif compression == "zstd":
                compressor = zstandard.ZstdCompressor(level=3)
                with compressor.stream_writer(target, size=data.size, closefd=False) as stream:  # type: ignore[arg-type]
                    _copy(source, stream)
            else:
                raise ImageError(f"unknown compression {compression!r} (gzip, zstd or none)")
    finally:
        compressed = target.spooled()
    return compressed


def _gzip(source: Any, target: _HashingFile) -> None:
    """gzip, streamed, byte for byte what `compress` makes in memory (gzip.compress's own
    header, a raw deflate stream at the same level, the CRC and size trailer), so that a
    spooled layer and one in memory have one digest."""
    import struct
    import zlib

    target.write(gzip.compress(b"", compresslevel=6, mtime=0)[:10])
    deflate, crc, size = zlib.compressobj(6, zlib.DEFLATED, -15), 0, 0
    while chunk := source.read(1 << 20):
        crc, size = zlib.crc32(chunk, crc), size + len(chunk)
        target.write(deflate.compress(chunk))
    target.write(deflate.flush() + struct.pack("<LL", crc, size & 0xFFFFFFFF))


def _copy(source: Any, target: Any) -> None:
    while chunk := source.read(1 << 20):
        target.write(chunk)


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "zstd":  # streamed as compress_data streams it: one layer, one digest
        buffer = io.BytesIO()
        with zstandard.ZstdCompressor(level=3).stream_writer(buffer, size=len(data), closefd=False) as stream:
            for start in range(0, len(data), 1 << 20):
                stream.write(data[start : start + (1 << 20)])
        return buffer.getvalue()
    if compression == "none":
        return data
    raise ImageError(f"unknown compression {compression!r} (gzip, zstd or none)")


class Blobs:
    """Content-addressed blobs waiting to be written; each returns its descriptor."""

    def __init__(self) -> None:
        self.data: dict[Digest, Data] = {}

    def add(self, data: Data, media_type: str, **extra: Any) -> dict[str, Any]:
        digest, size = (data.digest, data.size) if isinstance(data, Spooled) else (digest_bytes(data), len(data))
        self.data[digest] = data
        return {"mediaType": media_type, "digest": str(digest), "size": size, **extra}


def config_document(image: NewImage) -> dict[str, Any]:
    history = [
        {"created": image.created, "created_by": layer.created_by or "pysandbox image build"} for layer in image.layers
    ]
    document: dict[str, Any] = {
        "created": image.created,
        "architecture": image.platform.architecture,
        "os": image.platform.os,
        "config": image.config,
        "rootfs": {"type": "layers", "diff_ids": [str(layer.diff_id) for layer in image.layers]},
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
        canonical_json(config_document(image)),
        mediatypes.DOCKER_CONFIG if docker else mediatypes.OCI_CONFIG,
    )
    layers = [
        blobs.add(compress_data(layer.tar, layer.compression), layer_types[layer.compression]) for layer in image.layers
    ]
    manifest_type = mediatypes.DOCKER_MANIFEST if docker else mediatypes.OCI_MANIFEST
    manifest = {"schemaVersion": 2, "mediaType": manifest_type, "config": config, "layers": layers}
    return blobs.add(canonical_json(manifest), manifest_type)


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
    return blobs.add(canonical_json(index), mediatypes.OCI_INDEX)


def _layout_files(blobs: Blobs, tagged: list[tuple[str | None, dict[str, Any]]]) -> dict[str, Data]:
    entries = []
    for ref, descriptor in tagged:
        entry = dict(descriptor)
        if ref is not None:
            entry["annotations"] = {"org.opencontainers.image.ref.name": ref}
        entries.append(entry)
    files: dict[str, Data] = {
        "oci-layout": canonical_json({"imageLayoutVersion": "1.0.0"}),
        "index.json": canonical_json({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}),
    }
    for digest, data in blobs.data.items():
        files[f"blobs/{digest.algorithm}/{digest.hex}"] = data
    return files


def write_oci_layout(target: Path, tagged: list[tuple[str | None, list[NewImage]]]) -> None:
    """Write an OCI layout folder; a tag with several images becomes a multi-platform index."""
    blobs = Blobs()
    descriptors = [(ref, _image_or_index(blobs, images)) for ref, images in tagged]
    write_files(target, _layout_files(blobs, descriptors))


def write_files(target: Path, files: dict[str, Data]) -> None:
    """Each file of a layout under `target`, its folders made as needed."""
    for name, data in files.items():
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Spooled):
            shutil.copyfile(data.path, path)
        else:
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
        manifest = json.loads(blobs.data[Digest("sha256", descriptor["digest"].split(":")[1])])  # type: ignore[arg-type]
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
        files["index.json"] = canonical_json(
            {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": index_entries}
        )
        files["manifest.json"] = canonical_json(
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
    config = canonical_json(config_document(image))
    config_name = f"{digest_bytes(config).hex}.json"
    files = {config_name: config}
    layer_names = []
    for layer in image.layers:
        layer_id = layer.diff_id.hex
        name = f"{layer_id}/layer.tar"
        files[name] = compress_data(layer.tar, layer.compression) if compress_legacy else layer.tar
        files[f"{layer_id}/VERSION"] = b"1.0"
        layer_names.append(name)
    files["manifest.json"] = canonical_json([{"Config": config_name, "RepoTags": repo_tags, "Layers": layer_names}])
    write_tar(target, files.items())


def write_tar(target: Path, files: Iterable[tuple[str, Data]]) -> None:
    with tarfile.open(target, "w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in sorted(files, key=lambda item: item[0]):
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if isinstance(data, Spooled):
                info.size = data.size
                with open(data.path, "rb") as stream:
                    archive.addfile(info, stream)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))


def tar_from_directory(root: Path, owner: tuple[int, int] | None = (0, 0), clamp_mtime: int | None = None) -> bytes:
    """A layer tar of everything under `root`, in memory (see `write_layer_tar`)."""
    buffer = io.BytesIO()
    write_layer_tar(buffer, root, owner, clamp_mtime)
    return buffer.getvalue()


def spool_layer_tar(
    root: Path, spool: Path, owner: tuple[int, int] | None = (0, 0), clamp_mtime: int | None = None
) -> Spooled:
    """The layer tar of `root` written to the new file `spool` as it is made, digested on the way."""
    target = _HashingFile(spool)
    try:
        write_layer_tar(target, root, owner, clamp_mtime)
    finally:
        spooled = target.spooled()
    return spooled


def write_layer_tar(
    stream: Any, root: Path, owner: tuple[int, int] | None = (0, 0), clamp_mtime: int | None = None
) -> None:
    """A layer tar of everything under `root`, in sorted order, hard links kept, to `stream`;
    files are owned by `owner` (root by default, as a build would) unless owner is None. With
    `clamp_mtime` (SOURCE_DATE_EPOCH), no entry is newer than it, as BuildKit's
    rewrite-timestamp does: the same tree checked out at different times gives one digest."""
    seen_inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as archive:
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


def _sorted_walk(root: Path) -> Iterable[Path]:
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        path = Path(entry.path)
        yield path
        if entry.is_dir(follow_symlinks=False):
            yield from _sorted_walk(path)
