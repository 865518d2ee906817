"""Opening an image: find the manifest for the requested reference and platform, verify
the manifest and config against their digests, and describe each layer.

IMAGE is a path to a docker-save archive (legacy or Docker 25+), an OCI archive or an OCI
layout folder, optionally followed by `:REF` to pick one of several images in it."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pysbx.images import mediatypes
from pysbx.images.config import HistoryEntry, ImageConfig, history_per_layer, parse_config
from pysbx.images.digest import Digest, digest_bytes, parse_digest
from pysbx.images.errors import ImageError
from pysbx.images.jsonfields import as_list, as_object, load_json, load_json_object, opt_str, opt_str_map, req_int
from pysbx.images.platform import DEFAULT_PLATFORM, Platform, parse_platform
from pysbx.images.references import is_tag_alone, reference_matches
from pysbx.images.store import (
    MAX_DOCUMENT_BYTES,
    BlobStore,
    DirectoryStore,
    open_store,
    read_document,
    sniff_compression,
)

REF_NAME = "org.opencontainers.image.ref.name"
STORED_LAYOUT = "local store"
CONTAINERD_NAME = "io.containerd.image.name"
_MAX_INDEX_DEPTH = 4


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str]
    platform: Platform | None


@dataclass(frozen=True, slots=True)
class Layer:
    index: int
    digest: Digest
    size: int
    media_type: str
    compression: str
    diff_id: Digest
    history: HistoryEntry | None
    location: str

    @property
    def label(self) -> str:
        return f"layer {self.index + 1} ({self.digest.short()})"


@dataclass(frozen=True)
class Image:
    source: str
    layout: str
    store: BlobStore = field(repr=False)
    references: list[str]
    manifest_digest: Digest
    manifest_media_type: str
    manifest_bytes: bytes = field(repr=False)
    index_digest: Digest | None
    platform: Platform
    config_digest: Digest
    config: ImageConfig
    layers: list[Layer]

    @property
    def shown(self) -> str:
        """How messages name the image: the argument a stored image was asked for by, the
        path (and :REF) of any other."""
        return self.store.label if self.layout == STORED_LAYOUT else self.source

    @property
    def compressed_size(self) -> int:
        return sum(layer.size for layer in self.layers)


def open_image(reference: str, platform: str | Platform | None = None) -> Image:
    """Open IMAGE[:REF] and verify its manifest and config; layers are verified as they are
    read (`images.layers.open_layer`)."""
    path, ref = split_reference(reference)
    wanted = parse_platform(platform) if isinstance(platform, str) else platform
    store = open_store(path)
    if store.exists("index.json"):
        layout = _oci_layout_name(store, path)
        return _open_oci(reference, store, layout, ref, wanted)
    if store.exists("manifest.json"):
        return _open_docker_legacy(reference, store, ref, wanted)
    raise ImageError(f"{path}: not an image: no index.json (OCI layout) or manifest.json (docker save) in it")


def open_stored_image(folder: Path, digest: Digest, label: str, platform: str | Platform | None = None) -> Image:
    """An image of the local store (images.localstore) by its entry's digest; errors name it
    by `label` (the name it was asked for), not by the store's folder."""
    store = DirectoryStore(folder)
    store.label = label
    wanted = parse_platform(platform) if isinstance(platform, str) else platform
    return _open_oci(f"{folder}:{digest}", store, STORED_LAYOUT, str(digest), wanted)


def split_reference(text: str) -> tuple[Path, str | None]:
    """Split `path[:ref]`. The shortest existing prefix is the path, because a reference
    may itself contain colons (`img.tar:name:tag`)."""
    if os.path.lexists(text):
        return Path(text), None
    for i, char in enumerate(text):
        if char == ":" and i > 0 and os.path.lexists(text[:i]):
            return Path(text[:i]), text[i + 1 :] or None
    raise ImageError(f"{text}: no such file or directory")


def _oci_layout_name(store: BlobStore, path: Path) -> str:
    if store.exists("oci-layout"):
        marker = load_json_object(read_document(store, "oci-layout", 4096), f"{path}: oci-layout")
        version = opt_str(marker, "imageLayoutVersion", "oci-layout")
        if not version.startswith("1."):
            raise ImageError(f"{path}: oci-layout: unsupported imageLayoutVersion {version!r}")
    if store.exists("manifest.json"):
        return "docker-archive (Docker 25+, OCI layout inside)"
    return "oci-layout" if path.is_dir() else "oci-archive"


def parse_descriptor(value: object, where: str) -> Descriptor:
    doc = as_object(value, where)
    platform = None
    if isinstance(doc.get("platform"), dict):
        spec = doc["platform"]
        platform = Platform(
            opt_str(spec, "os", f"{where}.platform"),
            opt_str(spec, "architecture", f"{where}.platform"),
            opt_str(spec, "variant", f"{where}.platform"),
        )
    return Descriptor(
        media_type=opt_str(doc, "mediaType", where),
        digest=parse_digest(doc.get("digest"), f"{where}.digest"),
        size=req_int(doc, "size", where),
        annotations=opt_str_map(doc, "annotations", where),
        platform=platform,
    )


def blob_path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


def _read_verified(store: BlobStore, descriptor: Descriptor, what: str) -> bytes:
    """Read a small blob and check it is exactly what its descriptor says."""
    path = blob_path(descriptor.digest)
    if not store.exists(path):
        raise ImageError(f"{store.label}: {what} blob {descriptor.digest} is missing ({path})")
    if descriptor.size > MAX_DOCUMENT_BYTES:
        raise ImageError(
            f"{store.label}: {what} {descriptor.digest} declares {descriptor.size} bytes, "
            f"more than the {MAX_DOCUMENT_BYTES} allowed"
        )
    data = read_document(store, path)
    actual = digest_bytes(data, descriptor.digest.algorithm)
    if len(data) != descriptor.size or actual != descriptor.digest:
        raise ImageError(
            f"{store.label}: {what} blob does not match its descriptor: expected "
            f"{descriptor.digest} ({descriptor.size} bytes), got {actual} ({len(data)} bytes)"
        )
    return data


def _open_oci(source: str, store: BlobStore, layout: str, ref: str | None, wanted: Platform | None) -> Image:
    index = load_json_object(read_document(store, "index.json"), f"{store.label}: index.json")
    items = as_list(index.get("manifests", []), "index.json manifests")
    entries = [
        parse_descriptor(item, f"{store.label}: index.json manifests[{i}]")
        for i, item in enumerate(items)
        if not is_attached_artifact(item)
    ]
    chosen = _choose_by_reference(store, entries, ref)
    references = sorted({name for entry in entries if entry.digest == chosen.digest for name in _names(entry)})
    return _resolve_descriptor(source, store, layout, chosen, references, wanted, None, 0)


_COSIGN_TAG = re.compile(r"sha256-[0-9a-f]{64}(\.(sig|att|sbom))?")


def is_attached_artifact(item: object) -> bool:
    """What sits beside images in a layout without being one: OCI 1.1 referrers (they carry
    an artifactType) and cosign's tag fallbacks (`sha256-<hex>.sig` and the like)."""
    if not isinstance(item, dict):
        return False
    annotations = item.get("annotations")
    name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    tag = name.rsplit(":", 1)[-1] if isinstance(name, str) else ""  # `sha256-<hex>.sig`, alone or after a repository
    return bool(item.get("artifactType")) or _COSIGN_TAG.fullmatch(tag) is not None


def _names(entry: Descriptor) -> list[str]:
    """An entry's names: containerd's full reference, and ref.name, either a full reference
    (skopeo, our build) or a tag alone (umoci, Docker 25), which is named `:TAG` so that it
    reads as a tag; beside containerd's name a lone tag says nothing more."""
    names = [entry.annotations[CONTAINERD_NAME]] if CONTAINERD_NAME in entry.annotations else []
    ref_name = entry.annotations.get(REF_NAME)
    if ref_name is not None and not is_tag_alone(ref_name):
        names.append(ref_name)
    elif ref_name is not None and not names:
        names.append(f":{ref_name}")
    return names


def _choose_by_reference(store: BlobStore, entries: list[Descriptor], ref: str | None) -> Descriptor:
    by_digest = [entry for entry in entries if ref is not None and ref == str(entry.digest)]
    if by_digest:  # `LAYOUT:sha256:<hex>`: an entry by its digest, named or not
        return by_digest[0]
    if ref is not None:
        matching = [entry for entry in entries if any(reference_matches(ref, name) for name in _names(entry))]
        if len({entry.digest for entry in matching}) > 1:  # a lone tag and a full name, say: never guess
            raise ImageError(f"{store.label}: {ref!r} names {len({e.digest for e in matching})} different images")
        if matching:
            return matching[0]
        known = ", ".join(sorted({n.removeprefix(":") for e in entries for n in _names(e)})) or "none"
        raise ImageError(f"{store.label}: no image named {ref!r} in index.json (names: {known})")
    distinct = {entry.digest for entry in entries}
    if not entries:
        raise ImageError(f"{store.label}: index.json lists no images")
    if len(distinct) > 1:
        names = ", ".join(sorted({n.removeprefix(":") for e in entries for n in _names(e)})) or "unnamed entries"
        raise ImageError(f"{store.label}: holds {len(distinct)} images ({names}); name one as IMAGE:REF")
    return entries[0]


def _resolve_descriptor(
    source: str,
    store: BlobStore,
    layout: str,
    descriptor: Descriptor,
    references: list[str],
    wanted: Platform | None,
    index_digest: Digest | None,
    depth: int,
) -> Image:
    if descriptor.media_type in mediatypes.INDEX_TYPES:
        if depth >= _MAX_INDEX_DEPTH:
            raise ImageError(f"{store.label}: image indexes nested more than {_MAX_INDEX_DEPTH} deep")
        nested = _read_verified(store, descriptor, "image index")
        where = f"{store.label}: index {descriptor.digest.short()}"
        doc = load_json_object(nested, where)
        entries = [
            parse_descriptor(item, f"{where} manifests[{i}]")
            for i, item in enumerate(as_list(doc.get("manifests", []), f"{where} manifests"))
        ]
        chosen = choose_platform(entries, wanted or DEFAULT_PLATFORM, store.label)
        return _resolve_descriptor(source, store, layout, chosen, references, wanted, descriptor.digest, depth + 1)
    if descriptor.media_type not in mediatypes.MANIFEST_TYPES and descriptor.media_type:
        raise ImageError(
            f"{store.label}: {descriptor.digest} has media type {descriptor.media_type!r}, "
            "not an image manifest or index"
        )
    manifest_bytes = _read_verified(store, descriptor, "manifest")
    return _image_from_manifest(
        source, store, layout, manifest_bytes, descriptor.digest, references, wanted, index_digest
    )


def choose_platform(entries: list[Descriptor], wanted: Platform, label: str) -> Descriptor:
    """The first entry of an index for `wanted` (a layout's, or a registry's on pull)."""
    for entry in entries:
        if entry.platform is not None and wanted.matches(entry.platform):
            return entry
    offered = ", ".join(str(e.platform) for e in entries if e.platform) or "none"
    raise ImageError(f"{label}: no manifest for platform {wanted} (offered: {offered})")


def _image_from_manifest(
    source: str,
    store: BlobStore,
    layout: str,
    manifest_bytes: bytes,
    manifest_digest: Digest,
    references: list[str],
    wanted: Platform | None,
    index_digest: Digest | None,
) -> Image:
    where = f"{store.label}: manifest {manifest_digest.short()}"
    manifest = load_json_object(manifest_bytes, where)
    if manifest.get("schemaVersion") != 2:
        raise ImageError(f"{where}: schemaVersion must be 2")
    config_descriptor = parse_descriptor(manifest.get("config"), f"{where} config")
    config_bytes = _read_verified(store, config_descriptor, "config")
    config = parse_config(config_bytes, f"{store.label}: config {config_descriptor.digest.short()}")
    layer_descriptors = [
        parse_descriptor(item, f"{where} layers[{i}]")
        for i, item in enumerate(as_list(manifest.get("layers", []), f"{where} layers"))
    ]
    _check_diff_id_count(where, config, len(layer_descriptors))
    histories = history_per_layer(config, len(layer_descriptors))
    layers = [
        Layer(
            index=i,
            digest=d.digest,
            size=d.size,
            media_type=d.media_type,
            compression=mediatypes.layer_compression(d.media_type, f"{where} layers[{i}]"),
            diff_id=config.diff_ids[i],
            history=histories[i],
            location=blob_path(d.digest),
        )
        for i, d in enumerate(layer_descriptors)
    ]
    for layer in layers:
        if not store.exists(layer.location):
            raise ImageError(f"{store.label}: {layer.label} blob is missing ({layer.location})")
    platform = Platform(config.os, config.architecture, config.variant)
    _check_platform(store, wanted, platform)
    return Image(
        source=source,
        layout=layout,
        store=store,
        references=references,
        manifest_digest=manifest_digest,
        manifest_media_type=opt_str(manifest, "mediaType", where) or mediatypes.OCI_MANIFEST,
        manifest_bytes=manifest_bytes,
        index_digest=index_digest,
        platform=platform,
        config_digest=config_descriptor.digest,
        config=config,
        layers=layers,
    )


def _check_diff_id_count(where: str, config: ImageConfig, layer_count: int) -> None:
    if len(config.diff_ids) != layer_count:
        raise ImageError(f"{where}: {layer_count} layers but the config lists {len(config.diff_ids)} diff_ids")


def _check_platform(store: BlobStore, wanted: Platform | None, actual: Platform) -> None:
    if wanted is not None and not wanted.matches(actual):
        raise ImageError(f"{store.label}: the image is {actual}, not the requested {wanted}")


def _open_docker_legacy(source: str, store: BlobStore, ref: str | None, wanted: Platform | None) -> Image:
    """docker save before Docker 25: manifest.json names a config file and layer tars by
    path. There is no registry manifest, so one is synthesised exactly as skopeo does for
    a docker-archive, which makes our manifest digest agree with `skopeo inspect`."""
    where = f"{store.label}: manifest.json"
    entries = as_list(load_json(read_document(store, "manifest.json"), where), where)
    entry = _choose_legacy_entry(where, entries, ref)
    config_path = opt_str(entry, "Config", where)
    layer_paths = [as_str(item, f"{where} Layers") for item in as_list(entry.get("Layers", []), f"{where} Layers")]
    config_bytes = read_document(store, config_path)
    config_digest = digest_bytes(config_bytes)
    _check_named_digest(store, config_path, config_digest)
    config = parse_config(config_bytes, f"{store.label}: {config_path}")
    _check_diff_id_count(where, config, len(layer_paths))
    histories = history_per_layer(config, len(layer_paths))
    layers = []
    for i, path in enumerate(layer_paths):
        if not store.exists(path):
            raise ImageError(f"{store.label}: layer {i + 1} is missing ({path})")
        compression = sniff_compression(store, path)
        size = store.size(path)
        if compression != "none":
            size = _uncompressed_size(store, path, compression, config.diff_ids[i], f"{store.label}: layer {i + 1}")
        else:
            _check_named_digest(store, path, config.diff_ids[i])
        layers.append(
            Layer(
                index=i,
                digest=config.diff_ids[i],
                size=size,
                media_type=mediatypes.DOCKER_LAYER_GZIP,
                compression=compression,
                diff_id=config.diff_ids[i],
                history=histories[i],
                location=path,
            )
        )
    manifest_bytes = _synthesize_manifest(config_digest, len(config_bytes), layers)
    platform = Platform(config.os, config.architecture, config.variant)
    _check_platform(store, wanted, platform)
    return Image(
        source=source,
        layout="docker-archive (legacy)",
        store=store,
        references=[as_str(tag, f"{where} RepoTags") for tag in entry.get("RepoTags") or []],
        manifest_digest=digest_bytes(manifest_bytes),
        manifest_media_type=mediatypes.DOCKER_MANIFEST,
        manifest_bytes=manifest_bytes,
        index_digest=None,
        platform=platform,
        config_digest=config_digest,
        config=config,
        layers=layers,
    )


def as_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ImageError(f"{where}: expected a string")
    return value


def _choose_legacy_entry(where: str, entries: list[Any], ref: str | None) -> dict[str, Any]:
    objects = [as_object(item, f"{where}[{i}]") for i, item in enumerate(entries)]
    if not objects:
        raise ImageError(f"{where}: lists no images")
    if ref is None:
        if len(objects) > 1:
            tags = ", ".join(t for o in objects for t in o.get("RepoTags") or []) or "untagged"
            raise ImageError(f"{where}: holds {len(objects)} images ({tags}); name one as IMAGE:REF")
        return objects[0]
    for entry in objects:
        if any(isinstance(t, str) and reference_matches(ref, t) for t in entry.get("RepoTags") or []):
            return entry
    raise ImageError(f"{where}: no image tagged {ref!r}")


def _check_named_digest(store: BlobStore, path: str, digest: Digest) -> None:
    """docker save names configs (and Docker 25+ blobs) after their sha256: hold it to that."""
    stem = path.rsplit("/", 1)[-1].removesuffix(".json").removesuffix(".tar")
    if len(stem) == 64 and all(c in "0123456789abcdef" for c in stem):
        in_blobs = path.startswith("blobs/sha256/")
        if (in_blobs or path.endswith(".json")) and stem != digest.hex:
            raise ImageError(f"{store.label}: {path} does not match its name: its sha256 is {digest.hex}")


def _uncompressed_size(store: BlobStore, path: str, compression: str, diff_id: Digest, label: str) -> int:
    """A compressed layer in a docker archive has no descriptor, so it is described (as
    skopeo describes it) by its uncompressed content: the diff_id and its size. Measuring
    that means decompressing it once, and verifying it on the way."""
    from pysbx.images.decompress import ByteBudget, decompressing_reader
    from pysbx.images.digest import VerifyingReader

    with store.open(path) as raw:
        plain = VerifyingReader(decompressing_reader(raw, compression, ByteBudget(), label), diff_id, None, label)  # type: ignore[arg-type]
        plain.drain()
        return plain.count


def _synthesize_manifest(config_digest: Digest, config_size: int, layers: list[Layer]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": mediatypes.DOCKER_MANIFEST,
        "config": {
            "mediaType": mediatypes.DOCKER_CONFIG,
            "size": config_size,
            "digest": str(config_digest),
        },
        "layers": [
            {"mediaType": layer.media_type, "size": layer.size, "digest": str(layer.digest)} for layer in layers
        ],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()
