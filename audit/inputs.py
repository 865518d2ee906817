"""Opening the files pyaudit reads, written once: regular files only, never blocking, never
unbounded. CI runs the gate over folders an attacker can fill, so a `Dockerfile` may be a
symlink to /proc/self/environ, a FIFO that never delivers a byte, or a link to /dev/zero."""

from __future__ import annotations

import errno
import os
import stat

TEXT_LIMIT = 16 * 1024 * 1024  # Dockerfiles, Compose, Kubernetes, runtime configs, baselines
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class AuditInputError(Exception):
    """An input that is missing, unreadable or not something pyaudit reads (exit 2)."""


class NotRegularFileError(AuditInputError):
    """A FIFO, socket, device or (where links are not followed) a symbolic link. A directory
    walk skips it; a named input is refused."""

    def __init__(self, path: str, what: str) -> None:
        super().__init__(f"{path}: not a regular file (it is {what})")
        self.what = what


class InputTooLargeError(AuditInputError):
    """A file over the bound its kind of input is read with."""

    def __init__(self, path: str, limit: int) -> None:
        super().__init__(f"{path}: larger than the {_size(limit)} allowed for a text input")


def read_regular(path: str, limit: int, *, follow: bool, truncate: bool = False) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them.

    `follow` is for inputs the user named (a symlink to a regular file is read); a directory
    walk passes False and a symlink is refused. A longer file is an InputTooLargeError unless
    `truncate` asks for its first `limit` bytes (sniffing a header).

    The decision is taken on the opened descriptor (fstat), so a file swapped for a FIFO or a
    link between a check and the open still cannot be read. O_NONBLOCK keeps the open of a
    FIFO from waiting for a writer. The stat before the open only spares devices an open:
    opening some of them has effects of its own."""
    try:
        before = os.stat(path) if follow else os.lstat(path)
        if not stat.S_ISREG(before.st_mode):
            raise NotRegularFileError(path, file_kind(before.st_mode))
        fd = os.open(path, _OPEN_FLAGS if follow else _OPEN_FLAGS | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno == errno.ELOOP and not follow:  # swapped for a link after the lstat
            raise NotRegularFileError(path, "a symbolic link") from None
        raise AuditInputError(f"{path}: cannot read: {error.strerror}") from None
    with os.fdopen(fd, "rb") as stream:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, file_kind(mode))
        os.set_blocking(fd, True)  # a regular file never blocks; a plain read loop is simplest
        try:
            data = stream.read(limit + 1)  # sizes from stat lie (procfs says 0): bound the read
        except OSError as error:
            raise AuditInputError(f"{path}: cannot read: {error.strerror}") from None
    if len(data) > limit:
        if not truncate:
            raise InputTooLargeError(path, limit)
        return data[:limit]
    return data


def file_kind(mode: int) -> str:
    """What a non-regular file is, for a message: 'a FIFO', 'a character device'."""
    kinds = [
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a file")


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"
