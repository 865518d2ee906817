"""`pysandbox load -i ARCHIVE`: copy every image of a docker-save archive (legacy or Docker
25+), an OCI archive or an OCI layout folder into the local store, with the signatures that
travel inside it (OCI 1.1 referrers, cosign's digest tags).

Each blob is verified against its digest as it is copied, so a damaged or doctored archive
stores nothing it lies about. An OCI image keeps its manifest byte for byte (its digest is
what signatures sign). A legacy docker-save archive has no manifest to keep: each image is
given an OCI manifest over its layers as they are in the archive, which is also what
`skopeo copy docker-archive:... oci:...` does, so its digest is new."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysbx.images import mediatypes
from pysbx.images.decompress import ByteBudget, decompressing_reader
from pysbx.images.digest import Digest, VerifyingReader
from pysbx.images.errors import ImageError
from pysbx.images.graph import MAX_DOCUMENT, children, descriptor_digest, is_document
from pysbx.images.image import CONTAINERD_NAME, REF_NAME, blob_path, is_attached_artifact
from pysbx.images.jsonfields import as_list, as_object, canonical_json, load_json, load_json_object, opt_str
from pysbx.images.localstore import LocalStore, subject_of
from pysbx.images.references import is_tag_alone
from pysbx.images.store import BlobStore, open_store, read_document, sniff_compression

_MAX_DEPTH = 4
_OCI_LAYER = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


@dataclass(frozen=True)
class Loaded:
    names: list[str]
    digest: Digest
    moved: list[str]  # names that other images had until now

    @property
    def label(self) -> str:
        return ", ".join(self.names) if self.names else str(self.digest)


def load_archive(store: LocalStore, path: Path) -> list[Loaded]:
    """Copy every image in `path` into the store; refuse the whole archive (naming nothing)
    when any blob is missing or does not match its digest."""
    source = open_store(path)
    with store.locked(exclusive=False):
        if source.exists("index.json"):
            planned = _copy_layout(store, source)
        elif source.exists("manifest.json"):
            planned = _copy_legacy(store, source)
        else:
            raise ImageError(f"{path}: not an image: no index.json (OCI layout) or manifest.json (docker save) in it")
        loaded = []
        for descriptor, names in planned:
            moved = store.add(descriptor, names)
            if not is_attached_artifact(descriptor):
                loaded.append(Loaded(names, descriptor_digest(descriptor, str(path)), moved))
    if not loaded:
        raise ImageError(f"{path}: holds no image")
    return loaded


def _copy_layout(store: LocalStore, source: BlobStore) -> list[tuple[dict[str, Any], list[str]]]:
    index = load_json_object(read_document(source, "index.json"), f"{source.label}: index.json")
    images: list[tuple[dict[str, Any], list[str]]] = []
    attached: list[dict[str, Any]] = []
    for number, item in enumerate(as_list(index.get("manifests", []), f"{source.label}: index.json manifests")):
        entry = as_object(item, f"{source.label}: index.json manifests[{number}]")
        copy_graph(store, source, entry, f"{source.label}: index.json manifests[{number}]", 0)
        if is_attached_artifact(entry):
            attached.append(_kept_artifact_fields(entry))
        else:
            images.append((clean_descriptor(entry), _entry_names(entry)))
    loaded = _image_and_platform_digests(store, [descriptor for descriptor, _ in images])
    # A signature rides only with an image of this archive: one naming another image of the
    # store would reach that image's verification (a damaged one, a flood of them).
    kept: list[tuple[dict[str, Any], list[str]]] = [(a, []) for a in attached if subject_of(store, a) in loaded]
    return images + kept


def clean_descriptor(entry: dict[str, Any]) -> dict[str, Any]:
    """The fields of a descriptor the store keeps, rebuilt from their parsed values (a
    digest with a trailing newline, or a field no reader expects, is not carried over)."""
    cleaned: dict[str, Any] = {
        "mediaType": str(entry.get("mediaType", "")),
        "digest": str(descriptor_digest(entry, "index.json")),
        "size": entry["size"],
    }
    if isinstance(entry.get("artifactType"), str):
        cleaned["artifactType"] = entry["artifactType"]
    return cleaned


def _image_and_platform_digests(store: LocalStore, descriptors: list[dict[str, Any]]) -> set[str]:
    """The digests signatures may be for: each image's, and for an index, each platform's."""
    found = {descriptor["digest"] for descriptor in descriptors}
    for descriptor in descriptors:
        if descriptor["mediaType"] in mediatypes.INDEX_TYPES:
            data = store.read_blob(descriptor_digest(descriptor, "index"), MAX_DOCUMENT)
            found.update(child["digest"] for child in children(data, "index"))
    return found


def _kept_artifact_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """A referrer keeps its artifactType and no name (a name there could shadow an image's
    for tools that read the layout); a cosign tag keeps its tag alone, whatever repository
    the archive named it under (its digest says which image it is for)."""
    kept = clean_descriptor(entry)
    name = (entry.get("annotations") or {}).get(REF_NAME)
    if not entry.get("artifactType") and isinstance(name, str):
        kept["annotations"] = {REF_NAME: name.rsplit(":", 1)[-1] if "/" in name or ":" in name else name}
    return kept


def _entry_names(entry: dict[str, Any]) -> list[str]:
    """An index entry's full names: containerd's, and ref.name when it is a full reference
    (skopeo, our build); a tag alone (umoci, Docker 25 beside containerd's name) names no
    repository, so it names nothing in the store."""
    annotations = entry.get("annotations")
    if not isinstance(annotations, dict):
        return []
    names = []
    for key in (CONTAINERD_NAME, REF_NAME):
        value = annotations.get(key)
        if isinstance(value, str) and value and not is_tag_alone(value):
            names.append(checked_name(value))
    return sorted(set(names))


def checked_name(text: str) -> str:
    """A full reference as the store keeps it, or ImageError for what cannot be one."""
    from pysbx.images.registryname import parse_image_name

    name = parse_image_name(text)
    if name.digest is not None:
        raise ImageError(f"{text!r} is not an image name to keep: a name pinned to a digest names no tag")
    return name.full


def copy_graph(store: LocalStore, source: BlobStore, descriptor: dict[str, Any], where: str, depth: int) -> None:
    """Copy a descriptor's blob and everything it names, verifying each. An index's
    platforms that the source does not hold are skipped (a sparse copy, as skopeo makes
    without --all); anything else missing refuses the archive."""
    digest = descriptor_digest(descriptor, where)
    size = descriptor["size"]
    if store.has_blob(digest) and not (is_document(descriptor) or depth == 0):
        return
    if not source.exists(blob_path(digest)):
        raise ImageError(f"{where}: blob {digest} is missing from {source.label}")
    if not (is_document(descriptor) or depth == 0):
        with source.open(blob_path(digest)) as stream:
            store.put_stream(stream, digest, size, f"{source.label}: {digest.short()}")
        return
    if depth > _MAX_DEPTH:
        raise ImageError(f"{where}: indexes nested more than {_MAX_DEPTH} deep")
    if size > MAX_DOCUMENT:
        raise ImageError(f"{where}: a manifest of {size} bytes is more than the {MAX_DOCUMENT} allowed")
    with source.open(blob_path(digest)) as stream:
        document = VerifyingReader(stream, digest, size, f"{source.label}: {digest.short()}")
        data = document.read(MAX_DOCUMENT + 1)
        document.read(1)  # the end of the stream: the digest and size checks run here
    store.put_bytes(data)
    for number, child in enumerate(children(data, f"{where} ({digest.short()})")):
        child_where = f"{where} > {digest.short()}[{number}]"
        if is_document(child) and not source.exists(blob_path(descriptor_digest(child, child_where))):
            continue
        copy_graph(store, source, child, child_where, depth + 1)


def _copy_legacy(store: LocalStore, source: BlobStore) -> list[tuple[dict[str, Any], list[str]]]:
    """docker save before Docker 25: manifest.json names a config file and layer tars by
    path; each image becomes an OCI manifest over its layers as they are."""
    where = f"{source.label}: manifest.json"
    planned = []
    for number, item in enumerate(as_list(load_json(read_document(source, "manifest.json"), where), where)):
        entry = as_object(item, f"{where}[{number}]")
        config = read_document(source, opt_str(entry, "Config", f"{where}[{number}]"))
        config_digest = store.put_bytes(config)
        diff_ids = _diff_ids(config, f"{source.label}: config of image {number + 1}")
        layer_paths = as_list(entry.get("Layers", []), f"{where}[{number}] Layers")
        if len(layer_paths) != len(diff_ids):
            raise ImageError(f"{where}[{number}]: {len(layer_paths)} layers but the config lists {len(diff_ids)}")
        layers = [_copy_legacy_layer(store, source, str(p), diff_ids[i]) for i, p in enumerate(layer_paths)]
        manifest = canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": mediatypes.OCI_MANIFEST,
                "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": str(config_digest), "size": len(config)},
                "layers": layers,
            }
        )
        descriptor = {
            "mediaType": mediatypes.OCI_MANIFEST,
            "digest": str(store.put_bytes(manifest)),
            "size": len(manifest),
        }
        tags = as_list(entry.get("RepoTags") or [], f"{where}[{number}] RepoTags")
        planned.append((descriptor, sorted({checked_name(str(tag)) for tag in tags})))
    return planned


def _diff_ids(config: bytes, where: str) -> list[Digest]:
    from pysbx.images.config import parse_config

    return parse_config(config, where).diff_ids


def _copy_legacy_layer(store: LocalStore, source: BlobStore, path: str, diff_id: Digest) -> dict[str, Any]:
    """A layer as it is in the archive, named after its own digest; its content (once
    decompressed) must be the diff_id the config lists."""
    if not source.exists(path):
        raise ImageError(f"{source.label}: layer {path} is missing")
    compression = sniff_compression(source, path)
    with source.open(path) as stream:
        digest = store.put_stream(stream, diff_id if compression == "none" else None, None, f"{source.label}: {path}")
    if compression != "none":
        label = f"{source.label}: {path}"
        with open(store.blob_file(digest), "rb") as stored:
            plain = decompressing_reader(stored, compression, ByteBudget(), label)
            VerifyingReader(plain, diff_id, None, label).drain()  # type: ignore[arg-type]
    return {"mediaType": _OCI_LAYER[compression], "digest": str(digest), "size": store.blob_file(digest).stat().st_size}
