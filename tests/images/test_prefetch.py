"""The threads under the layer walk. The read-ahead: what it reads, the errors it meets and
the check at the end reach the reader, in order; leaving early stops it, so the blob can be
closed under no one. The hash behind the reader (uncompressed layers): every byte hashed in
order, memory bounded, the digest's verdict at the end of the walk."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from pysbx.images.errors import ImageError
from pysbx.images.prefetch import HashedBehind, Prefetched


class Chunks:
    """A source of `count` chunks (endless when None), then an error if one is given."""

    def __init__(self, count: int | None, error: Exception | None = None) -> None:
        self.count, self.error, self.given = count, error, 0

    def read(self, n: int = -1, /) -> bytes:
        if self.count is not None and self.given == self.count:
            if self.error is not None:
                raise self.error
            return b""
        self.given += 1
        return bytes([self.given % 256]) * 1000


def test_the_reader_gets_every_byte_in_order_in_the_sizes_it_asks() -> None:
    with Prefetched(Chunks(5)) as ahead:
        got = b"".join(iter(lambda: ahead.read(300), b""))
    assert got == b"".join(bytes([i]) * 1000 for i in range(1, 6))


def test_an_error_of_the_source_is_raised_at_the_read_that_reaches_it() -> None:
    with Prefetched(Chunks(2, ImageError("blob content does not match its digest"))) as ahead:
        assert ahead.read(1000) == b"\x01" * 1000 and ahead.read(1000) == b"\x02" * 1000
        with pytest.raises(ImageError, match="does not match"):
            ahead.read(1000)
        with pytest.raises(ImageError, match="does not match"):  # again: never an end of stream after it
            ahead.read(1000)


def test_the_check_at_the_end_runs_before_the_end_is_seen() -> None:
    def finish() -> None:
        raise ImageError("diff_id mismatch")

    with Prefetched(Chunks(3), finish) as ahead, pytest.raises(ImageError, match="diff_id"):
        ahead.drain()


def test_leaving_early_stops_the_worker() -> None:
    """An endless source: the walk leaves after one chunk, the worker must be gone when
    the `with` block ends, or it would read from a closed blob."""
    before = threading.active_count()
    with Prefetched(Chunks(None)) as ahead:
        ahead.read(10)
    assert threading.active_count() == before


def test_the_switch_interval_is_shorter_while_a_worker_runs_and_the_processs_after() -> None:
    import sys

    before = sys.getswitchinterval()
    with Prefetched(Chunks(2)) as outer:
        assert sys.getswitchinterval() <= 0.0005
        with Prefetched(Chunks(2)) as inner:
            inner.drain()
        assert sys.getswitchinterval() <= 0.0005  # the outer worker still runs
        outer.drain()
    assert sys.getswitchinterval() == before


class Gated:
    """A hash whose updates wait for `gate`: the worker holds each chunk until it opens."""

    def __init__(self) -> None:
        self.gate, self.inner = threading.Event(), hashlib.sha256()

    def update(self, data: bytes, /) -> None:
        self.gate.wait(timeout=10)
        self.inner.update(data)

    def hexdigest(self) -> str:
        return self.inner.hexdigest()


def test_a_hash_behind_the_reader_is_the_hash_of_every_byte_in_order() -> None:
    chunks = [bytes([i]) * (i * 997) for i in range(40)]
    with HashedBehind(hashlib.sha256()) as hashed:
        for chunk in chunks:
            hashed.update(chunk)
        assert hashed.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()
        assert hashed.hexdigest() == hashlib.sha256(b"".join(chunks)).hexdigest()  # asked twice: the same
        with pytest.raises(ValueError, match="after its digest"):
            hashed.update(b"more")


def test_the_reader_waits_when_the_hash_falls_behind_by_its_depth() -> None:
    """Memory stays bounded: with the worker stuck on the first chunk, the reader may hand
    over a few more, then waits until the worker takes one."""
    gated = Gated()
    handed: list[int] = []
    with HashedBehind(gated) as hashed:

        def reader() -> None:
            for index in range(10):
                hashed.update(b"x" * 100)
                handed.append(index)

        feeding = threading.Thread(target=reader)
        feeding.start()
        feeding.join(timeout=0.5)
        assert feeding.is_alive() and 1 <= len(handed) <= 4, handed
        gated.gate.set()
        feeding.join(timeout=10)
        assert handed == list(range(10)) and hashed.hexdigest() == hashlib.sha256(b"x" * 1000).hexdigest()


def test_leaving_a_hash_behind_early_stops_its_worker() -> None:
    before = threading.active_count()
    with HashedBehind(hashlib.sha256()) as hashed:
        hashed.update(b"abc")
    assert threading.active_count() == before


@pytest.mark.parametrize("light_reader", [True, False], ids=["hashed-behind", "read-ahead"])
def test_an_uncompressed_layer_changed_by_one_byte_fails_its_digest_at_the_end_of_the_walk(
    tmp_path: Path, light_reader: bool
) -> None:
    """For a light reader the walk of an uncompressed layer reads it itself and leaves the
    hash to the worker; otherwise the worker reads and hashes ahead. Either way the verdict
    must come, and before the walk ends."""
    from pysbx.images import open_image
    from pysbx.images.layers import walk_layer
    from tests.imagekit import T, image_of, write_image

    entries = [T("etc", "dir"), T("etc/motd", data=b"hello " * 2000)]
    archive = Path(write_image(image_of(entries, compression="none"), tmp_path, "docker"))
    image = open_image(str(archive))
    assert [m.entry.path for m in walk_layer(image, image.layers[0], light_reader=light_reader)] == ["etc", "etc/motd"]
    data = bytearray(archive.read_bytes())
    at = data.index(b"hello hello")
    data[at] = ord("j")
    archive.write_bytes(bytes(data))
    image = open_image(str(archive))
    with pytest.raises(ImageError, match="does not match its digest"):
        list(walk_layer(image, image.layers[0], light_reader=light_reader))


def test_an_archive_cut_short_after_it_was_opened_is_an_image_error_not_short_data(tmp_path: Path) -> None:
    """The archive's index saw the whole file; it shrinks before the layer is read (a file
    being rewritten): the member's reader says the archive ends inside it, whether the
    bytes are asked for by read or, as the buffered reader asks, by readinto."""
    from pysbx.images import open_image
    from pysbx.images.layers import walk_layer
    from tests.imagekit import T, image_of, write_image

    entries = [T("etc", "dir"), T("etc/motd", data=b"hello " * 20000)]
    archive = Path(write_image(image_of(entries, compression="none"), tmp_path, "docker"))
    image = open_image(str(archive))
    data = archive.read_bytes()
    archive.write_bytes(data[: data.index(b"hello hello") + 5000])
    with pytest.raises(ImageError, match="archive ends inside a member"):
        list(walk_layer(image, image.layers[0]))
    with image.store.open(image.layers[0].location) as raw, pytest.raises(ImageError, match="ends inside"):
        while raw.read(1000):
            pass


def test_a_hash_that_fails_is_raised_to_the_reader_not_waited_for() -> None:
    class Broken:
        def update(self, data: bytes, /) -> None:
            raise MemoryError("no room to hash")

        def hexdigest(self) -> str:
            return ""

    with HashedBehind(Broken()) as hashed:
        with pytest.raises(MemoryError):
            for _ in range(10):  # more than the depth: a reader waiting for room must wake
                hashed.update(b"x")
        told: list[BaseException] = []

        def again() -> None:
            try:
                hashed.update(b"again")
            except MemoryError as error:
                told.append(error)

        caller = threading.Thread(target=again, daemon=True)  # a hang fails the test, not the run
        caller.start()
        caller.join(timeout=5)
        assert told, "a second update after the failure waited for room that never comes"
        with pytest.raises(MemoryError):
            hashed.hexdigest()
