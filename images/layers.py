"""Walking a layer entry by entry, in one pass over its compressed blob, without
extracting: the digest of the blob and the diff_id of the uncompressed tar are both
checked when the walk reaches the end, and memory does not grow with file sizes."""

from __future__ import annotations

import math
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO, cast

from pysbx.images.decompress import ByteBudget, Readable, decompressing_reader
from pysbx.images.digest import VerifyingReader
from pysbx.images.errors import ImageError
from pysbx.images.image import Image, Layer

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_MAX_META_HEADER = 1 << 20  # a PAX or GNU long-name header larger than this is hostile
_MAX_ID = 2**32 - 2  # (uid_t)-1 means "leave unchanged" to chown
_MAX_MTIME = 2**63 / 1e9  # nanoseconds since the epoch must fit in 64 bits
_TAR_BUFFER = 1 << 16  # tarfile copies the rest of its buffer on every header: larger is slower

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


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses metadata headers big enough to exhaust memory (tarfile reads them whole)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        meta_types = (
            tarfile.XHDTYPE,
            tarfile.XGLTYPE,
            tarfile.SOLARIS_XHDTYPE,
            tarfile.GNUTYPE_LONGNAME,
            tarfile.GNUTYPE_LONGLINK,
        )
        if self.type in meta_types and self.size > _MAX_META_HEADER:
            raise tarfile.HeaderError(f"metadata header of {self.size} bytes")
        return cast(tarfile.TarInfo, super()._proc_member(tarfile_))  # type: ignore[misc]


def normalize_path(name: str, label: str, what: str = "entry") -> str:
    """Lexically clean a member name: leading `/` and `.` go, `..` may not climb above the
    root. (The extractor resolves symlinks separately, inside the root.)"""
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


def check_header(info: tarfile.TarInfo, label: str) -> None:
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


def _entry_from(info: tarfile.TarInfo, label: str) -> Entry | None:
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
    xattrs = {k[len("SCHILY.xattr.") :]: v for k, v in info.pax_headers.items() if k.startswith("SCHILY.xattr.")}
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
    """An entry and, while the walk stands on it, its data."""

    __slots__ = ("_archive", "_info", "_label", "entry")

    def __init__(self, entry: Entry, archive: tarfile.TarFile, info: tarfile.TarInfo, label: str) -> None:
        self.entry = entry
        self._archive = archive
        self._info = info
        self._label = label

    def copy_data_to(self, target: IO[bytes]) -> None:
        try:
            source = self._archive.extractfile(self._info)
            if source is not None:
                shutil.copyfileobj(source, target, _TAR_BUFFER)
        except tarfile.TarError as error:
            raise ImageError(f"{self._label}: data of /{self.entry.path} is cut short ({error})") from None

    def read_data(self, limit: int) -> bytes:
        """The first `limit` bytes of the file's data (for content checks)."""
        try:
            source = self._archive.extractfile(self._info)
            return b"" if source is None else source.read(limit)
        except tarfile.TarError as error:
            raise ImageError(f"{self._label}: data of /{self.entry.path} is cut short ({error})") from None


def walk_layer(image: Image, layer: Layer, budget: ByteBudget | None = None) -> Iterator[LayerMember]:
    """Yield each entry of `layer` in archive order. The layer's digest and diff_id are
    verified when the walk ends; a mismatch raises ImageError naming the layer."""
    budget = budget or ByteBudget()
    label = f"{image.store.label}: {layer.label}"
    with image.store.open(layer.location) as raw:
        # A compressed layer of a docker archive is described by its diff_id alone (no digest of
        # the compressed bytes exists): the diff_id check below then verifies it whole.
        described_by_diff_id = layer.compression != "none" and layer.digest == layer.diff_id
        blob = VerifyingReader(
            raw, None if described_by_diff_id else layer.digest, None if described_by_diff_id else layer.size, label
        )
        plain = decompressing_reader(blob, layer.compression, budget, label)
        checked: Readable = plain
        diff = None
        if not (layer.compression == "none" and layer.digest == layer.diff_id):
            diff = VerifyingReader(cast(BinaryIO, plain), layer.diff_id, None, f"{label} (diff_id)")
            checked = diff
        yield from _members(checked, label, budget)
        (diff or blob).drain()
        blob.drain()


def _members(stream: Readable, label: str, budget: ByteBudget) -> Iterator[LayerMember]:
    try:
        with tarfile.open(
            fileobj=cast(IO[bytes], stream),
            mode="r|",
            bufsize=_TAR_BUFFER,
            tarinfo=_BoundedTarInfo,
            encoding="utf-8",
            errors="surrogateescape",
        ) as archive:
            last: tarfile.TarInfo | None = None
            while (info := _next_member(archive, last)) is not None:
                archive.members.clear()  # type: ignore[attr-defined]  # stream mode keeps every header otherwise
                last = info
                _check_declared_size(info, label, budget)
                entry = _entry_from(info, label)
                if entry is not None:
                    yield LayerMember(entry, archive, info, label)
    except (tarfile.TarError, ValueError) as error:
        # tarfile reads GNU sparse records (GNU.sparse.map, .size, ...) with a bare int(): a
        # hostile PAX header escapes from it as ValueError, not as a TarError.
        raise ImageError(f"{label}: not a valid tar stream ({error})") from None


def _check_declared_size(info: tarfile.TarInfo, label: str, budget: ByteBudget) -> None:
    """Refuse an entry that declares more data than may still be unpacked. Moving to the
    next entry makes tarfile skip this one's data by reading it, block after block, even
    once the stream has ended: a size of 10**20 in a PAX record would spin forever."""
    budget.check_room(info.size, f"{label}: entry {info.name!r} ({info.size} bytes)")


def _next_member(archive: tarfile.TarFile, last: tarfile.TarInfo | None) -> tarfile.TarInfo | None:
    """archive.next(), except that a stream ending right after the last member's data (no
    block padding, no end-of-archive marker) counts as the end. umoci 0.4.7, as Debian
    ships it, writes layers like that; every byte is still covered by the digests, and a
    member whose data is cut short is still an error."""
    try:
        return archive.next()
    except tarfile.ReadError:
        position: int = getattr(archive.fileobj, "pos", -1)
        if last is not None and position >= last.offset_data + last.size and _at_eof(archive):
            return None
        raise


def _at_eof(archive: tarfile.TarFile) -> bool:
    return archive.fileobj is not None and not archive.fileobj.read(1)


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
