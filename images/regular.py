"""Opening a file that something hostile may have put in the way: regular files only,
decided on the opened descriptor (so a swap between a check and the open changes nothing),
never waiting (O_NONBLOCK: a FIFO's open would wait for a writer, /proc/kmsg's read for the
kernel), never through a symlink unless the caller follows one on purpose, and never read
past a bound (procfs says size 0 and /dev/zero never ends)."""

from __future__ import annotations

import os
import stat

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class NotRegularFile(OSError):
    """A symlink (where not followed), FIFO, socket, device or folder where a file was expected."""


def open_regular(path: str, *, follow: bool = False, dir_fd: int | None = None) -> int:
    """A descriptor on the regular file at `path` (relative to `dir_fd` when given).
    Raises NotRegularFile, or the OSError of the open."""
    try:
        fd = os.open(path, _FLAGS if follow else _FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as error:
        if error.errno == 40 and not follow:  # ELOOP: the last component is a symlink
            raise NotRegularFile(error.errno, "a symbolic link, which is not followed", path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(21, "not a regular file", path)
    return fd


def read_bounded(fd: int, limit: int) -> bytes:
    """At most `limit` bytes of `fd`; ValueError when there are more."""
    chunks, size = [], 0
    while size <= limit and (chunk := os.read(fd, min(limit + 1 - size, 1 << 20))):
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise ValueError(f"more than {limit} bytes")
    return b"".join(chunks)


def read_regular_file(path: str, limit: int, *, follow: bool = False) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them (open_regular, then
    read_bounded). Raises NotRegularFile or the OSError of the open, ValueError when larger."""
    fd = open_regular(path, follow=follow)
    try:
        return read_bounded(fd, limit)
    finally:
        os.close(fd)
