"""`pysandbox push NAME [DESTINATION]`: a stored image to a registry, with the signatures
attached to it in the store. Blobs go before the manifests that name them, manifests before
the index, and every manifest byte for byte as stored, so its digest (what signatures sign)
is the same in the registry.

A referrer is pushed by digest and listed under the referrers tag (`sha256-<hex>`, an OCI
index), which is how the OCI 1.1 specification has a client attach it on a registry
without the referrers API; a registry with it lists the referrer by its subject as well.
Cosign's `.sig` manifest goes under its tag."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pysbx.images import mediatypes
from pysbx.images.digest import Digest
from pysbx.images.distribution import RegistryClient, referrers_tag
from pysbx.images.errors import ImageError
from pysbx.images.graph import MAX_DOCUMENT, children, descriptor_digest, is_document
from pysbx.images.image import is_attached_artifact
from pysbx.images.jsonfields import canonical_json
from pysbx.images.localstore import REF_NAME, LocalStore, StoredImage, subject_of
from pysbx.images.registryname import ImageName


@dataclass(frozen=True)
class Pushed:
    destination: ImageName
    digest: Digest
    blobs: int
    attached: int


def push_image(store: LocalStore, image: StoredImage, destination: ImageName, client: RegistryClient) -> Pushed:
    """Push `image` to `destination` (its tag, or by digest alone when it names none)."""
    repository = destination.repository
    if destination.digest is not None and destination.digest != image.digest:
        raise ImageError(f"{destination.familiar}: the stored image is {image.digest}, not {destination.digest}")
    with store.locked(exclusive=False):
        blobs = _push_graph(store, client, repository, image.descriptor, str(image.digest))
        if destination.tag is not None:
            client.put_manifest(repository, destination.tag, image.media_type, _document(store, image.digest))
        attached = [e for e in store.entries() if is_attached_artifact(e) and _is_for(store, e, image)]
        for entry in attached:
            blobs += _push_attached(store, client, repository, entry)
    return Pushed(destination, image.digest, blobs, len(attached))


def _push_graph(
    store: LocalStore, client: RegistryClient, repository: str, descriptor: dict[str, Any], reference: str
) -> int:
    """Push a document's blobs and the documents it names (children first), then itself by
    `reference`; an index's platforms the store does not hold stop the push (a registry
    refuses an index that names manifests it lacks)."""
    digest = descriptor_digest(descriptor, f"{client.registry}/{repository}")
    if not store.has_blob(digest):
        raise ImageError(
            f"{digest.short()}: the store holds only some platforms of this image; push one by its digest "
            "(pysandbox image inspect shows it), or pull it with all its platforms"
        )
    data = _document(store, digest)
    pushed = 0
    for child in children(data, f"the image store: {digest.short()}"):
        child_digest = descriptor_digest(child, f"the image store: {digest.short()}")
        if is_document(child):
            pushed += _push_graph(store, client, repository, child, str(child_digest))
        else:
            client.push_blob(repository, child_digest, child["size"], str(store.blob_file(child_digest)))
            pushed += 1
    client.put_manifest(repository, reference, str(descriptor.get("mediaType") or _media_type(data)), data)
    return pushed


def _push_attached(store: LocalStore, client: RegistryClient, repository: str, entry: dict[str, Any]) -> int:
    name = (entry.get("annotations") or {}).get(REF_NAME)
    digest = descriptor_digest(entry, "the image store: an attached artifact")
    if isinstance(name, str) and not entry.get("artifactType"):  # a cosign tag (`sha256-<hex>.sig`)
        return _push_graph(store, client, repository, entry, name.rsplit(":", 1)[-1])
    pushed = _push_graph(store, client, repository, entry, str(digest))
    subject = subject_of(store, entry)
    if subject is not None:
        _list_under_referrers_tag(client, repository, Digest(*subject.split(":", 1)), entry)
    return pushed


def _list_under_referrers_tag(client: RegistryClient, repository: str, subject: Digest, entry: dict[str, Any]) -> None:
    """Add the referrer's descriptor to the index under the subject's referrers tag, keeping
    what other clients listed there."""
    tag = referrers_tag(subject)
    listed = client.referrers_tag_index(repository, subject)
    descriptor = {key: entry[key] for key in ("mediaType", "digest", "size", "artifactType") if key in entry}
    if any(item.get("digest") == descriptor["digest"] for item in listed):
        return
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": [*listed, descriptor]}
    client.put_manifest(repository, tag, mediatypes.OCI_INDEX, canonical_json(index))


def _is_for(store: LocalStore, entry: dict[str, Any], image: StoredImage) -> bool:
    """Whether an attached artifact is for `image` or one of its platforms' manifests."""
    subject = subject_of(store, entry)
    if subject == str(image.digest):
        return True
    if image.media_type not in mediatypes.INDEX_TYPES:
        return False
    return subject in {item.get("digest") for item in children(_document(store, image.digest), "the image store")}


def _document(store: LocalStore, digest: Digest) -> bytes:
    return store.read_blob(digest, MAX_DOCUMENT)


def _media_type(data: bytes) -> str:
    document = json.loads(data)
    return str(document.get("mediaType") or mediatypes.OCI_MANIFEST) if isinstance(document, dict) else ""
