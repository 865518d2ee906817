"""Where an image's files live: a folder (OCI layout) or a tar archive (docker save,
OCI archive). Both answer the same two questions: does this path exist, and give me a
stream of its bytes. Nothing here trusts the content; digests are checked by callers."""

from __future__ import annotations

import io
import os
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from pysbx.images.errors import ImageError
from pysbx.images.regular import NotRegularFile, open_regular
from pysbx.images.tarstream import BoundedTarInfo

# Manifests, indexes and configs are small; a 2 GB "manifest" is an attack, not an image.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class BlobStore(Protocol):
    label: str

    def exists(self, path: str) -> bool: ...

    def size(self, path: str) -> int: ...

    def open(self, path: str) -> BinaryIO: ...


def read_document(store: BlobStore, path: str, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """Read a small JSON document whole, refusing one larger than `limit`."""
    if not store.exists(path):
        raise ImageError(f"{store.label}: {path} is missing")
    size = store.size(path)
    if size > limit:
        raise ImageError(f"{store.label}: {path} is {size} bytes, more than the {limit} allowed")
    with store.open(path) as stream:
        return stream.read(limit + 1)


class DirectoryStore:
    """An OCI layout folder on disk. Its members are reached from the layout folder one
    component at a time without following a symlink, and must be regular files: a layout
    is as hostile as an archive (an `index.json` linked to /proc/kmsg would hang a root run,
    a blob linked to /etc/shadow would have its digest printed)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def _parts(self, path: str) -> list[str]:
        clean = posixpath.normpath(path)
        if clean.startswith(("/", "../")) or clean == "..":
            raise ImageError(f"{self.label}: {path!r} points outside the layout")
        return clean.split("/")

    def _open_member(self, path: str) -> int:
        """A descriptor on the member, or OSError (NotRegularFile for a link or special file)."""
        parts = self._parts(path)
        folder = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                inner = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
                os.close(folder)
                folder = inner
            return open_regular(parts[-1], dir_fd=folder)
        finally:
            os.close(folder)

    def exists(self, path: str) -> bool:
        try:
            os.close(self._open_member(path))
        except NotRegularFile as error:
            raise ImageError(f"{self.label}: {path} is {error.strerror}") from None
        except OSError:
            return False
        return True

    def size(self, path: str) -> int:
        fd = self._member_or_error(path)
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def open(self, path: str) -> BinaryIO:
        return os.fdopen(self._member_or_error(path), "rb")

    def _member_or_error(self, path: str) -> int:
        try:
            return self._open_member(path)
        except OSError as error:
            raise ImageError(f"{self.label}: cannot read {path}: {error.strerror}") from None


@dataclass(frozen=True, slots=True)
class _Member:
    offset: int
    size: int


class _Slice(io.RawIOBase):
    """A read-only window onto one member's bytes inside the archive file."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._file.seek(offset)
        self._left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0 or n > self._left:
            n = self._left
        if n == 0:
            return b""
        chunk = self._file.read(n)
        self._count(len(chunk))
        return chunk

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        """Straight into the reader's buffer: BufferedReader reads a large request through here,
        and a read then a copy (with a fresh allocation each time) cost a docker archive's
        layers 0.25 s per 500 MB, as much as hashing them."""
        view = memoryview(buffer).cast("B")[: self._left]
        if not view:
            return 0
        got = self._file.readinto(view)
        self._count(got or 0)
        return got or 0

    def _count(self, got: int) -> None:
        if not got:
            raise ImageError(f"{self._file.name}: archive ends inside a member (truncated file?)")
        self._left -= got

    def close(self) -> None:
        self._file.close()
        super().close()


class TarStore:
    """A tar archive (docker save output or an OCI archive), indexed once by reading only
    its headers. Symbolic and hard links between members (docker save links duplicate
    layers) are followed inside the archive and never outside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        self._members: dict[str, _Member] = {}
        self._links: dict[str, str] = {}
        self._index()

    def _index(self) -> None:
        try:
            with os.fdopen(open_regular(str(self.path), follow=True), "rb") as raw:
                magic = raw.read(4)
                if magic.startswith(_GZIP_MAGIC) or magic == _ZSTD_MAGIC:
                    raise ImageError(
                        f"{self.label}: the archive itself is compressed; decompress it first "
                        "(docker save writes a plain tar)"
                    )
                raw.seek(0)
                with tarfile.open(fileobj=raw, mode="r:", tarinfo=BoundedTarInfo) as archive:
                    for info in archive:
                        self._add(info)
        except (tarfile.TarError, ValueError) as error:
            # tarfile reads GNU sparse PAX records with a bare int() (ValueError, not TarError).
            raise ImageError(f"{self.label}: not a readable tar archive ({error})") from None
        except RecursionError:  # tarfile reads chained records by recursion: hundreds of them
            raise ImageError(f"{self.label}: not a readable tar archive (too many chained records)") from None
        except OSError as error:
            raise ImageError(f"{self.label}: cannot read: {error.strerror}") from None

    def _add(self, info: tarfile.TarInfo) -> None:
        name = posixpath.normpath(info.name.lstrip("/"))
        if info.isfile():
            self._members[name] = _Member(info.offset_data, info.size)
            self._links.pop(name, None)
        elif info.issym():
            self._links[name] = posixpath.normpath(posixpath.join(posixpath.dirname(name), info.linkname))
        elif info.islnk():
            self._links[name] = posixpath.normpath(info.linkname.lstrip("/"))

    def _member(self, path: str) -> _Member | None:
        name = posixpath.normpath(path)
        for _ in range(16):
            member = self._members.get(name)
            if member is not None:
                return member
            target = self._links.get(name)
            if target is None or target.startswith("../"):
                return None
            name = target
        return None

    def exists(self, path: str) -> bool:
        return self._member(path) is not None

    def size(self, path: str) -> int:
        member = self._member(path)
        if member is None:
            raise ImageError(f"{self.label}: {path} is missing")
        return member.size

    def open(self, path: str) -> BinaryIO:
        member = self._member(path)
        if member is None:
            raise ImageError(f"{self.label}: {path} is missing")
        return io.BufferedReader(_Slice(self.path, member.offset, member.size), 1 << 20)


def open_store(path: Path) -> BlobStore:
    if path.is_dir():
        return DirectoryStore(path)
    if path.is_file():
        return TarStore(path)
    if not os.path.lexists(path):
        raise ImageError(f"{path}: no such file or directory")
    raise ImageError(f"{path}: neither an image archive nor an OCI layout folder")


def sniff_compression(store: BlobStore, path: str) -> str:
    """Tell gzip, zstd and plain tar apart by their first bytes (docker save does not
    say which it wrote)."""
    with store.open(path) as stream:
        head = stream.read(4)
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head == _ZSTD_MAGIC:
        return "zstd"
    return "none"
