"""An image as a graph of blobs: an index names manifests, a manifest names its config and
layers (and, for a referrer, its subject, which is not followed: the subject is the image
it is attached to, not part of it). Loading, saving, pulling, pushing and pruning all walk
the same edges."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from pysbx.images import mediatypes
from pysbx.images.digest import Digest, parse_digest
from pysbx.images.errors import ImageError

MAX_DOCUMENT = 4 << 20  # a manifest or an index; a bigger one is an attack, not an image


def is_document(descriptor: dict[str, Any]) -> bool:
    """A manifest or an index: read whole and followed, where other blobs are streamed."""
    return descriptor.get("mediaType") in mediatypes.INDEX_TYPES | mediatypes.MANIFEST_TYPES


def children(data: bytes, where: str) -> list[dict[str, Any]]:
    """The descriptors a manifest or an index names (its config and layers, or its
    manifests); each is checked to carry a usable digest and size."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ImageError(f"{where}: not valid JSON") from None
    if not isinstance(document, dict):
        raise ImageError(f"{where}: not a JSON object")
    if "manifests" in document:
        found = document["manifests"]
    else:
        found = [document.get("config"), *(document.get("layers") or [])]
    if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
        raise ImageError(f"{where}: its descriptors are not a list of objects")
    for number, item in enumerate(found):
        descriptor_digest(item, f"{where} descriptor {number + 1}")
    return found


def subject_digest(data: bytes) -> str | None:
    """The digest in a referrer manifest's `subject` (the image it is attached to), or None
    for a document that names none or is not JSON."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        return None
    subject = document.get("subject") if isinstance(document, dict) else None
    digest = subject.get("digest") if isinstance(subject, dict) else None
    return digest if isinstance(digest, str) else None


def descriptor_digest(descriptor: dict[str, Any], where: str) -> Digest:
    size = descriptor.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImageError(f"{where}: size must be a non-negative integer")
    return parse_digest(descriptor.get("digest"), f"{where} digest")


def reachable_blobs(
    read_document: Callable[[Digest, int], bytes], present: Callable[[Digest], bool], roots: Iterable[dict[str, Any]]
) -> set[str]:
    """Every blob digest the `roots` reach, through documents that are present (an index
    may name platforms that were never fetched). Each document is read once, however deep
    (what is seen is not followed again, so a loop ends), and followed by its media type
    alone; one that cannot be read as a document is still live, as a leaf: what decides
    what a prune deletes must not be stopped, or misled, by a document's shape."""
    live: set[str] = set()
    pending = [(root, True) for root in roots]
    while pending:
        descriptor, is_root = pending.pop()
        digest = descriptor_digest(descriptor, "index.json")
        if str(digest) in live or not present(digest):
            continue
        live.add(str(digest))
        if is_document(descriptor) or is_root:
            try:
                found = children(read_document(digest, MAX_DOCUMENT), f"manifest {digest.short()}")
            except ImageError:
                continue
            pending.extend((child, False) for child in found)
    return live
