"""Property: images.tarstream reads every tar stream as tarfile reads it. The layer walker
once read layers with tarfile's stream mode; tarstream reads plain headers itself and hands
the rest to tarfile's header reader, so a difference between the two would be a way for an
image to show one tool's reader one tree and ours another.

Streams are written by tarfile in each format (ustar, GNU, PAX, with a global PAX header or
not) from drawn members: long names (a ustar prefix, a GNU long name, a PAX path), names
with a trailing slash, every member type, ids and times beyond octal fields (base-256, PAX
records), xattrs. Then they are damaged: cut anywhere, a byte of a header changed, zero
blocks or garbage appended. For each, the members read (every header field and the data)
and whether the read ends in an error must be the same.

Every test here runs twice: with the C reader of plain headers (images/_tarhead.c) where it
was built, and with the Python reader alone, as where it was not."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pysbx.images.tarstream as tarstream
from pysbx.images.errors import ImageError
from pysbx.images.layers import Entry, LayerMember, check_header
from pysbx.images.tarstream import BoundedTarInfo, TarStream, plain_fields_in_python
from tests.properties.strategies import examples

_SETTINGS = settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE,
          tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.CONTTYPE, b"V", b"Z")  # fmt: skip
_FORMATS = (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT)
Read = tuple[list[tuple[Any, ...]], bool]  # the members read, and whether reading failed
BUILT = tarstream.plain_fields  # the C reader, or None where the extension was not built


@pytest.fixture(scope="module", autouse=True, params=["c", "python"])
def reader(request: pytest.FixtureRequest) -> Any:
    """Which reader of plain headers the module's tests run with (module-scoped: hypothesis
    refuses function-scoped fixtures around @given)."""
    if request.param == "c" and BUILT is None:
        pytest.skip("images/_tarhead.c was not built (no compiler or Python headers at install)")
    tarstream.plain_fields = BUILT if request.param == "c" else None
    yield request.param
    tarstream.plain_fields = BUILT


@st.composite
def members(draw: Any) -> tuple[tarfile.TarInfo, bytes]:
    part = st.text(st.sampled_from("ab/._-é\udcff"), min_size=1, max_size=12)
    name = "/".join(draw(st.lists(part, min_size=1, max_size=draw(st.sampled_from((3, 14))))))
    info = tarfile.TarInfo(name + draw(st.sampled_from(("", "/", "//"))))
    info.type = draw(st.one_of(st.just(tarfile.REGTYPE), st.sampled_from(_TYPES)))  # half of them with data
    info.mode = draw(st.sampled_from((0o644, 0o755, 0o4755, 0o7777, 0)))
    info.uid = draw(st.sampled_from((0, 1000, 65534, 2**21, 2**32 - 2)))
    info.gid = draw(st.sampled_from((0, 1000, 2**21)))
    info.mtime = draw(st.sampled_from((0, 1_700_000_000, 2**33, 1_700_000_000.5)))
    info.linkname = draw(st.sampled_from(("", "a", "../x", "/etc/passwd", "l" * 120)))
    info.devmajor, info.devminor = draw(st.sampled_from(((0, 0), (1, 3), (2**21, 1))))
    if draw(st.booleans()):
        info.pax_headers = {"SCHILY.xattr.user.k": draw(st.sampled_from(("v", "é", "")))}
    size = draw(st.sampled_from((0, 1, 511, 512, 513, 1200)))
    data = (
        draw(st.binary(min_size=size, max_size=size)) if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE, b"V") else b""
    )
    info.size = len(data)
    return info, data


@st.composite
def streams(draw: Any) -> bytes:
    fmt = draw(st.sampled_from(_FORMATS))
    buffer = io.BytesIO()
    global_pax = {"comment": "x"} if fmt == tarfile.PAX_FORMAT and draw(st.booleans()) else {}
    with tarfile.open(fileobj=buffer, mode="w", format=fmt, pax_headers=global_pax) as archive:
        for info, data in draw(st.lists(members(), max_size=6)):
            with contextlib.suppress(ValueError, tarfile.TarError):  # a field the format cannot hold
                archive.addfile(info, io.BytesIO(data))
    stream = buffer.getvalue()
    damage = draw(st.sampled_from(("none", "cut", "byte", "zeros", "garbage")))
    if damage == "cut" and stream:  # mostly among the members, not in tarfile's zero padding
        return stream[: draw(st.integers(0, min(len(stream), len(stream.rstrip(b"\0")) + 1100)))]
    if damage == "byte" and stream:
        at = draw(st.integers(0, min(len(stream), 4096) - 1))
        return stream[:at] + bytes([draw(st.integers(0, 255))]) + stream[at + 1 :]
    if damage == "zeros":
        return stream + b"\0" * draw(st.sampled_from((512, 1024, 700)))
    if damage == "garbage":
        return stream + draw(st.binary(min_size=1, max_size=1100))
    return stream


def tarfile_reads(stream: bytes, read_data: bool = True) -> Read:
    """The layer walker's reading before tarstream: tarfile's stream mode, data read for
    regular files (or not), a stream ending after the last member's data counted as the end."""
    read: list[tuple[Any, ...]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r|", bufsize=1 << 16, tarinfo=BoundedTarInfo,
                          encoding="utf-8", errors="surrogateescape") as archive:  # fmt: skip
            last: tarfile.TarInfo | None = None
            while True:
                try:
                    info = archive.next()
                except tarfile.ReadError:
                    position = getattr(archive.fileobj, "pos", -1)
                    assert archive.fileobj is not None
                    if last is not None and position >= last.offset_data + last.size and not archive.fileobj.read(1):
                        break
                    raise
                if info is None:
                    break
                archive.members.clear()  # type: ignore[attr-defined]
                last = info
                source = archive.extractfile(info) if read_data and info.isreg() else None
                read.append(_fields(info, source.read() if source is not None else None))
    except (tarfile.TarError, ValueError):
        return read, True
    return read, False


class Trickle:
    """A source that gives at most `step` bytes a read (a Readable may give fewer than asked):
    every header, peek and piece of data then straddles the reader's buffer somewhere."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._step, self._at = data, step, 0

    def read(self, n: int = -1, /) -> bytes:
        chunk = self._data[self._at : self._at + min(n, self._step)]
        self._at += len(chunk)
        return chunk


def tarstream_reads(stream: bytes, read_data: bool = True, step: int = 1 << 30) -> Read:
    """The lean reader's reading; with a small `step`, each file's start is peeked at first
    (as the image audit does) and must be what its data then starts with."""
    read: list[tuple[Any, ...]] = []
    tar = TarStream(Trickle(stream, step), "layer")
    try:
        for header in tar.headers():
            data = None
            if read_data and header.type in tarfile.REGULAR_TYPES:
                member = LayerMember(Entry(header.name, "file", 0, 0, 0, header.size, "", 0.0), tar, header, "layer")
                peeked = member.peek_data(step + 300)
                again = member.peek_data(3 * step + 300)  # through the chunks the first kept aside
                data = member.read_data(1 << 20)
                assert header.sparse is not None or (data.startswith(again) and again.startswith(peeked))
            read.append(_fields(header, data))
    except (tarfile.TarError, ValueError, ImageError):
        return read, True
    return read, False


def _fields(info: Any, data: bytes | None) -> tuple[Any, ...]:
    return (info.name, info.linkname, info.type, info.mode, info.uid, info.gid, info.size, info.mtime,
            dict(info.pax_headers), info.sparse, info.offset_data, data)  # fmt: skip


@_SETTINGS
@given(streams(), st.booleans(), st.sampled_from((1 << 30, 700, 333)))
def test_tarstream_reads_every_stream_as_tarfile_reads_it(stream: bytes, read_data: bool, step: int) -> None:
    """Data read or left for the reader to skip: a stream cut in data nobody read is judged
    when the reader moves on. The source gives everything at once or in small pieces."""
    assert tarstream_reads(stream, read_data, step) == tarfile_reads(stream, read_data)


def _tar(*members: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.USTAR_FORMAT, **options: Any) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt, **options) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **fields: Any
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def _signed_checksum(stream: bytes) -> bytes:
    """The first header with a byte above 127 in its name, its checksum summed as signed
    chars (as Sun and NeXT tars wrote it)."""
    header = bytearray(stream[:512])
    header[0] = 0xE9
    header[148:156] = b" " * 8
    signed = sum(b - 256 if b > 127 else b for b in header)
    header[148:156] = b"%06o\0 " % signed
    return bytes(header) + stream[512:]


def _header_field(stream: bytes, start: int, value: bytes) -> bytes:
    """The first header with a field changed and its checksum made right again."""
    header = bytearray(stream[:512])
    header[start : start + len(value)] = value
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + stream[512:]


def _with_prefix(magic: bytes, prefix: bytes, star: bool = False) -> bytes:
    """A one-member archive whose header has `magic` (8 bytes at 257), `prefix` at 345 and,
    for a star header, `tar\\0` at 508; the checksum made right."""
    header = bytearray(tarfile.TarInfo("usr/bin/tool").tobuf(tarfile.USTAR_FORMAT))
    header[257:265] = magic
    header[345 : 345 + len(prefix)] = prefix
    if star:
        header[508:512] = b"tar\0"
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + b"\0" * 1024


_PREFIXED = {  # what Go's archive/tar (Docker, containerd) names each
    "posix": (_with_prefix(b"ustar\x0000", b"opt"), "opt/usr/bin/tool"),
    "gnu": (_with_prefix(b"ustar  \0", b"zz"), "usr/bin/tool"),
    "v7": (_with_prefix(b"\0" * 8, b"zz"), "usr/bin/tool"),
    "star": (_with_prefix(b"ustar\x0000", b"s" * 140, star=True), "s" * 131 + "/usr/bin/tool"),
}


@pytest.mark.parametrize("kind", _PREFIXED)
def test_a_name_prefix_is_read_where_docker_reads_one(kind: str) -> None:
    """Only a POSIX header has a name prefix (131 bytes of it in a star header): in a GNU
    header those bytes are times, and a V7 header has none. tarfile joins them whatever
    the magic, so an image could show the audit `zz/usr/bin/tool` while Docker extracts
    `usr/bin/tool`. Both readers, and the walk, name the member as Docker does."""
    stream, expected = _PREFIXED[kind]
    members, failed = tarstream_reads(stream)
    assert not failed and [member[0] for member in members] == [expected]
    assert tarfile_reads(stream) == (members, failed)
    assert _walk(stream) == [(expected, 0)]


_TWO = _tar(_member("a", b"x" * 1000), _member("b", b"y" * 10))  # headers at 0 and 1536, data to 2560
_PAX = _tar(_member("a"), _member("é", b"q"), fmt=tarfile.PAX_FORMAT)  # é's PAX record at 512, its header at 1536
QUIRKS: dict[str, tuple[bytes, bool]] = {
    "a V7 directory (a regular type, a trailing slash) with data": (
        _tar(_member("d/", b"z" * 513, tarfile.AREGTYPE), _member("e", b"w")), True),
    "cut in data nobody read": (_TWO[:700], False),
    "cut in data read": (_TWO[:700], True),
    "ends right after the last member's data": (_TWO[: 512 + 1024 + 512 + 10], True),
    "ends in the last member's padding": (_TWO[: 512 + 1024 + 512 + 100], False),
    "a PAX record with no header after it": (_PAX[:1536], False),
    "a PAX record with a damaged header after it": (_PAX[:1536] + b"junk" * 256, False),
    "a ustar prefix": (_tar(_member("p" * 90 + "/" + "n" * 90 + "/")), True),
    "a signed checksum": (_signed_checksum(_TWO), True),
    "a base-256 owner": (_tar(_member("a", b"x", uid=2**40), fmt=tarfile.GNU_FORMAT), True),
    "device numbers tarfile cannot read, first": (_header_field(_TWO, 329, b"zz"), True),
    "device numbers tarfile cannot read, later": (_TWO[:1536] + _header_field(_TWO[1536:], 329, b"zz"), True),
    "spaces around the numbers": (_header_field(_TWO, 100, b" 644 \0\0\0"), True),
    "a type tarfile reads as a file": (_tar(_member("v", b"data", b"V"), _member("w")), False),
    "a global PAX header": (
        _tar(_member("a", b"1"), _member("b"), fmt=tarfile.PAX_FORMAT, pax_headers={"uid": "7"}), True),
    "a zero block between members": (_TWO[:1536] + b"\0" * 512 + _TWO[1536:], True),
    "garbage after the members": (_TWO[:2560] + b"junk" * 200, True),
    "nothing at all": (b"", True),
}  # fmt: skip


@pytest.mark.parametrize(("stream", "read_data"), QUIRKS.values(), ids=QUIRKS.keys())
def test_tarstream_reads_the_quirks_of_tar_as_tarfile_reads_them(stream: bytes, read_data: bool) -> None:
    """What the property meets only now and then, every time: each case changes what a
    reader sees (a member more or less, an error or the end)."""
    assert tarstream_reads(stream, read_data) == tarfile_reads(stream, read_data)


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_a_sparse_file_from_gnu_tar_reads_as_tarfile_reads_it(tmp_path: Path, fmt: str) -> None:
    """Sparse members (GNU's old format and PAX 1.0) are tarfile's to read: their data, holes
    included, comes out the same."""
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is not installed")
    with open(tmp_path / "s", "wb") as sparse:
        for offset, word in ((100_000, b"hello"), (300_000, b"world")):
            sparse.seek(offset)
            sparse.write(word)
        sparse.truncate(400_000)
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", "s.tar", "s"], cwd=tmp_path, check=True)
    stream = (tmp_path / "s.tar").read_bytes()
    members, failed = tarstream_reads(stream)
    assert (members, failed) == tarfile_reads(stream) and not failed
    assert members[0][9] and members[0][11][100_000:100_005] == b"hello" and len(members[0][11]) == 400_000


@_SETTINGS
@given(st.binary(min_size=512, max_size=512), st.sampled_from((0, 1, -1, 255, -255, 65521, -65521, 65521 * 2)))
def test_the_checksum_is_judged_as_tarfile_judges_it(block: bytes, off_by: int) -> None:
    """A header whose checksum is off by a multiple of one remainder's modulus is still
    refused: tarfile sums the bytes, and so must the lean reader in effect."""
    from pysbx.images.tarstream import _adds_up

    unsigned = sum(block) - sum(block[148:156]) + 256
    assert _adds_up(block, unsigned + off_by) == (off_by == 0)


def _record(kind: bytes, records: bytes) -> bytes:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = kind, len(records)
    return info.tobuf(tarfile.USTAR_FORMAT) + records + b"\0" * (-len(records) % 512)


def _walk(stream: bytes) -> list[tuple[str, int]]:
    from pysbx.images.decompress import ByteBudget
    from pysbx.images.layers import _members

    return [(member.entry.path, member.entry.uid) for member in _members(io.BytesIO(stream), "layer", ByteBudget())]


_MEMBER = tarfile.TarInfo("a").tobuf(tarfile.USTAR_FORMAT) + b"\0" * 1024


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.XGLTYPE])
def test_records_chained_without_end_are_refused_not_a_recursion_error(kind: bytes) -> None:
    """tarfile reads each record's next header by recursion: 300 chained records (300 KB)
    raised RecursionError out of the layer walk, a traceback where an error belongs."""
    assert _walk(_record(kind, b"10 uid=12\n") * 3 + _MEMBER) == [("a", 12)]
    with pytest.raises(ImageError, match="not a valid tar stream"):
        _walk(_record(kind, b"10 uid=12\n") * 300 + _MEMBER)


def test_a_sparse_map_chained_over_megabytes_is_refused() -> None:
    """An old GNU sparse header chains extension blocks of 21 runs each, and tarfile keeps
    every run: a gigabyte of them would be tens of millions of tuples. One header with its
    records may take a few megabytes, no more."""
    header = bytearray(tarfile.TarInfo("s").tobuf(tarfile.GNU_FORMAT))
    header[156:157] = tarfile.GNUTYPE_SPARSE
    header[482] = 1  # isextended: extension blocks follow
    header[483:495] = b"%011o\0" % 4096  # the file's real size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    extension = bytearray(512)
    extension[0:24] = b"%011o\0%011o\0" % (0, 1)
    extension[504] = 1  # and another one after it
    last = bytearray(extension)
    last[504] = 0
    for blocks in (2, 20_000):
        stream = bytes(header) + bytes(extension) * blocks + bytes(last) + b"\0" * 1536
        if blocks == 2:
            assert _walk(stream) == [("s", 0)]
        else:
            with pytest.raises(ImageError, match="not a valid tar stream"):
                _walk(stream)


def test_an_image_archive_of_chained_records_or_a_huge_record_is_an_image_error(tmp_path: Path) -> None:
    """The store indexes a docker or OCI archive with tarfile itself: 300 chained records
    raised RecursionError, and a 1.5 MB PAX record was read whole; both are refused now."""
    from pysbx.images import open_image

    for name, stream in {
        "chained": _record(tarfile.XHDTYPE, b"10 uid=12\n") * 300 + _MEMBER,
        "huge": _record(tarfile.XHDTYPE, b"%d comment=%s\n" % (1_500_017, b"x" * 1_500_000)) + _MEMBER,
    }.items():
        (tmp_path / name).write_bytes(stream)
        with pytest.raises(ImageError, match="not a readable tar archive"):
            open_image(str(tmp_path / name))


def _c_reader(reader: str) -> Any:
    """The C reader, for its own tests: run once, in the module's C round."""
    if reader != "c":
        pytest.skip("a test of the C reader itself: run in the C round")
    return BUILT


def _with_checksum(block: bytearray, spelling: bytes = b"%06o\0 ") -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = spelling % sum(block)
    return bytes(block)


@_SETTINGS
@given(members(), st.sampled_from((tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT)))
def test_the_c_reader_takes_what_tar_writers_write_and_reads_it_as_python_does(
    reader: str, member: tuple[tarfile.TarInfo, bytes], fmt: int
) -> None:
    """Every plain header tarfile writes (GNU tar writes the same spellings) is taken by the
    C reader, not left to Python: the speed is not lost without anyone seeing. Its fields
    are Python's, names with a prefix, a trailing slash or bytes outside UTF-8 included."""
    c_reader = _c_reader(reader)
    info, _ = member
    try:
        block = info.tobuf(format=fmt, encoding="utf-8", errors="surrogateescape")[:512]
    except ValueError:
        return  # a field the format cannot hold
    expected = plain_fields_in_python(block)
    if expected is None:
        return  # a GNU long-name record or a base-256 number: neither reader's case
    assert c_reader(block) == expected


_FIELD_BYTES = st.sampled_from(b"0178 /\0\xe9\xff5V")  # digits, separators, a type tarfile reads as data
_FIELD_AREAS = st.sampled_from(((0, 100), (100, 156), (156, 157), (157, 257), (329, 345), (345, 500), (500, 512)))


@_SETTINGS
@given(members(), st.lists(st.tuples(_FIELD_AREAS, st.data()), min_size=1, max_size=4), st.booleans())
def test_the_c_reader_takes_no_header_python_reads_otherwise(
    reader: str, member: tuple[tarfile.TarInfo, bytes], changes: list[tuple[tuple[int, int], Any]], fix_checksum: bool
) -> None:
    """Headers changed in their fields (a digit, a separator, a NUL, a slash, a byte outside
    ASCII), the checksum made right again or not: what the C reader takes, it reads as
    Python does; what it leaves (None), Python reads. It may leave more, never read otherwise."""
    c_reader = _c_reader(reader)
    info, _ = member
    try:
        block = bytearray(info.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="surrogateescape")[:512])
    except ValueError:
        return
    for (start, stop), data in changes:
        block[data.draw(st.integers(start, stop - 1))] = data.draw(_FIELD_BYTES)
    changed = _with_checksum(block) if fix_checksum else bytes(block)
    taken = c_reader(changed)
    assert taken is None or taken == plain_fields_in_python(changed)


def test_the_c_reader_refuses_what_is_not_one_block(reader: str) -> None:
    c_reader = _c_reader(reader)
    block = _tar(_member("a", b"x"))[:512]
    assert c_reader(block) is not None
    assert c_reader(block[:511]) is None and c_reader(block + b"\0") is None and c_reader(b"") is None


@pytest.mark.parametrize(
    ("kind", "spelling"),
    [(tarfile.REGTYPE, b"%06o\0 "), (tarfile.REGTYPE, b"%07o\0"), (tarfile.REGTYPE, b"%07o "),
     (tarfile.DIRTYPE, b"%06o\0 "), (tarfile.AREGTYPE, b"%06o\0 ")],
)  # fmt: skip
def test_every_byte_of_a_header_changed_to_every_value_is_read_as_python_reads_it(
    kind: bytes, spelling: bytes, reader: str
) -> None:
    """Exhaustive where the property samples: each of the 512 bytes of a header (with a
    ustar prefix, a link target and a size; the checksum in each spelling C takes), set to each of the 256 values, the checksum
    made right again (or, for the checksum's own bytes, left as changed). The C reader reads
    each as Python does, or leaves it to Python; and each it reads passes check_header, which
    the walk therefore asks only of the headers Python or tarfile read (tarfile's reading of
    an octal field takes a sign: "-1750" is an owner of -1000)."""
    c_reader = _c_reader(reader)
    info, _ = _member("p" * 80 + "/d/" + "n" * 60 + "/", b"", kind, linkname="target", mode=0o755, uid=1000)
    info.size = 1234 if kind == tarfile.REGTYPE else 0
    header = _with_checksum(bytearray(info.tobuf(format=tarfile.USTAR_FORMAT)[:512]), spelling)
    taken = bounded = 0
    for at in range(512):
        for value in range(256):
            block = bytearray(header)
            block[at] = value
            changed = bytes(block) if 148 <= at < 156 else _with_checksum(block, spelling)  # not in its sum
            fields = c_reader(changed)
            taken += fields is not None
            assert fields is None or fields == plain_fields_in_python(changed), (at, value)
            read = TarStream(io.BytesIO(b""), "layer")._plain_header(changed, 0)
            if read is not None and read.in_bounds:  # the walk skips check_header for these
                check_header(read, "layer")
                bounded += 1
    assert taken == bounded > 256 * 300  # most changes (names, unused bytes) leave a header C reads
