"""Where an image's signatures are found, in the order they are tried:

1. an explicit bundle file (`--bundle FILE`);
2. a sidecar `IMAGE.sigstore.json` beside an archive (or layout folder);
3. inside an OCI layout (folder or archive), OCI 1.1 referrers listed in index.json: manifests
   with `artifactType: application/vnd.dev.sigstore.bundle.v0.3+json` whose `subject` is the
   image's manifest descriptor, the bundle being their layer;
4. cosign's tag fallbacks in the same index.json (`signing.cosign_tag`): the `sha256-<hex>`
   tag naming an index of referrers, and the legacy `sha256-<hex>.sig` tag whose layers are
   simple-signing payloads with their signature in annotations.

A message-signature bundle signs a payload it does not carry: beside a bundle file it is
`NAME.payload.json` (for `NAME.sigstore.json` or `NAME.json`), in a referrer a second layer of
type `application/vnd.dev.cosign.simplesigning.v1+json`.

Every document read from an image store is checked against its digest before use."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pysbx.images.digest import Digest, digest_bytes, parse_digest
from pysbx.images.errors import ImageError
from pysbx.images.image import STORED_LAYOUT, Image, blob_path, split_reference
from pysbx.images.regular import read_regular_file
from pysbx.images.store import read_document
from pysbx.signing.bundle import BUNDLE_MEDIA_TYPES, MAX_BUNDLE_BYTES
from pysbx.signing.cosign_tag import (
    REF_NAME_ANNOTATION,
    bundle_from_signature_layer,
    names_tag,
    referrers_tag,
    signature_tag,
    unverifiable_note,
)
from pysbx.signing.errors import VerificationError
from pysbx.signing.payload import SIMPLE_SIGNING_MEDIA_TYPE

SIDECAR_SUFFIX = ".sigstore.json"
_MAX_REFERRERS = 64
_MAX_MANIFEST_BYTES = 1 << 20


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


def read_bundle_file(path: Path, follow: bool = True) -> FoundBundle:
    """A bundle file and its payload beside it, read as regular files only, bounded and
    never waiting; `follow`: a symlink is read (the user named the file) or refused (a
    sidecar found beside the image, which whoever filled that folder chose)."""
    data = _read_small(path, follow, "the bundle")
    payload_path = payload_path_for(path)
    payload = _read_small(payload_path, follow, "the payload") if os.path.lexists(payload_path) else None
    return FoundBundle(data, str(path), payload)


def _read_small(path: Path, follow: bool, what: str) -> bytes:
    try:
        return read_regular_file(str(path), MAX_BUNDLE_BYTES, follow=follow)
    except ValueError:
        raise VerificationError(
            "malformed", f"{path}: too large for a bundle ({MAX_BUNDLE_BYTES} bytes at most)"
        ) from None
    except OSError as error:
        raise VerificationError("bad-input", f"{path}: cannot read {what}: {error.strerror}") from None


def find_bundles(image: Image, explicit: Path | None = None) -> list[FoundBundle]:
    """Every bundle for `image`; an explicit bundle replaces the search."""
    if explicit is not None:
        return [read_bundle_file(explicit)]
    found: list[FoundBundle] = []
    sidecar = sidecar_path(image)
    if image.layout != STORED_LAYOUT and os.path.lexists(sidecar):  # the store has no "beside"
        found.append(read_bundle_file(sidecar, follow=False))
    found.extend(find_referrers(image))
    found.extend(find_cosign_tags(image))
    return found[:_MAX_REFERRERS]


def _read_checked(image: Image, digest: Digest, limit: int) -> bytes:
    path = blob_path(digest)
    data = read_document(image.store, path, limit)
    actual = digest_bytes(data, digest.algorithm)
    if actual != digest:
        raise ImageError(f"{image.store.label}: {path} does not match its digest (got {actual})")
    return data


def _index_entries(image: Image) -> list[dict[str, Any]]:
    """The descriptors in the layout's index.json; none for a store without one."""
    if not image.store.exists("index.json"):
        return []
    try:
        index = json.loads(read_document(image.store, "index.json"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return []  # open_image already refused an unreadable index; nothing to find here
    return _entries(index)


def _entries(index: object) -> list[dict[str, Any]]:
    entries = index.get("manifests") if isinstance(index, dict) else None
    return [entry for entry in entries if isinstance(entry, dict)] if isinstance(entries, list) else []


def find_referrers(image: Image) -> list[FoundBundle]:
    """Sigstore bundles attached to the image as OCI 1.1 referrers in index.json."""
    return _referrers_among(image, _index_entries(image))


def _referrers_among(image: Image, entries: list[dict[str, Any]]) -> list[FoundBundle]:
    found: list[FoundBundle] = []
    for entry in entries:
        if entry.get("artifactType") not in BUNDLE_MEDIA_TYPES:
            continue
        if len(found) >= _MAX_REFERRERS:
            break
        bundle = _bundle_from_referrer(image, entry)
        if bundle is not None:
            found.append(bundle)
    return found


def find_cosign_tags(image: Image) -> list[FoundBundle]:
    """Signatures under cosign's tags for this image's digest: the referrers tag's index
    (read as referrers), then the legacy `.sig` manifest (one bundle per layer)."""
    found: list[FoundBundle] = []
    for entry in _index_entries(image):
        if names_tag(
            (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION), referrers_tag(str(image.manifest_digest))
        ):
            index = _read_json(image, entry, "the referrers tag's index")
            found.extend(_referrers_among(image, _entries(index)))
    return found + _bundles_from_signature_tag(image)


def _read_json(image: Image, entry: dict[str, Any], what: str) -> Any:
    where = f"{image.store.label}: {what} {entry.get('digest')}"
    data = _read_checked(image, parse_digest(entry.get("digest"), f"{where} digest"), _MAX_MANIFEST_BYTES)
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise VerificationError("malformed", f"{where}: not valid JSON") from None


def signature_tag_layers(image: Image) -> list[dict[str, Any]]:
    """The layer descriptors of the image's cosign `.sig` manifest (digest-checked); none
    when the layout has no such tag."""
    tag = signature_tag(str(image.manifest_digest))
    layers: list[dict[str, Any]] = []
    for entry in _index_entries(image):
        if names_tag((entry.get("annotations") or {}).get(REF_NAME_ANNOTATION), tag):
            manifest = _read_json(image, entry, "cosign signature manifest")
            found = manifest.get("layers") if isinstance(manifest, dict) else None
            if not isinstance(found, list):
                raise VerificationError("malformed", f"{image.store.label}: cosign signature manifest has no layers")
            layers.extend(layer for layer in found if isinstance(layer, dict))
    return layers


def _bundles_from_signature_tag(image: Image) -> list[FoundBundle]:
    """One bundle per simple-signing layer of the cosign `.sig` manifest, with its payload."""
    found: list[FoundBundle] = []
    tag = signature_tag(str(image.manifest_digest))
    for number, layer in enumerate(signature_tag_layers(image)[:_MAX_REFERRERS], start=1):
        if layer.get("mediaType") != SIMPLE_SIGNING_MEDIA_TYPE:
            continue
        where = f"cosign signature tag {tag} layer {number}"
        payload = _read_checked(image, parse_digest(layer.get("digest"), f"{where} digest"), _MAX_MANIFEST_BYTES)
        raw_annotations = layer.get("annotations")
        annotations: dict[str, Any] = raw_annotations if isinstance(raw_annotations, dict) else {}
        note = unverifiable_note(annotations)
        origin = f"{where} ({note})" if note else where
        found.append(FoundBundle(bundle_from_signature_layer(payload, annotations, where), origin, payload))
    return found


def _bundle_from_referrer(image: Image, entry: dict[str, Any]) -> FoundBundle | None:
    where = f"{image.store.label}: referrer {entry.get('digest')}"
    digest = parse_digest(entry.get("digest"), f"{where} digest")
    try:
        manifest = json.loads(_read_checked(image, digest, _MAX_MANIFEST_BYTES))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # whoever could attach it could attach any number: a damaged one blocks no good one
    subject = manifest.get("subject") if isinstance(manifest, dict) else None
    if not isinstance(subject, dict) or subject.get("digest") != str(image.manifest_digest):
        return None  # a bundle for another image in the same layout
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        return None
    bundle: bytes | None = None
    payload: bytes | None = None
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        media_type = layer.get("mediaType")
        if media_type in BUNDLE_MEDIA_TYPES and bundle is None:
            bundle = _read_checked(image, parse_digest(layer.get("digest"), f"{where} layer"), MAX_BUNDLE_BYTES)
        elif media_type == SIMPLE_SIGNING_MEDIA_TYPE and payload is None:
            payload = _read_checked(image, parse_digest(layer.get("digest"), f"{where} layer"), _MAX_MANIFEST_BYTES)
    if bundle is None:
        return None
    return FoundBundle(bundle, f"OCI referrer {digest}", payload)
