"""Streaming decompression of layer blobs (gzip, zstd, plain) with a ceiling on the bytes
produced, so that a decompression bomb stops with an error instead of filling a disk."""

from __future__ import annotations

import zlib
from typing import IO, Protocol, cast

from pysbx.images.errors import ImageError

_CHUNK = 1 << 20
# Compressed input is read in small pieces: zlib copies whatever input is left over into
# unconsumed_tail at every call, so a large input chunk is copied again and again.
_INPUT_CHUNK = 1 << 16
DEFAULT_MAX_BYTES = 64 * 1024**3


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class ByteBudget:
    """Uncompressed bytes an operation may still produce, shared by all layers of an image."""

    def __init__(self, limit: int = DEFAULT_MAX_BYTES) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, amount: int, label: str) -> None:
        self.used += amount
        self.check_room(0, label)

    def has_room(self, amount: int) -> bool:
        return self.used + amount <= self.limit

    def check_room(self, amount: int, label: str) -> None:
        """Refuse up front what would take more than is left (a tar entry's declared size)."""
        if not self.has_room(amount):
            raise ImageError(
                f"{label}: more than {self.limit} uncompressed bytes (a decompression bomb?); "
                "raise the ceiling with --max-bytes if the image is really that large"
            )


class _GzipReader:
    """Multi-member gzip (as pigz and some builders write), bounded output per call."""

    def __init__(self, raw: Readable, label: str) -> None:
        self._raw = raw
        self._label = label
        self._inflater = zlib.decompressobj(31)
        self._input = b""
        self._done = False

    def read(self, n: int = -1) -> bytes:
        size = n if n and n > 0 else _CHUNK
        while not self._done:
            if self._inflater.eof and not self._next_member():
                self._done = True
                break
            if not self._input:
                self._input = self._raw.read(_INPUT_CHUNK)
                if not self._input:
                    raise ImageError(f"{self._label}: gzip stream ends early (truncated layer)")
            try:
                out = self._inflater.decompress(self._input, size)
            except zlib.error as error:
                raise ImageError(f"{self._label}: corrupt gzip data ({error})") from None
            self._input = self._inflater.unconsumed_tail
            if out:
                return out
        return b""

    def _next_member(self) -> bool:
        rest = self._inflater.unused_data + self._input
        if not rest:
            rest = self._raw.read(_INPUT_CHUNK)
        while rest and not rest.strip(b"\0"):
            rest = self._raw.read(_INPUT_CHUNK)  # zero padding after the last member
        if not rest:
            return False
        self._inflater = zlib.decompressobj(31)
        self._input = rest
        return True


class _ZstdReader:
    """zstandard is imported here, for a zstd layer: with the `platform` module it pulls in,
    2 ms of every image audit's start, and most layers are gzip or plain."""

    def __init__(self, raw: Readable, label: str) -> None:
        import zstandard

        self._reader = zstandard.ZstdDecompressor().stream_reader(cast(IO[bytes], raw), read_across_frames=True)
        self._label = label
        self._error: type[Exception] = zstandard.ZstdError

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self._reader.read(n if n and n > 0 else _CHUNK)
        except self._error as error:
            raise ImageError(f"{self._label}: corrupt zstd data ({error})") from None
        return data


class _Budgeted:
    def __init__(self, inner: Readable, budget: ByteBudget, label: str) -> None:
        self._inner = inner
        self._budget = budget
        self._label = label

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n if n and n > 0 else _CHUNK)
        self._budget.spend(len(data), self._label)
        return data


def decompressing_reader(raw: Readable, compression: str, budget: ByteBudget, label: str) -> Readable:
    inner: Readable
    if compression == "gzip":
        inner = _GzipReader(raw, label)
    elif compression == "zstd":
        inner = _ZstdReader(raw, label)
    elif compression == "none":
        inner = raw
    else:
        raise ImageError(f"{label}: unsupported compression {compression!r}")
    return _Budgeted(inner, budget, label)
