"""A digest of an unpacked tree: every path with its type, mode, owner, size, link target,
device numbers, the xattrs that change what a container sees (overlayfs opacity, recorded
ownership), and each regular file's content. Recorded beside each cached layer when it is
unpacked, so that `pysandbox system check` can tell a cache folder that changed since
(ostree fsck is the precedent): the layer digests prove what was downloaded, this proves
what is still on disk."""

from __future__ import annotations

import hashlib
import os
import stat

DIGEST_FILE = "tree.sha256"
_XATTRS = ("user.overlay.opaque", "user.containers.override_stat", "trusted.overlay.opaque")


def tree_digest(root: str) -> str:
    """sha256:HEX over the whole tree below `root`, walked by descriptor without following a
    symlink, in name order. A folder or file its owner made unreadable (mode 000, as an
    ordinary user's unpack keeps it) is opened up while it is read and closed again after:
    nothing below it may drop out of the digest."""
    digest = hashlib.sha256()
    digest.update(_describe(".", os.lstat(root), root, None))
    top = os.open(root, _FOLDER | os.O_NOFOLLOW)
    pending: list[tuple[int, str, _Reopened | None]] = [(top, ".", None)]
    try:
        while pending:
            folder_fd, relative, opened_up = pending.pop()
            try:
                children = []
                for name in sorted(os.listdir(folder_fd)):
                    info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
                    digest.update(_describe(os.path.join(relative, name), info, name, folder_fd))
                    if stat.S_ISDIR(info.st_mode):
                        children.append((*_open_as_owner(name, folder_fd, info, _FOLDER), os.path.join(relative, name)))
                pending.extend((fd, path, reopened) for fd, reopened, path in reversed(children))
            finally:
                os.close(folder_fd)
                if opened_up is not None:
                    opened_up.close()
    finally:
        for fd, _, opened_up in pending:
            os.close(fd)
            if opened_up is not None:
                opened_up.close()
    return f"sha256:{digest.hexdigest()}"


_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class _Reopened:
    """A folder or file of ours opened up for reading; close() gives it its mode back."""

    def __init__(self, handle: int, mode: int) -> None:
        self.handle, self.mode = handle, mode

    def close(self) -> None:
        try:
            os.chmod(f"/proc/self/fd/{self.handle}", self.mode)
        finally:
            os.close(self.handle)


def _open_as_owner(name: str, parent: int | None, info: os.stat_result, flags: int) -> tuple[int, _Reopened | None]:
    """Open `name` (never through a symlink); if its owner (us) made it unreadable, add the
    owner's read (and search) bit until the returned _Reopened is closed."""
    flags |= os.O_NONBLOCK
    try:
        return os.open(name, flags | os.O_NOFOLLOW, dir_fd=parent), None
    except PermissionError:
        if info.st_uid != os.geteuid():
            raise
    handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    reopened = _Reopened(handle, stat.S_IMODE(info.st_mode))
    try:
        os.chmod(f"/proc/self/fd/{handle}", reopened.mode | 0o500)
        return os.open(f"/proc/self/fd/{handle}", flags), reopened  # the handle's own inode
    except BaseException:
        reopened.close()
        raise


def _describe(path: str, info: os.stat_result, name: str, folder_fd: int | None) -> bytes:
    kind = stat.S_IFMT(info.st_mode)
    extra = ""
    if stat.S_ISLNK(info.st_mode):
        extra = os.readlink(name, dir_fd=folder_fd)
    elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        extra = f"{os.major(info.st_rdev)},{os.minor(info.st_rdev)}"
    elif stat.S_ISREG(info.st_mode):
        extra = _content_digest(name, folder_fd, info)
    fields = [path, f"{kind:o}", f"{stat.S_IMODE(info.st_mode):o}", str(info.st_uid), str(info.st_gid)]
    fields += [str(info.st_size if stat.S_ISREG(info.st_mode) else 0), extra, _xattrs(name, folder_fd, info)]
    return "\0".join(fields).encode(errors="surrogateescape") + b"\n"


def _content_digest(name: str, folder_fd: int | None, info: os.stat_result) -> str:
    fd, reopened = _open_as_owner(name, folder_fd, info, os.O_RDONLY | os.O_CLOEXEC)
    if reopened is not None:
        reopened.close()  # the descriptor stays readable
    with open(fd, "rb") as content:
        return hashlib.file_digest(content, "sha256").hexdigest()


def _xattrs(name: str, folder_fd: int | None, info: os.stat_result) -> str:
    if stat.S_ISLNK(info.st_mode):
        return ""
    path = name if folder_fd is None else f"/proc/self/fd/{folder_fd}/{name}"
    values = []
    for key in _XATTRS:
        try:
            values.append(f"{key}={os.getxattr(path, key, follow_symlinks=False).hex()}")
        except OSError:
            continue
    return ",".join(values)


def write_digest(folder: str, name: str) -> None:
    """Record the digest of the tree `folder/name` in `folder` (before it is published)."""
    with open(os.path.join(folder, DIGEST_FILE), "w") as record:
        record.write(tree_digest(os.path.join(folder, name)) + "\n")


def recorded_digest(folder: str) -> str | None:
    try:
        with open(os.path.join(folder, DIGEST_FILE)) as record:
            return record.read().strip()
    except OSError:
        return None
