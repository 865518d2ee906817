"""The local image store: one OCI image layout per user, in the user's private storage, so
that images are used by name (`run busybox`) and other tools read it as they read any layout
(`skopeo inspect oci:STORE:docker.io/library/busybox:latest`).

- Names are Docker's full references (`docker.io/library/busybox:latest`), one index.json
  entry per name; an image whose last name moved to another image stays as an entry without a
  name (Docker's dangling `<none>`), until `image prune` removes it.
- Signatures travel in the same layout, as `images.image` and `signing.locate` read any
  layout: OCI 1.1 referrers (entries with an artifactType) and cosign's digest tags
  (`sha256-<hex>.sig`, `sha256-<hex>`), whatever repository they came with.
- A blob is written to a staging folder beside the layout, verified against its digest and
  size as it streams, and renamed into `blobs/` only when it matches: whatever is in blobs/
  is what its name says. index.json is replaced atomically under an exclusive lock; whoever
  adds blobs holds the lock shared, so that a prune (exclusive) never deletes a blob that a
  load is about to name."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pysbx.images import mediatypes
from pysbx.images.digest import Digest, VerifyingReader, digest_bytes, parse_digest
from pysbx.images.errors import ImageError
from pysbx.images.graph import reachable_blobs, subject_digest
from pysbx.images.image import is_attached_artifact
from pysbx.images.jsonfields import as_list, canonical_json, load_json_object
from pysbx.images.references import normalize_name
from pysbx.images.store import DirectoryStore, read_document

REF_NAME = "org.opencontainers.image.ref.name"
_CHUNK = 1 << 20
_EMPTY_INDEX = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": []}


@dataclass(frozen=True)
class StoredImage:
    """An image entry of the store: its name (None when it has none left) and the digest
    of its manifest or multi-platform index."""

    name: str | None
    digest: Digest
    media_type: str
    size: int

    @property
    def label(self) -> str:
        return self.name or str(self.digest)

    @property
    def descriptor(self) -> dict[str, Any]:
        """The image's descriptor, as index.json lists it (without its name)."""
        return {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}


class LocalStore:
    """The store's layout folder `folder`, its lock file and its staging folder beside it.
    The caller gives a folder it has made private (sandbox.state.private_folder)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.reader = DirectoryStore(folder)
        self.reader.label = "the image store"
        self._lock_path = folder.with_name(folder.name + ".lock")
        self._index_lock_path = folder.with_name(folder.name + ".index.lock")
        self._staging = folder.with_name(folder.name + ".staging")

    @classmethod
    def create(cls, folder: Path) -> LocalStore:
        """The store in `folder`, with an empty layout made on first use."""
        store = cls(folder)
        (folder / "blobs" / "sha256").mkdir(parents=True, exist_ok=True, mode=0o700)
        store._staging.mkdir(exist_ok=True, mode=0o700)
        if not (folder / "oci-layout").exists():
            _replace_file(folder / "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}), store._staging)
        if not (folder / "index.json").exists():
            with store._index_locked():
                if not (folder / "index.json").exists():
                    _replace_file(folder / "index.json", canonical_json(_EMPTY_INDEX), store._staging)
        return store

    # ----- locking -----

    def locked(self, exclusive: bool) -> contextlib.AbstractContextManager[None]:
        """The blobs' lock: shared while adding blobs, exclusive while removing them."""
        return _flocked(self._lock_path, exclusive)

    @contextlib.contextmanager
    def editing(self) -> Iterator[None]:
        """Both locks, for code that edits the layout as any layout (signing attaches a
        referrer): no prune removes its blobs, no other writer loses its index change."""
        with self.locked(exclusive=False), self._index_locked():
            yield

    def _index_locked(self) -> contextlib.AbstractContextManager[None]:
        """index.json's lock, always taken after the blobs' lock when both are held."""
        return _flocked(self._index_lock_path, True)

    # ----- reading -----

    def entries(self) -> list[dict[str, Any]]:
        """index.json's descriptors, as stored."""
        index = load_json_object(read_document(self.reader, "index.json"), "the image store: index.json")
        items = as_list(index.get("manifests", []), "the image store: index.json manifests")
        return [item for item in items if isinstance(item, dict)]

    def images(self) -> list[StoredImage]:
        """Every image entry (named or not), in index order; attached artifacts are not images."""
        found = []
        for entry in self.entries():
            if is_attached_artifact(entry):
                continue
            annotations = entry.get("annotations")
            name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
            found.append(
                StoredImage(
                    name=name if isinstance(name, str) else None,
                    digest=parse_digest(entry.get("digest"), "the image store: index.json"),
                    media_type=str(entry.get("mediaType", "")),
                    size=int(entry.get("size", 0)),
                )
            )
        return found

    def find(self, text: str) -> StoredImage | None:
        """The image `text` names: a name (`busybox`, `ghcr.io/acme/app:1.4`), a name pinned
        to a digest (`busybox@sha256:...`), a digest, or an image id prefix of at least 4
        hex digits that names one image only. None when nothing matches."""
        images = self.images()
        name, _, pinned = text.partition("@")
        if pinned:  # the digest is the identity; an entry of the same repository is preferred for its name
            repository = (_normalized_or_none(name) or "").rsplit(":", 1)[0]
            matching = [image for image in images if str(image.digest) == pinned]
            return next((i for i in matching if _repository(i.name) == repository), matching[0] if matching else None)
        full = _normalized_or_none(text)
        named = next((image for image in images if full is not None and image.name == full), None)
        if named is not None:
            return named
        return _by_id(images, text.removeprefix("sha256:"))

    def has_blob(self, digest: Digest) -> bool:
        return self.blob_file(digest).is_file()

    def blob_file(self, digest: Digest) -> Path:
        return self.folder / "blobs" / digest.algorithm / digest.hex

    def read_blob(self, digest: Digest, limit: int) -> bytes:
        """A small blob (manifest, index, config), read bounded and checked again."""
        data = read_document(self.reader, f"blobs/{digest.algorithm}/{digest.hex}", limit)
        if digest_bytes(data, digest.algorithm) != digest:
            raise ImageError(f"the image store: blob {digest} does not match its digest: the store is damaged")
        return data

    # ----- writing blobs: hold locked(exclusive=False) from the first blob to the naming -----

    def put_stream(self, stream: BinaryIO, digest: Digest | None, size: int | None, label: str) -> Digest:
        """Copy a blob in, verified against `digest` and `size` as it streams; a blob whose
        digest is not known beforehand (`digest` None) is named after what was read."""
        if digest is not None and self.has_blob(digest):
            return digest
        reader = VerifyingReader(stream, digest, size, label)
        hasher = None if digest is not None else digest_bytes(b"").hasher()
        with _staged(self._staging) as (out, staged):
            while chunk := reader.read(_CHUNK):
                out.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
            final = digest if digest is not None else Digest("sha256", hasher.hexdigest())  # type: ignore[union-attr]
            _publish(staged, self.blob_file(final))
        return final

    def staging_file(self, name: str) -> str:
        """A path in the staging folder (a download in progress keeps its partial file there)."""
        return str(self._staging / name)

    def adopt(self, path: str, digest: Digest) -> None:
        """Move a file of the staging folder, verified to be `digest` by whoever wrote it,
        into blobs/."""
        if os.path.dirname(os.path.abspath(path)) != str(self._staging):
            raise ImageError(f"the image store: {path} is not in its staging folder")
        _publish(path, self.blob_file(digest))

    def put_bytes(self, data: bytes) -> Digest:
        """Store a small document (a manifest, an index, a config) under its own digest."""
        digest = digest_bytes(data)
        if not self.has_blob(digest):
            with _staged(self._staging) as (out, staged):
                out.write(data)
                _publish(staged, self.blob_file(digest))
        return digest

    def reachable_size(self, images: list[StoredImage]) -> int:
        """Bytes on disk of every blob these images reach (a blob they share, once)."""
        reached = reachable_blobs(self.read_blob, self.has_blob, [image.descriptor for image in images])
        return sum(self.blob_file(parse_digest(text, "the image store")).stat().st_size for text in reached)

    # ----- naming (each takes the exclusive lock itself) -----

    def add(self, descriptor: dict[str, Any], names: list[str]) -> list[str]:
        """List an image under `names` (full references), moving each name off any other
        image; with no name, the image is listed once without one. Attached artifacts are
        listed as they come. Returns the names that moved off another image."""
        moved: list[str] = []
        digest = parse_digest(descriptor.get("digest"), "the image to name")
        if not self.has_blob(digest):
            raise ImageError(f"the image store: {digest} is not in the store; load or pull it again")

        def change(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            plain = {key: value for key, value in descriptor.items() if key != "annotations"}
            if is_attached_artifact(descriptor):
                return [*entries, descriptor] if descriptor not in entries else entries
            for name in names:
                for entry in entries:
                    if _name_of(entry) == name and entry.get("digest") != descriptor["digest"]:
                        moved.append(name)
                entries = _without_name(entries, name)
                entries.append({**plain, "annotations": {REF_NAME: name}})
            if not names and not any(entry.get("digest") == descriptor["digest"] for entry in entries):
                entries.append(plain)
            return entries

        self._change_index(change)
        return moved

    def untag(self, name: str) -> bool:
        """Remove one name; its image stays, nameless, if it has no other name (prune
        removes it). False when no image has that name."""
        found = False

        def change(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
            nonlocal found
            found = any(_name_of(entry) == name for entry in entries)
            return _without_name(entries, name)

        self._change_index(change)
        return found

    def remove(self, digests: set[str]) -> None:
        """Remove every entry of these images (named or not); their blobs go at the next
        collect_garbage, with the referrers and cosign tags of theirs that are left behind."""
        self._change_index(lambda entries: [entry for entry in entries if entry.get("digest") not in digests])

    def _change_index(self, change: Any) -> None:
        with self._index_locked():
            index = load_json_object(read_document(self.reader, "index.json"), "the image store: index.json")
            entries = [item for item in as_list(index.get("manifests", []), "index.json") if isinstance(item, dict)]
            index["manifests"] = _keep_nameless_images(change(entries))
            _replace_file(self.folder / "index.json", canonical_json(index), self._staging)

    # ----- garbage -----

    def collect_garbage(self) -> tuple[int, int]:
        """Remove attached artifacts whose image is gone, then every blob nothing listed
        reaches. Returns (blobs removed, bytes freed)."""
        with self.locked(exclusive=True), self._index_locked():
            entries = self.entries()
            present = {entry.get("digest") for entry in entries if not is_attached_artifact(entry)}
            kept = [entry for entry in entries if not is_attached_artifact(entry) or subject_of(self, entry) in present]
            if len(kept) != len(entries):
                index = {**_EMPTY_INDEX, "manifests": kept}
                _replace_file(self.folder / "index.json", canonical_json(index), self._staging)
            live = reachable_blobs(self.read_blob, self.has_blob, kept)
            return self._remove_blobs_except(live)

    def _remove_blobs_except(self, live: set[str]) -> tuple[int, int]:
        removed = freed = 0
        for algorithm_folder in (self.folder / "blobs").iterdir():
            for blob in algorithm_folder.iterdir():
                if f"{algorithm_folder.name}:{blob.name}" in live:
                    continue
                freed += blob.lstat().st_size
                blob.unlink()
                removed += 1
        for staged in self._staging.iterdir():  # under the exclusive lock, no one is writing
            staged.unlink()
        return removed, freed

    def disk_usage(self) -> int:
        return sum(blob.lstat().st_size for folder in (self.folder / "blobs").iterdir() for blob in folder.iterdir())


@contextlib.contextmanager
def _flocked(path: Path, exclusive: bool) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _normalized_or_none(text: str) -> str | None:
    try:
        return normalize_name(text)
    except ValueError:
        return None


def _repository(name: str | None) -> str | None:
    return name.rsplit(":", 1)[0] if name else None


def _by_id(images: list[StoredImage], prefix: str) -> StoredImage | None:
    if len(prefix) < 4 or any(char not in "0123456789abcdef" for char in prefix):
        return None
    matching = {image.digest for image in images if image.digest.hex.startswith(prefix)}
    if len(matching) > 1:
        raise ImageError(f"{prefix}: names {len(matching)} images in the store; give more of the id")
    return next((image for image in images if image.digest in matching), None)


def _name_of(entry: dict[str, Any]) -> str | None:
    annotations = entry.get("annotations")
    name = annotations.get(REF_NAME) if isinstance(annotations, dict) else None
    return name if isinstance(name, str) else None


def _without_name(entries: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """`entries` with `name` taken off whatever image has it; an image left without any
    entry stays, nameless (Docker's dangling image)."""
    kept = [entry for entry in entries if _name_of(entry) != name]
    for entry in entries:
        if _name_of(entry) == name and not any(other.get("digest") == entry.get("digest") for other in kept):
            kept.append({key: value for key, value in entry.items() if key != "annotations"})
    return kept


def _keep_nameless_images(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An image that lost its last name stays listed once, without a name (dangling); an
    image that has a name needs no nameless entry."""
    named = {entry.get("digest") for entry in entries if _name_of(entry) is not None}
    kept: list[dict[str, Any]] = []
    seen: set[object] = set()
    for entry in entries:
        digest = entry.get("digest")
        if _name_of(entry) is None and not is_attached_artifact(entry):
            if digest in named or digest in seen:
                continue
            seen.add(digest)
        kept.append(entry)
    return kept


def subject_of(store: LocalStore, entry: dict[str, Any]) -> str | None:
    """The image digest an attached artifact belongs to: a cosign tag says it in its name,
    a referrer in its manifest's subject."""
    name = _name_of(entry) or ""
    tag = name.rsplit(":", 1)[-1]
    if tag.startswith("sha256-"):
        return "sha256:" + tag.removeprefix("sha256-").split(".", 1)[0]
    try:
        return subject_digest(store.read_blob(parse_digest(entry.get("digest"), "index.json"), 1 << 20))
    except ImageError:
        return None


@contextlib.contextmanager
def _staged(staging: Path) -> Iterator[tuple[BinaryIO, str]]:
    """A new file in the staging folder, open for writing; gone again unless the caller
    published it (renamed it into place) before the block ended."""
    fd, staged = tempfile.mkstemp(dir=staging, prefix="new-")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out, staged
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
        raise


def _publish(staged: str, target: Path) -> None:
    os.chmod(staged, 0o644)
    os.rename(staged, target)


def _replace_file(path: Path, data: bytes, staging: Path) -> None:
    """A document of ours (index.json, oci-layout) replaced whole and durably: a blob torn by
    a crash fails its digest when read, a torn index.json would lose every name."""
    with _staged(staging) as (out, staged):
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
        _publish(staged, path)
