"""`pysandbox pull NAME`: an image from a registry into the local store, with the signatures
that travel with it: OCI 1.1 referrers (through the referrers API, or the referrers tag
where a registry lacks it) and cosign's `sha256-<hex>.sig` tag.

Every blob is verified against its digest as it streams (images.distribution) and kept in
the store's staging folder under its digest until it is whole, so an interrupted pull
resumes where it stopped. From a multi-platform index, the index and one platform are kept
(what `docker pull` keeps). When the caller gives a verification (a policy that requires
signatures), it runs on the image as stored, before the image is named: an image that does
not verify is never named, and is removed with whatever came only with it."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pysbx.images import mediatypes
from pysbx.images.digest import Digest, digest_bytes
from pysbx.images.distribution import RegistryClient
from pysbx.images.errors import ImageError
from pysbx.images.graph import children, descriptor_digest, subject_digest
from pysbx.images.image import Image, choose_platform, open_stored_image, parse_descriptor
from pysbx.images.localstore import REF_NAME, LocalStore
from pysbx.images.mirrors import Source
from pysbx.images.platform import DEFAULT_PLATFORM, Platform
from pysbx.images.registryname import ImageName

MAX_ATTACHED = 64  # signatures and attestations fetched per image: a registry could list thousands
# A signature bundle is a few KB (signing.bundle reads 4 MiB at most); an attached artifact
# bigger than this is an SBOM or an attack, and is left in the registry.
MAX_ATTACHED_BYTES = 16 << 20
Verification = Callable[[Image], str | None]  # the refusal, or None when the image may be named


class PullRefused(ImageError):
    """The image came whole, and the caller's verification refused it: nothing is named."""


@dataclass(frozen=True)
class Pulled:
    name: ImageName
    digest: Digest  # what the name points at: the manifest, or the multi-platform index
    manifest: Digest  # the platform's manifest
    attached: int  # signatures and attestations fetched with it
    blobs_fetched: int
    bytes_fetched: int


@dataclass
class _Counts:
    blobs: int = 0
    bytes: int = 0


def pull_image(
    store: LocalStore,
    name: ImageName,
    client: RegistryClient,
    platform: Platform | None = None,
    verify: Verification | None = None,
    progress: Callable[[str], None] | None = None,
    repository: str | None = None,
    all_platforms: bool = False,
) -> Pulled:
    """Fetch `name` into the store and name it (unless it was asked for by digest alone);
    PullRefused when `verify` refuses it, RegistryError and ImageError otherwise.
    `repository`: where the client finds it, when that is not the name's own (a mirror)."""
    remote = repository or name.repository
    top = client.get_manifest(remote, name.reference)
    counts = _Counts()
    with store.locked(exclusive=False):
        store.put_bytes(top.body)
        manifest_digest = _fetch_image(
            store, client, remote, top.media_type, top.body, platform, all_platforms, counts, progress
        )
        attached = _fetch_attached(store, client, remote, {top.digest, manifest_digest}, counts)
        descriptor = {"mediaType": top.media_type, "digest": str(top.digest), "size": len(top.body)}
        refusal = _verification(store, descriptor, name, platform, verify)
        if refusal is None and name.tag is not None:
            store.add(descriptor, [f"{name.registry}/{name.repository}:{name.tag}"])
        elif refusal is None:
            store.add(descriptor, [])
    if refusal is not None:
        store.collect_garbage()  # what came only with the refused image
        raise PullRefused(f"{name.familiar}: refused: {refusal}")
    return Pulled(name, top.digest, manifest_digest, attached, counts.blobs, counts.bytes)


def _fetch_image(
    store: LocalStore,
    client: RegistryClient,
    repository: str,
    media_type: str,
    body: bytes,
    platform: Platform | None,
    all_platforms: bool,
    counts: _Counts,
    progress: Callable[[str], None] | None,
) -> Digest:
    """The manifest's config and layers (for an index: the chosen platform's manifest, or
    with `all_platforms` every platform's); returns the chosen platform manifest's digest."""
    if media_type not in mediatypes.INDEX_TYPES:
        manifest = digest_bytes(body)
        _fetch_manifest_blobs(store, client, repository, media_type, body, manifest, counts, progress)
        return manifest
    entries = children(body, f"{client.registry}/{repository}: index")
    chosen = _choose_platform(entries, platform, client, repository, fallback=all_platforms)
    for entry in entries if all_platforms else [chosen]:
        fetched = client.get_manifest(repository, str(descriptor_digest(entry, "index")))
        if fetched.media_type in mediatypes.INDEX_TYPES:
            raise ImageError(f"{client.registry}/{repository}: an index inside an index is not pulled")
        store.put_bytes(fetched.body)
        _fetch_manifest_blobs(
            store, client, repository, fetched.media_type, fetched.body, fetched.digest, counts, progress
        )
    return descriptor_digest(chosen, "index")


def _fetch_manifest_blobs(
    store: LocalStore,
    client: RegistryClient,
    repository: str,
    media_type: str,
    body: bytes,
    manifest: Digest,
    counts: _Counts,
    progress: Callable[[str], None] | None,
) -> None:
    if media_type not in mediatypes.MANIFEST_TYPES:
        raise ImageError(
            f"{client.registry}/{repository}: {media_type or 'an untyped document'} is not an image manifest"
        )
    for blob in children(body, f"{client.registry}/{repository}: manifest {manifest.short()}"):
        _fetch_blob(store, client, repository, blob, counts, progress)


def _choose_platform(
    entries: list[dict[str, Any]], wanted: Platform | None, client: RegistryClient, repository: str, fallback: bool
) -> dict[str, Any]:
    """images.image.choose_platform on the registry's index; with `fallback` (every platform
    is fetched), the first entry stands for them where the wanted one is missing."""
    where = f"{client.registry}/{repository}: index"
    descriptors = [parse_descriptor(entry, f"{where} manifests[{i}]") for i, entry in enumerate(entries)]
    try:
        return entries[descriptors.index(choose_platform(descriptors, wanted or DEFAULT_PLATFORM, where))]
    except ImageError:
        if fallback and entries:
            return entries[0]
        raise


def _fetch_blob(
    store: LocalStore,
    client: RegistryClient,
    repository: str,
    descriptor: dict[str, Any],
    counts: _Counts,
    progress: Callable[[str], None] | None,
) -> None:
    """One blob into the store, through a partial file named after its digest (resumed by
    the next pull when this one is cut short); one pull at a time per blob."""
    digest = descriptor_digest(descriptor, f"{client.registry}/{repository}")
    if store.has_blob(digest):
        return
    with _partial_locked(store, digest) as partial:
        if store.has_blob(digest):  # another pull finished it while this one waited
            return
        if progress is not None:
            progress(f"{digest.short()}: {descriptor['size']} bytes")
        client.fetch_blob(repository, digest, descriptor["size"], partial)
        store.adopt(partial, digest)
    counts.blobs += 1
    counts.bytes += descriptor["size"]


@contextlib.contextmanager
def _partial_locked(store: LocalStore, digest: Digest) -> Iterator[str]:
    partial = store.staging_file(f"pull-{digest.algorithm}-{digest.hex}")
    fd = os.open(partial + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:  # the lock file stays: unlinked, a third pull could lock a new one beside a holder
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield partial
    finally:
        os.close(fd)


def _fetch_attached(
    store: LocalStore, client: RegistryClient, repository: str, digests: set[Digest], counts: _Counts
) -> int:
    """Signatures and attestations of the image (and of its index): each referrer's manifest
    and blobs, and cosign's `.sig` tag. Each is listed in the store as attached to the
    image; whether it is trusted is for verification to say."""
    found = 0
    for digest in sorted(digests, key=str):
        for referrer in client.referrers(repository, digest)[:MAX_ATTACHED]:
            found += _fetch_artifact(store, client, repository, digest, referrer, None, counts)
        signature_tag = f"{digest.algorithm}-{digest.hex}.sig"
        if client.manifest_digest(repository, signature_tag) is not None:
            found += _fetch_artifact(store, client, repository, digest, None, signature_tag, counts)
    return found


def _fetch_artifact(
    store: LocalStore,
    client: RegistryClient,
    repository: str,
    subject: Digest,
    referrer: dict[str, Any] | None,
    tag: str | None,
    counts: _Counts,
) -> int:
    """One signature or attestation of `subject` into the store; 0 for one that is not for
    `subject` (a referrers tag lists whatever anyone pushed under it) or too big to be one."""
    reference = tag if tag is not None else str(descriptor_digest(referrer or {}, "referrer"))
    fetched = client.get_manifest(repository, reference)
    blobs = children(fetched.body, f"{client.registry}/{repository}: {reference}")
    if sum(blob["size"] for blob in blobs) > MAX_ATTACHED_BYTES:
        return 0
    if tag is None and subject_digest(fetched.body) != str(subject):
        return 0
    store.put_bytes(fetched.body)
    for blob in blobs:
        _fetch_blob(store, client, repository, blob, counts, None)
    entry: dict[str, Any] = {"mediaType": fetched.media_type, "digest": str(fetched.digest), "size": len(fetched.body)}
    if tag is not None:
        entry["annotations"] = {REF_NAME: tag}
    else:
        entry["artifactType"] = _artifact_type(referrer or {}, fetched.body)
    store.add(entry, [])
    return 1


def _artifact_type(referrer: dict[str, Any], body: bytes) -> str:
    stated = referrer.get("artifactType")
    if isinstance(stated, str) and stated:
        return stated
    document = json.loads(body)
    config = document.get("config") if isinstance(document, dict) else None
    return str(document.get("artifactType") or (config or {}).get("mediaType") or "application/octet-stream")


def _verification(
    store: LocalStore,
    descriptor: dict[str, Any],
    name: ImageName,
    platform: Platform | None,
    verify: Verification | None,
) -> str | None:
    """Open the image as stored, under the name it was pulled by (a signature may be
    required to name it), and ask the caller's verification."""
    if verify is None:
        return None
    digest = descriptor_digest(descriptor, "pulled image")
    already = any(entry.get("digest") == str(digest) for entry in store.entries())
    store.add(descriptor, [])  # listed without a name while it is checked: runs find it by name only once it verifies
    try:
        image = open_stored_image(store.folder, digest, name.familiar, platform)
        refusal = verify(dataclasses.replace(image, references=[name.full]))
    except ImageError as error:
        refusal = str(error)
    if refusal is not None and not already:  # an image stored before keeps its names
        store.remove({str(digest)})
    return refusal


def pull_from_sources(
    store: LocalStore,
    name: ImageName,
    sources: list[Source],
    open_client: Callable[[Source], RegistryClient],
    platform: Platform | None = None,
    verify: Verification | None = None,
    all_platforms: bool = False,
) -> tuple[Pulled, Source]:
    """pull_image from the first source that serves the image whole (and verified, when
    asked): mirrors in order, then the registry (images.mirrors). The last source's error
    when none does, with what each mirror said."""
    failures: list[str] = []
    for source in sources:
        try:
            with open_client(source) as client:
                pulled = pull_image(
                    store, name, client, platform, verify, repository=source.repository, all_platforms=all_platforms
                )
                return pulled, source
        except ImageError as error:  # a registry's answer, a refusal, a blob that did not verify
            if source is sources[-1]:
                tried = f" (mirrors: {'; '.join(failures)})" if failures else ""
                raise type(error)(f"{error}{tried}") from None
            failures.append(f"{source.label}: {error}")
    raise ImageError(f"{name.familiar}: no source to pull from")
