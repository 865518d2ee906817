"""Work on a stream in a second thread. Reading a blob, hashing it and inflating it run in C
with the GIL released (hashlib and zlib on large buffers), so on a machine with two cores
they overlap the parsing of what was read before: the digests stop costing time.

Prefetched reads ahead: the worker reads, hashes and inflates, the reader parses. Where
there is nothing to inflate, that leaves the worker with two thirds of the work (a copy out
of the page cache and the hash) and the reader waiting; HashedBehind gives the worker the
hash alone, and the reader reads."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

from pysbx.images.decompress import Readable
from pysbx.images.digest import Hasher

_CHUNK = 2 << 20
_DEPTH = 3  # chunks read ahead at most: memory stays bounded whatever the stream
# While a worker runs, the interpreter offers the GIL every 0.1 ms, not every 5:
# each chunk's read and hash give up the GIL and must win it back from a parser that holds
# it for as long as it is allowed to.
_SWITCH_INTERVAL = 0.0001
_running = 0
_saved_interval = 0.0
_lock = threading.Lock()


class _Stopped(Exception):
    """The reader left: the worker stops."""


class _Worker:
    """A daemon thread for the length of a `with` block, under the quicker switch interval, and
    _DEPTH tokens of room: what bounds how far it may run ahead of, or fall behind, the reader.
    A subclass says how to tell its thread to stop (_stop_worker) and what it does (_work)."""

    def __init__(self, name: str) -> None:
        self._room: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(_DEPTH):
            self._room.put(None)
        self._worker = threading.Thread(target=self._work, name=name, daemon=True)

    def __enter__(self) -> Self:
        _quicker_switches(True)
        self._worker.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop_worker()
        self._worker.join()
        _quicker_switches(False)

    def _stop_worker(self) -> None:
        raise NotImplementedError

    def _work(self) -> None:
        raise NotImplementedError


class Prefetched(_Worker):
    """A Readable over `source`, read ahead by a worker thread. At the end of `source` the
    worker calls `finish` (what must still be checked), and its error, like any error of the
    source, is raised to the reader at the read that reaches it. Leaving the `with` block
    stops the worker and waits for it, so that the source can be closed."""

    def __init__(self, source: Readable, finish: Callable[[], None] = lambda: None) -> None:
        super().__init__("prefetch")
        self._source = source
        self._finish = finish
        # Two queues of C (SimpleQueue): chunks for the reader, and room for the worker (a
        # token per chunk it may read ahead). queue.Queue's locks and conditions in Python
        # each wanted the GIL back from the parser, a switch interval at a time.
        self._queue: queue.SimpleQueue[bytes | BaseException] = queue.SimpleQueue()
        self._stop = False
        self._left = b""
        self._ended = False
        self._error: BaseException | None = None  # raised again at every read after it

    def _stop_worker(self) -> None:
        self._stop = True
        self._room.put(None)  # a worker waiting for room wakes, sees the stop and leaves

    def read(self, n: int = -1, /) -> bytes:
        if self._error is not None:
            raise self._error  # never an end of stream after an error: it could pass for one
        if not self._left and not self._ended:
            item = self._queue.get()
            self._room.put(None)
            if isinstance(item, BaseException):
                self._error = item
                raise item
            self._left = item
            self._ended = not item
        if n < 0 or n >= len(self._left):
            data, self._left = self._left, b""
        else:
            data, self._left = self._left[:n], self._left[n:]
        return data

    def drain(self) -> None:
        """Read to the end, so that `finish` has run and its verdict is known."""
        while self.read(_CHUNK):
            pass

    def _work(self) -> None:
        try:
            while chunk := self._source.read(_CHUNK):
                self._put(chunk)
            self._finish()
            self._put(b"")
        except _Stopped:
            return
        except BaseException as error:  # handed to the reader, raised there
            try:
                self._put(error)
            except _Stopped:
                return

    def _put(self, item: bytes | BaseException) -> None:
        self._room.get()  # waits while _DEPTH chunks wait for the reader
        if self._stop:
            raise _Stopped
        self._queue.put(item)


class HashedBehind(_Worker):
    """A hash updated in a worker thread, behind the reader: update() hands the bytes over
    and returns at once (unless _DEPTH chunks still wait: memory stays bounded), hexdigest()
    waits for the last. Use it in a `with` block: leaving stops the worker."""

    def __init__(self, hasher: Hasher) -> None:
        super().__init__("hash-behind")
        self._hasher = hasher
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._result: queue.SimpleQueue[str | BaseException] = queue.SimpleQueue()
        self._digest: str | None = None
        self._failed: BaseException | None = None

    def _stop_worker(self) -> None:
        if self._digest is None:
            self._chunks.put(None)  # the worker hashes what it was given, then leaves

    def update(self, data: bytes, /) -> None:
        if self._digest is not None:
            raise ValueError("HashedBehind updated after its digest was read")
        self._room.get()
        if self._failed is not None:
            self._room.put(None)  # for the next caller, who must hear it too
            raise self._failed
        self._chunks.put(bytes(data))  # immutable: the worker hashes what the reader was given

    def hexdigest(self) -> str:
        if self._digest is None:
            self._chunks.put(None)
            result = self._result.get()
            if isinstance(result, BaseException):
                raise result
            self._digest = result
        return self._digest

    def _work(self) -> None:
        try:
            while (chunk := self._chunks.get()) is not None:
                self._hasher.update(chunk)
                self._room.put(None)
            self._result.put(self._hasher.hexdigest())
        except BaseException as error:  # the reader must hear of it, not wait forever for room or a digest
            self._failed = error
            self._room.put(None)
            self._result.put(error)


def _quicker_switches(on: bool) -> None:
    """The shorter switch interval while any worker runs; the process's own after the last."""
    global _running, _saved_interval
    with _lock:
        if on and _running == 0:
            _saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(_saved_interval, _SWITCH_INTERVAL))
        _running += 1 if on else -1
        if not on and _running == 0:
            sys.setswitchinterval(_saved_interval)
