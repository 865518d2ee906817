"""Walking a layer entry by entry, in one pass over its compressed blob, without
extracting: the digest of the blob and the diff_id of the uncompressed tar are both
checked when the walk reaches the end, and memory does not grow with file sizes."""

from __future__ import annotations

import math
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from pysbx.images.decompress import ByteBudget, Readable, decompressing_reader
from pysbx.images.digest import VerifyingReader
from pysbx.images.errors import ImageError
from pysbx.images.heap import keep_chunks_in_heap
from pysbx.images.image import Image, Layer
from pysbx.images.prefetch import HashedBehind, Prefetched
from pysbx.images.tarstream import Header, TarStream

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_XATTR = "SCHILY.xattr."
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "leave unchanged" to chown
_MAX_MTIME = 2**63 / 1e9  # nanoseconds since the epoch must fit in 64 bits

KIND_BY_TYPE = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.GNUTYPE_SPARSE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}


@dataclass(slots=True)
class Entry:
    """One tar entry, with its path normalised inside the root (no leading `/`, no `..`).

    A whiteout entry names what it removes: `whiteout == "file"` removes `path` from the
    layers below, `whiteout == "opaque"` hides everything below the directory `path`."""

    path: str
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    link: str
    mtime: float
    whiteout: str | None = None
    xattrs: dict[str, str] | None = None


def normalize_path(name: str, label: str, what: str = "entry") -> str:
    """Lexically clean a member name: leading `/` and `.` go, `..` may not climb above the
    root. (The extractor resolves symlinks separately, inside the root.)"""
    if name and name[0] not in "/." and name[-1] != "/" and "//" not in name and "/." not in name:
        return name  # no empty, `.` or `..` component: already clean (most names)
    parts: list[str] = []
    for component in name.split("/"):
        if component in ("", "."):
            continue
        if component == "..":
            if not parts:
                raise ImageError(f"{label}: {what} {name!r} climbs out of the root with '..'")
            parts.pop()
        else:
            parts.append(component)
    return "/".join(parts)


def check_header(info: Header, label: str) -> None:
    """PAX records and base-256 fields can carry values no file can have: a NUL inside a
    name, a negative size (which makes tar readers disagree on where the next header is),
    an owner or time the system calls refuse. Refuse them here, naming the entry, rather
    than fail later with a ValueError or OverflowError."""
    problem = None
    if "\0" in info.name or "\0" in info.linkname:
        problem = "a NUL byte in its name or link target"
    elif info.size < 0:
        problem = f"a negative size ({info.size})"
    elif not (0 <= info.uid <= _MAX_ID and 0 <= info.gid <= _MAX_ID):
        problem = f"an impossible owner ({info.uid}:{info.gid})"
    elif not (math.isfinite(info.mtime) and abs(info.mtime) < _MAX_MTIME):
        problem = f"an impossible modification time ({info.mtime})"
    if problem is not None:
        raise ImageError(f"{label}: entry {info.name!r} has {problem}")


def _entry_from(info: Header, label: str) -> Entry | None:
    if not info.in_bounds:  # what tarfile or Python read (PAX, base-256, "-7" in octal) may hold anything
        check_header(info, label)
    path = normalize_path(info.name, label)
    if not path:
        return None  # the root itself
    kind = KIND_BY_TYPE.get(info.type, "file")
    link = info.linkname
    if kind == "hardlink":
        link = normalize_path(info.linkname, label, f"hard link {path!r} ->")
        if not link:
            raise ImageError(f"{label}: hard link {path!r} points at the root directory")
    xattrs = _xattrs(info.pax_headers) if info.pax_headers else None
    entry = Entry(
        path=path,
        kind=kind,
        mode=info.mode & 0o7777,
        uid=info.uid,
        gid=info.gid,
        size=info.size if kind == "file" else 0,
        link=link,
        mtime=info.mtime,
        xattrs=xattrs or None,
    )
    return _apply_whiteout_name(entry, label)


def _xattrs(pax_headers: dict[str, str]) -> dict[str, str]:
    return {key[len(_XATTR) :]: value for key, value in pax_headers.items() if key.startswith(_XATTR)}


def _apply_whiteout_name(entry: Entry, label: str) -> Entry | None:
    parent, _, base = entry.path.rpartition("/")
    if not base.startswith(WHITEOUT_PREFIX):
        return entry
    if base == OPAQUE_MARKER:
        entry.path, entry.whiteout = parent, "opaque"
        return entry
    if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        return None  # aufs bookkeeping (.wh..wh.plnk and friends): not content
    hidden = base[len(WHITEOUT_PREFIX) :]
    if hidden in ("", ".", ".."):
        raise ImageError(f"{label}: whiteout {entry.path!r} names nothing")
    entry.path = f"{parent}/{hidden}" if parent else hidden
    entry.whiteout = "file"
    return entry


class LayerMember:
    """An entry and, while the walk stands on it, its data (which may be read once)."""

    __slots__ = ("_header", "_label", "_read", "_stream", "entry")

    def __init__(self, entry: Entry, stream: TarStream, header: Header, label: str) -> None:
        self.entry = entry
        self._stream = stream
        self._header = header
        self._label = label
        self._read = False

    def copy_data_to(self, fd: int) -> None:
        """Write the file's data to descriptor `fd` with plain write calls (a file object's
        buffer only copies the pieces once more); a sparse file's holes stay holes."""
        self._claim()
        runs = self._header.sparse or [(0, self._header.size)]
        for offset, length in runs:
            if self._header.sparse is not None:
                os.lseek(fd, offset, os.SEEK_SET)
            for piece in self._data(length):
                while piece:
                    piece = piece[os.write(fd, piece) :]
        if self._header.sparse is not None:
            os.ftruncate(fd, self._header.size)  # a hole at the end

    def read_data(self, limit: int) -> bytes:
        """The first `limit` bytes of the file's data (for content checks)."""
        self._claim()
        if self._header.sparse is None:
            return b"".join(self._data(min(limit, self._header.size)))
        content = bytearray(min(limit, self._header.size))
        for offset, length in self._header.sparse:
            pieces = b"".join(bytes(piece) for piece in self._data(length))
            content[offset : offset + len(pieces)] = pieces[: max(0, len(content) - offset)]
        return bytes(content[: min(limit, self._header.size)])

    def peek_data(self, limit: int) -> bytes:
        """The first `limit` bytes of the file's data, left for read_data or copy_data_to
        (a look at a file's start decides whether it is read at all)."""
        if self._header.sparse is not None:
            return b""
        if self._read:
            raise ImageError(f"{self._label}: data of /{self.entry.path} peeked at after it was read")
        return self._stream.peek(min(limit, self._header.size))

    def _claim(self) -> None:
        """The data streams past once: a second read would get the next member's bytes."""
        if self._read:
            raise ImageError(f"{self._label}: data of /{self.entry.path} read twice")
        self._read = True

    def _data(self, length: int) -> Iterator[memoryview]:
        """The next `length` bytes of the data; refused when the data is cut short."""
        got = 0
        for piece in self._stream.pieces(length):
            got += len(piece)
            yield piece
        if got < length:
            raise ImageError(f"{self._label}: data of /{self.entry.path} is cut short")


def walk_layer(
    image: Image, layer: Layer, budget: ByteBudget | None = None, light_reader: bool = False
) -> Iterator[LayerMember]:
    """Yield each entry of `layer` in archive order. The layer's digest and diff_id are
    verified when the walk ends; a mismatch raises ImageError naming the layer.

    The second thread reads, hashes and inflates ahead. A `light_reader` (an audit, which
    does little per entry) reads an uncompressed layer itself and leaves the worker only the
    hash: the two threads then share the work evenly. A writer (unpack, whose thread spends
    its time in the kernel) is faster leaving the reading to the worker too."""
    budget = budget or ByteBudget()
    label = f"{image.store.label}: {layer.label}"
    keep_chunks_in_heap()
    with image.store.open(layer.location) as raw:
        if light_reader and _one_digest(layer):
            yield from _walk_plain(raw, layer, label, budget)
        else:
            yield from _walk_ahead(raw, layer, label, budget)


def _one_digest(layer: Layer) -> bool:
    """An uncompressed layer whose digest is its diff_id: one hash of one stream checks both."""
    return layer.compression == "none" and layer.digest == layer.diff_id


def _walk_plain(raw: BinaryIO, layer: Layer, label: str, budget: ByteBudget) -> Iterator[LayerMember]:
    """An uncompressed layer (one digest): read here, hashed behind in the other thread."""
    with HashedBehind(layer.digest.hasher()) as hashed:
        blob = VerifyingReader(raw, layer.digest, layer.size, label, hashed)
        yield from _members(decompressing_reader(blob, "none", budget, label), label, budget)
        blob.drain()  # the digest is checked at the end of the stream


def _walk_ahead(raw: BinaryIO, layer: Layer, label: str, budget: ByteBudget) -> Iterator[LayerMember]:
    """Read, hashed and inflated ahead in the other thread, parsed here."""
    # A compressed layer of a docker archive is described by its diff_id alone (no digest of
    # the compressed bytes exists): the diff_id check below then verifies it whole.
    described_by_diff_id = layer.compression != "none" and layer.digest == layer.diff_id
    blob = VerifyingReader(
        raw, None if described_by_diff_id else layer.digest, None if described_by_diff_id else layer.size, label
    )
    plain = decompressing_reader(blob, layer.compression, budget, label)
    checked: Readable = plain
    diff = None
    if not _one_digest(layer):  # else the blob's digest is all there is to check
        diff = VerifyingReader(cast(BinaryIO, plain), layer.diff_id, None, f"{label} (diff_id)")
        checked = diff

    def finish() -> None:  # the digests are checked at the end of each stream
        (diff or blob).drain()
        blob.drain()

    with Prefetched(checked, finish) as ahead:
        yield from _members(ahead, label, budget)
        ahead.drain()


def _members(stream: Readable, label: str, budget: ByteBudget) -> Iterator[LayerMember]:
    tar = TarStream(stream, label)
    try:
        for header in tar.headers():
            _check_declared_size(header, label, budget)
            entry = _entry_from(header, label)
            if entry is not None:
                yield LayerMember(entry, tar, header, label)
    except (tarfile.TarError, ValueError) as error:
        # tarfile reads GNU sparse records (GNU.sparse.map, .size, ...) with a bare int(): a
        # hostile PAX header escapes from it as ValueError, not as a TarError.
        raise ImageError(f"{label}: not a valid tar stream ({error})") from None


def _check_declared_size(info: Header, label: str, budget: ByteBudget) -> None:
    """Refuse an entry that declares more data than may still be unpacked, before moving
    past it reads its data: a size of 10**20 in a PAX record would read until the stream
    ends, and a sparse map can declare any size."""
    if not budget.has_room(info.size):  # the message only for a refusal: not for every entry
        budget.check_room(info.size, f"{label}: entry {info.name!r} ({info.size} bytes)")


@dataclass(frozen=True, slots=True)
class LayerStats:
    entries: int
    files: int
    uncompressed_bytes: int
    file_bytes: int


def layer_stats(image: Image, layer: Layer, budget: ByteBudget | None = None) -> LayerStats:
    """Count a layer's entries and bytes, verifying its digest and diff_id on the way."""
    budget = budget or ByteBudget()
    before = budget.used
    entries = files = file_bytes = 0
    for member in walk_layer(image, layer, budget):
        entries += 1
        if member.entry.kind == "file" and member.entry.whiteout is None:
            files += 1
            file_bytes += member.entry.size
    return LayerStats(entries, files, budget.used - before, file_bytes)
