"""Where an image's signatures are found, in the order they are tried:

1. an explicit bundle file (`--bundle FILE`);
2. a sidecar `IMAGE.sigstore.json` beside an archive (or layout folder);
3. inside an OCI layout (folder or archive), OCI 1.1 referrers listed in index.json: manifests
   with `artifactType: application/vnd.dev.sigstore.bundle.v0.3+json` whose `subject` is the
   image's manifest descriptor, the bundle being their layer.

A message-signature bundle signs a payload it does not carry: beside a bundle file it is
`NAME.payload.json` (for `NAME.sigstore.json` or `NAME.json`), in a referrer a second layer of
type `application/vnd.dev.cosign.simplesigning.v1+json`.

Every document read from an image store is checked against its digest before use."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from images.digest import Digest, digest_bytes, parse_digest
from images.errors import ImageError
from images.image import Image, blob_path, split_reference
from images.store import read_document
from signing.bundle import BUNDLE_MEDIA_TYPES, MAX_BUNDLE_BYTES
from signing.errors import VerificationError
from signing.payload import SIMPLE_SIGNING_MEDIA_TYPE

SIDECAR_SUFFIX = ".sigstore.json"
_MAX_REFERRERS = 64


@dataclass(frozen=True)
class FoundBundle:
    """A bundle and where it was found; `payload` is the signed payload of a message
    signature when it travels beside the bundle."""

    bundle: bytes
    origin: str
    payload: bytes | None = None


def payload_path_for(bundle_path: Path) -> Path:
    stem = bundle_path.name.removesuffix(SIDECAR_SUFFIX).removesuffix(".json")
    return bundle_path.with_name(stem + ".payload.json")


def sidecar_path(image: Image) -> Path:
    path, _ = split_reference(image.source)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_bundle_file(path: Path) -> FoundBundle:
    try:
        size = path.stat().st_size
        if size > MAX_BUNDLE_BYTES:
            raise VerificationError("malformed", f"{path}: {size} bytes is too large for a bundle")
        data = path.read_bytes()
        payload_path = payload_path_for(path)
        payload = payload_path.read_bytes() if payload_path.is_file() else None
    except OSError as error:
        raise VerificationError("bad-input", f"{path}: cannot read the bundle: {error.strerror}") from None
    return FoundBundle(data, str(path), payload)


def find_bundles(image: Image, explicit: Path | None = None) -> list[FoundBundle]:
    """Every bundle for `image`; an explicit bundle replaces the search."""
    if explicit is not None:
        return [read_bundle_file(explicit)]
    found: list[FoundBundle] = []
    sidecar = sidecar_path(image)
    if sidecar.is_file():
        found.append(read_bundle_file(sidecar))
    found.extend(find_referrers(image))
    return found


def _read_checked(image: Image, digest: Digest, limit: int) -> bytes:
    path = blob_path(digest)
    data = read_document(image.store, path, limit)
    actual = digest_bytes(data, digest.algorithm)
    if actual != digest:
        raise ImageError(f"{image.store.label}: {path} does not match its digest (got {actual})")
    return data


def find_referrers(image: Image) -> list[FoundBundle]:
    """Sigstore bundles attached to the image as OCI 1.1 referrers in index.json."""
    store = image.store
    if not store.exists("index.json"):
        return []
    try:
        index = json.loads(read_document(store, "index.json"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return []  # open_image already refused an unreadable index; nothing to find here
    entries = index.get("manifests") if isinstance(index, dict) else None
    found: list[FoundBundle] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("artifactType") not in BUNDLE_MEDIA_TYPES:
            continue
        if len(found) >= _MAX_REFERRERS:
            break
        bundle = _bundle_from_referrer(image, entry)
        if bundle is not None:
            found.append(bundle)
    return found


def _bundle_from_referrer(image: Image, entry: dict[str, Any]) -> FoundBundle | None:
    where = f"{image.store.label}: referrer {entry.get('digest')}"
    digest = parse_digest(entry.get("digest"), f"{where} digest")
    try:
        manifest = json.loads(_read_checked(image, digest, 1 << 20))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise VerificationError("malformed", f"{where}: the referrer manifest is not valid JSON") from None
    subject = manifest.get("subject") if isinstance(manifest, dict) else None
    if not isinstance(subject, dict) or subject.get("digest") != str(image.manifest_digest):
        return None  # a bundle for another image in the same layout
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise VerificationError("malformed", f"{where}: the referrer manifest has no layers")
    bundle: bytes | None = None
    payload: bytes | None = None
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        media_type = layer.get("mediaType")
        if media_type in BUNDLE_MEDIA_TYPES and bundle is None:
            bundle = _read_checked(image, parse_digest(layer.get("digest"), f"{where} layer"), MAX_BUNDLE_BYTES)
        elif media_type == SIMPLE_SIGNING_MEDIA_TYPE and payload is None:
            payload = _read_checked(image, parse_digest(layer.get("digest"), f"{where} layer"), 1 << 20)
    if bundle is None:
        raise VerificationError("malformed", f"{where}: the referrer holds no sigstore bundle layer")
    return FoundBundle(bundle, f"OCI referrer {digest}", payload)
