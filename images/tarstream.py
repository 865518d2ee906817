"""Reading a tar stream header by header, without tarfile's cost per member (about 40 µs,
most of an image audit's time once the digests are off the main thread). A plain header (the
entries of nearly every layer: one 512-byte ustar or GNU block with octal numbers and a
checksum that adds up) is read here. Any other (PAX and GNU long-name records, sparse files,
base-256 numbers, a signed checksum, a type tarfile would read as a plain file) is handed to
tarfile's own header reader at the same place in the stream, and the stream ends where
tarfile's would: both read every archive alike, which the property tests check."""

from __future__ import annotations

import re
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

from pysbx.images.decompress import Readable
from pysbx.images.errors import ImageError

_PlainFields = Callable[[bytes], "tuple[str, str, bytes, int, int, int, int, int] | None"]
plain_fields: _PlainFields | None
try:
    from pysbx.images._tarhead import plain_fields
except ImportError:  # not built (no compiler at install): every header is read in Python below
    plain_fields = None

BLOCK = 512
_Runs = list[tuple[int, int]] | None
_CHUNK = 4 << 20  # asked of the source at once; the read-ahead gives its chunks whole
_MAX_META_HEADER = 1 << 20  # a PAX or GNU long-name header larger than this is hostile
_MAX_HEADER = 4 * _MAX_META_HEADER + 16 * BLOCK  # a member's headers and records (g, x, L, K), all told
_MAX_RECORDS = 16  # PAX, global PAX and GNU long-name records before one member
# Types whose header this module reads itself: regular (0, NUL, 7), link, symlink, devices,
# directory, fifo. tarfile's SUPPORTED_TYPES less the GNU and PAX record types.
_PLAIN_TYPES = frozenset(b"\x0001234567")
_DATA_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)  # the plain types whose data tarfile skips
_NO_NUMBER = (0o200, 0o377)  # a first byte marking base-256: tarfile's job
# tarfile's header errors, which TarFile.next tells apart (typeshed does not list them).
_AT_END: type[Exception] = getattr(tarfile, "EOFHeaderError")  # noqa: B009
_EMPTY: type[Exception] = getattr(tarfile, "EmptyHeaderError")  # noqa: B009
_DAMAGED: tuple[type[Exception], ...] = tuple(
    getattr(tarfile, name) for name in ("InvalidHeaderError", "TruncatedHeaderError")
)
_AFTER_RECORD: type[Exception] = getattr(tarfile, "SubsequentHeaderError")  # noqa: B009


@dataclass(slots=True)
class Header:
    """What a layer walk needs of one member, read from its header (or headers)."""

    name: str
    linkname: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int  # the file's size (a sparse file's, holes included)
    mtime: float
    offset_data: int  # where its data starts in the stream
    next_header: int  # where the next member's header starts
    pax_headers: dict[str, str] = field(default_factory=dict)
    sparse: list[tuple[int, int]] | None = None  # (offset, length) of each stored run
    # Read by the C reader: a name cut at its first NUL, numbers of octal digits only (no
    # sign, unlike tarfile's reading), at most 11. Such a header cannot hold the values
    # layers.check_header refuses.
    in_bounds: bool = False

    @property
    def stored(self) -> int:
        """Bytes of data stored in the archive after the header."""
        return self.size if self.sparse is None else sum(length for _, length in self.sparse)


def prefix_field(block: bytes | bytearray) -> tuple[int, int] | None:
    """Where a header's name prefix lies, as Go's archive/tar (Docker's, containerd's) reads
    it: only a POSIX header (magic `ustar\\0`) has one, 155 bytes, or 131 in a star header
    (`tar\\0` at its end). tarfile joins the bytes there to the name whatever the magic; in a
    GNU header they are access and change times, so an image could show an auditor reading
    as tarfile does `x/usr/bin/tool` while Docker extracts `usr/bin/tool`."""
    if block[257:263] != b"ustar\0":
        return None
    return (345, 476) if block[508:512] == b"tar\0" else (345, 500)


class BoundedTarInfo(tarfile.TarInfo):
    """tarfile's header, read with Go's prefix rule (prefix_field); and refusing metadata
    headers big enough to exhaust memory (tarfile reads them whole)."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> BoundedTarInfo:
        info = super().frombuf(buf, encoding, errors)
        if not buf[345] or info.type in tarfile.GNU_TYPES:
            return info  # tarfile joined no prefix
        name = tarfile.nts(buf[0:100], encoding, errors)  # type: ignore[attr-defined]
        if info.isdir():
            name = name.rstrip("/")
        field = prefix_field(buf)
        prefix = tarfile.nts(buf[field[0] : field[1]], encoding, errors) if field else ""  # type: ignore[attr-defined]
        info.name = f"{prefix}/{name}" if prefix else name
        return info

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
        if self.type in meta_types and isinstance(tarfile_, _TarfileView):
            tarfile_.count_record()
        return cast(tarfile.TarInfo, super()._proc_member(tarfile_))  # type: ignore[misc]


class _TarfileView:
    """The few attributes tarfile's header reader uses of its TarFile: the stream (read and
    tell), the names' encoding, the global PAX records, and where the next header starts.
    The stream is read through a bound: tarfile keeps whatever one header's records hold
    (a GNU sparse map chained over a gigabyte of extension blocks would become tens of
    millions of tuples), so one header with its records may take at most _MAX_HEADER bytes."""

    def __init__(self, stream: TarStream) -> None:
        self.fileobj = self
        self.encoding = "utf-8"
        self.errors = "surrogateescape"
        self.pax_headers: dict[str, str] = {}
        self.offset = 0
        self._stream = stream
        self._left = self._records = 0

    def start(self, offset: int) -> None:
        self.offset, self._left, self._records = offset, _MAX_HEADER, 0

    def count_record(self) -> None:
        """tarfile reads each record's next header by recursion: 300 chained PAX records
        (300 KB of stream) raised RecursionError out of the walk. GNU tar and Go write at
        most three before a member."""
        self._records += 1
        if self._records > _MAX_RECORDS:
            raise tarfile.HeaderError(f"more than {_MAX_RECORDS} records before one member")

    def read(self, n: int = -1) -> bytes:
        if n > self._left:
            raise tarfile.HeaderError(f"a header with records of more than {_MAX_HEADER} bytes")
        self._left -= n
        return self._stream.read(n)

    def tell(self) -> int:
        return self._stream.tell()


class TarStream:
    """Members of a tar stream, in order. Each member's data may be read once, while the
    walk stands on it; what is not read is skipped when the walk moves on."""

    def __init__(self, source: Readable, label: str) -> None:
        self._source = source
        self._label = label
        self._buffer = b""
        self._at = 0  # index of the next unread byte in _buffer
        self._base = 0  # stream offset of _buffer[0]
        self._ahead: list[bytes] = []  # chunks a peek read from the source, to come after _buffer
        self._view = _TarfileView(self)

    # -- the stream ----------------------------------------------------------------------------
    def tell(self) -> int:
        return self._base + self._at

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (fewer only at the end of the stream)."""
        if n < 0:
            raise ValueError("TarStream.read needs a size")
        end = self._at + n
        if end <= len(self._buffer):
            data = self._buffer[self._at : end]
            self._at = end
            return data
        parts = [self._buffer[self._at :]]
        wanted = n - len(parts[0])
        self._drop_buffer()
        while wanted > 0 and (chunk := self._next_chunk(wanted)):
            if len(chunk) > wanted:
                self._buffer, self._at = chunk, wanted
                chunk = chunk[:wanted]
            else:
                self._base += len(chunk)
            parts.append(chunk)
            wanted -= len(chunk)
        return b"".join(parts)

    def peek(self, n: int) -> bytes:
        """The next `n` bytes, left to be read. Across the end of the buffer, the chunks it
        needs are kept aside for the reads to come: only `n` bytes are ever copied."""
        end = self._at + n
        if end <= len(self._buffer):
            return self._buffer[self._at : end]
        parts, have = [self._buffer[self._at :]], len(self._buffer) - self._at
        for chunk in self._ahead:
            parts.append(chunk[: n - have])
            have += len(parts[-1])
        while have < n and (chunk := self._source.read(_CHUNK)):
            self._ahead.append(chunk)
            parts.append(chunk[: n - have])
            have += len(parts[-1])
        return b"".join(parts)

    def pieces(self, n: int) -> Iterator[memoryview]:
        """The next `n` bytes as views of the buffer, ending early only at the end of the stream."""
        while n > 0:
            if self._at == len(self._buffer) and not self._refill():
                return
            take = min(n, len(self._buffer) - self._at)
            yield memoryview(self._buffer)[self._at : self._at + take]
            self._at += take
            n -= take

    def skip(self, n: int) -> int:
        """Move on `n` bytes; how many there were."""
        skipped = 0
        while (left := len(self._buffer) - self._at) < n - skipped:
            skipped += left
            if not self._refill():
                return skipped
        self._at += n - skipped
        return n

    def _next_chunk(self, wanted: int) -> bytes:
        return self._ahead.pop(0) if self._ahead else self._source.read(max(wanted, _CHUNK))

    def _refill(self) -> bool:
        chunk = self._next_chunk(_CHUNK)
        self._drop_buffer()
        self._buffer = chunk
        return bool(chunk)

    def _drop_buffer(self) -> None:
        self._base += len(self._buffer)
        self._buffer, self._at = b"", 0

    # -- the members ---------------------------------------------------------------------------
    def headers(self) -> Iterator[Header]:
        """Each member's header; the archive ends at tarfile's end (a zero block, the end of
        the stream, or a damaged header after the first)."""
        last: Header | None = None
        while True:
            try:
                header = self._next_header()
            except tarfile.ReadError:
                if last is not None and self._ended_after(last):
                    return
                raise
            if header is None:
                return
            yield header
            last = header
            if not self._move_past(header):
                return

    def _next_header(self) -> Header | None:
        offset = self.tell()
        block = self.read(BLOCK)
        header = self._plain_header(block, offset) if not self._view.pax_headers else None
        if header is not None:
            return header
        self._unread(block)
        return self._tarfile_header(offset)

    def _unread(self, block: bytes) -> None:
        """Put back what the last read gave."""
        if self._at >= len(block):
            self._at -= len(block)
        else:  # it straddled two chunks
            self._base += self._at - len(block)
            self._buffer, self._at = block + self._buffer[self._at :], 0

    def _tarfile_header(self, offset: int) -> Header | None:
        """tarfile's reading of the header here, and TarFile.next's verdict on its errors."""
        self._view.start(offset)
        try:
            info = BoundedTarInfo.fromtarfile(cast(tarfile.TarFile, self._view))
        except _AT_END:
            return None
        except _EMPTY:
            if offset == 0:
                raise tarfile.ReadError("empty file") from None
            return None
        except _DAMAGED as error:
            if offset == 0:
                raise tarfile.ReadError(str(error)) from None
            return None
        except _AFTER_RECORD as error:
            raise tarfile.ReadError(str(error)) from None
        return Header(
            info.name, info.linkname, info.type, info.mode, info.uid, info.gid, info.size, info.mtime,
            info.offset_data, self._view.offset, dict(info.pax_headers), cast(_Runs, info.sparse),
        )  # fmt: skip

    def _plain_header(self, block: bytes, offset: int) -> Header | None:
        """The header when `block` is plain (see the module's docstring), else None. The C
        reader takes the common spellings; what it leaves is read in Python (plain_fields_in_python)."""
        fields = plain_fields(block) if plain_fields is not None else None
        in_bounds = fields is not None
        if fields is None:
            fields = plain_fields_in_python(block)
            if fields is None:
                return None
        name, link, kind, mode, uid, gid, size, mtime = fields
        data = offset + BLOCK
        padded = -(-size // BLOCK) * BLOCK if kind in _DATA_TYPES else 0
        return Header(name, link, kind, mode, uid, gid, size, mtime, data, data + padded, in_bounds=in_bounds)

    def _move_past(self, header: Header) -> bool:
        """Skip what is left of the member's data and padding; False when the stream ends
        where the layer walker lets it end."""
        left = header.next_header - self.tell()
        if left < 0:
            raise ImageError(f"{self._label}: not a valid tar stream (a member's data runs into the next header)")
        if self.skip(left) == left:
            return True
        if self._ended_after(header):
            return False
        raise ImageError(f"{self._label}: not a valid tar stream (unexpected end of data)")

    def _ended_after(self, last: Header) -> bool:
        """Whether the stream ends, with all of the last member's data, where tarfile sees a
        broken archive. umoci 0.4.7, as Debian ships it, writes layers that end right after
        the last member's data (no padding, no end-of-archive blocks): every byte is still
        covered by the digests, and data cut short is still an error."""
        return self.tell() >= last.offset_data + last.stored and not self.read(1)


def plain_fields_in_python(block: bytes) -> tuple[str, str, bytes, int, int, int, int, int] | None:
    """What images/_tarhead.c's plain_fields answers, in Python, and more: the numbers as any
    writer spells them (spaces around, no terminator) where tarfile reads them the same way."""
    if len(block) != BLOCK or block[156] not in _PLAIN_TYPES:
        return None
    numbers = _numbers(block)
    if numbers is None:
        return None
    mode, uid, gid, size, mtime, checksum = numbers
    if not _adds_up(block, checksum):
        return None  # perhaps a signed checksum; or a damaged header, which tarfile judges
    kind = block[156:157]
    name = _text(block, 0, 100)
    if kind == tarfile.AREGTYPE and name.endswith("/"):
        kind = tarfile.DIRTYPE  # old V7: a directory is a regular file named with a slash
    field = prefix_field(block) if block[345] else None
    prefix = _text(block, *field) if field else ""
    if prefix:  # tarfile strips a directory's slashes before and after joining the prefix
        name = prefix + "/" + (name.rstrip("/") if kind == tarfile.DIRTYPE else name)
    if kind == tarfile.DIRTYPE:
        name = name.rstrip("/")
    link = _text(block, 157, 257) if block[157] else ""
    return name, link, kind, mode, uid, gid, size, mtime


# (start, width) of the numeric fields tarfile reads: mode, uid, gid, size, mtime, checksum,
# device major and minor (read only so that a header tarfile refuses is refused here too).
_NUMBERS = ((100, 8), (108, 8), (116, 8), (124, 12), (136, 12), (148, 8), (329, 8), (337, 8))


# The numbers as tar writers write them (GNU tar, Go, Python: zero-padded octal, a NUL or a
# space after; device numbers zero or empty): one match reads them all.
_WRITTEN = re.compile(
    rb"([0-7]{7})[\0 ]([0-7]{7})[\0 ]([0-7]{7})[\0 ]([0-7]{11})[\0 ]([0-7]{11})[\0 ]([0-7]{6,7})[\0 ]{1,2}"
)
_OCTAL = (8,) * 6
_NO_DEVICE = re.compile(rb"(?:[0-7]{7}[\0 ]|\0{8}){2}")


def _numbers(block: bytes) -> tuple[int, int, int, int, int, int] | None:
    """Mode, uid, gid, size, mtime and checksum as tarfile reads them; None when tarfile
    would read a field differently or refuse it (base-256, a stray character)."""
    written = _WRITTEN.fullmatch(block, 100, 156)
    if written is not None and _NO_DEVICE.fullmatch(block, 329, 345):
        mode, uid, gid, size, mtime, checksum = map(int, written.groups(), _OCTAL)
        return mode, uid, gid, size, mtime, checksum
    try:
        numbers = [_octal(block[start : start + width]) for start, width in _NUMBERS]
    except ValueError:
        return None
    return numbers[0], numbers[1], numbers[2], numbers[3], numbers[4], numbers[5]


def _adds_up(block: bytes, checksum: int) -> bool:
    """Whether the unsigned sum of the header's bytes, its checksum field read as spaces,
    is `checksum`: tarfile's rule, at C speed. The sum of 512 bytes is below 65521 * 255, so
    it is known exactly from its remainders by 65521 (adler32's low half, less one) and by
    255 (the bytes as one number, since 256 leaves 1), both computed in C."""
    total = checksum - 256 + sum(block[148:156])  # the sum the bytes must have
    if not 0 <= total <= 255 * BLOCK:
        return False
    by_65521 = ((zlib.adler32(block) & 0xFFFF) - 1) % 65521
    return total % 65521 == by_65521 and total % 255 == int.from_bytes(block, "little") % 255


def _octal(field: bytes) -> int:
    """tarfile's reading of an octal field: up to the first NUL, ASCII, spaces around."""
    if field and field[0] in _NO_NUMBER:
        raise ValueError("base-256")
    end = field.find(b"\0")
    digits = (field if end == -1 else field[:end]).decode("ascii")
    return int(digits.strip() or "0", 8)


def _text(block: bytes, start: int, stop: int) -> str:
    """tarfile's reading of a name field: up to the first NUL."""
    end = block.find(b"\0", start, stop)
    return block[start : stop if end == -1 else end].decode("utf-8", "surrogateescape")
