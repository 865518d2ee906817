"""Layers kept as overlayfs lower directories, one folder per layer, so that images sharing
a base share its unpacked layers.

The format is the kernel's: an OCI whiteout (`.wh.NAME`) becomes a character device 0/0 named
NAME, an opaque directory (`.wh..wh..opq`) carries the `user.overlay.opaque` xattr (the
`userxattr` form, since containers mount their overlay inside a user namespace). This module
answers what the merged view shows at a path without mounting it, and builds a flattened
copy for where overlay cannot be mounted."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from pysbx.images.errors import ImageError
from pysbx.images.regular import NotRegularFile, read_regular_file

OPAQUE_XATTR = "user.overlay.opaque"


def is_whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:  # nothing can have that name
            return None
        raise


def visible(layers: Sequence[Path], path: str) -> tuple[Path, os.stat_result] | None:
    """Where the merged view of `layers` (top first) finds `path` (relative, its components
    taken literally: no symlink is followed, not even at a parent, so an image's `etc` that
    links to the host's /etc leads nowhere), or None when no layer shows it."""
    parts = [part for part in path.split("/") if part]
    for layer in layers:
        reachable, opaque = True, False
        for depth in range(1, len(parts)):
            parent = layer.joinpath(*parts[:depth])
            info = _lstat(parent)
            if info is None:
                reachable = False
                break
            if not stat.S_ISDIR(info.st_mode):
                return None  # a whiteout, file or symlink here hides everything below it
            opaque = opaque or is_opaque(parent)
        if reachable:
            found = _lstat(layer.joinpath(*parts))
            if found is not None:
                return None if is_whiteout(found) else (layer.joinpath(*parts), found)
        if opaque:
            return None
    return None


def read_visible_file(layers: Sequence[Path], path: str, limit: int) -> bytes | None:
    """The bytes of the regular file the merged view shows at `path`, or None (absent, or
    not a regular file: a symlink is not followed, a FIFO or device never opened). More than
    `limit` bytes is an ImageError: a host-side process reads an image's file bounded."""
    found = visible(layers, path)
    if found is None or not stat.S_ISREG(found[1].st_mode):
        return None
    try:
        return read_regular_file(str(found[0]), limit)
    except NotRegularFile:
        return None
    except ValueError:
        raise ImageError(f"/{path} in the image is larger than {limit} bytes") from None


def flatten(layers: Sequence[Path], target: Path) -> None:
    """Merge `layers` (top first) into the empty folder `target` as plain files, applying
    whiteouts and opaque directories: the container root where overlay cannot be mounted.
    Parents are settled before their children, so nothing is written through a symlink."""
    directories: dict[Path, os.stat_result] = {}  # the upper-most layer's metadata wins
    for layer in reversed(layers):
        for source, relative in _walk(layer):
            info = os.lstat(source)
            destination = target / relative
            if is_whiteout(info):
                _remove(destination)
            elif stat.S_ISDIR(info.st_mode):
                if is_opaque(source) or not _is_real_directory(destination):
                    _remove(destination)
                    destination.mkdir(mode=0o700)
                directories[destination] = info
            else:
                _remove(destination)
                _copy_entry(source, destination, info)
    for directory in sorted(directories, key=lambda path: len(path.parts), reverse=True):
        if _is_real_directory(directory):  # not removed or replaced by a layer above
            _copy_metadata(directory, directories[directory])


def _walk(layer: Path) -> list[tuple[Path, str]]:
    """Every entry of `layer` (parents before children) with its path relative to it."""
    found: list[tuple[Path, str]] = []
    pending = [(layer, "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda item: item.name):
                relative = f"{prefix}{entry.name}"
                found.append((Path(entry.path), relative))
                if entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), relative + "/"))
    found.sort(key=lambda item: item[1].count("/"))
    return found


def _is_real_directory(path: Path) -> bool:
    info = _lstat(path)
    return info is not None and stat.S_ISDIR(info.st_mode)


def _remove(path: Path) -> None:
    info = _lstat(path)
    if info is None:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _copy_entry(source: Path, destination: Path, info: os.stat_result) -> None:
    if stat.S_ISLNK(info.st_mode):
        os.symlink(os.readlink(source), destination)
    elif stat.S_ISFIFO(info.st_mode):
        os.mkfifo(destination, 0o600)
    elif stat.S_ISREG(info.st_mode):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(source, "rb") as reader, open(os.open(destination, flags, 0o600), "wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
    else:
        return  # device nodes never reach a layer folder (the unpacker skips them)
    _copy_metadata(destination, info)


def _copy_metadata(path: Path, info: os.stat_result) -> None:
    """Owner (where this user namespace maps it), then mode, then times."""
    with contextlib.suppress(OSError):
        os.lchown(path, info.st_uid, info.st_gid)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(path, stat.S_IMODE(info.st_mode))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)
