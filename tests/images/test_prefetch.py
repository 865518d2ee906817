"""The read-ahead thread under the layer walk: what it reads, the errors it meets and the
check at the end reach the reader, in order; leaving early stops it, so the blob can be
closed under no one."""

from __future__ import annotations

import threading

import pytest

from pysbx.images.errors import ImageError
from pysbx.images.prefetch import Prefetched


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
