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
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def tree_digest(root: str) -> str:
    """sha256:HEX over the whole tree below `root`, walked without following a symlink."""
    digest = hashlib.sha256()
    digest.update(_describe(".", os.lstat(root), root, None))
    for folder, folders, files, folder_fd in os.fwalk(root, follow_symlinks=False):
        folders.sort()
        relative = os.path.relpath(folder, root)
        for name in sorted(folders + files):
            info = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
            digest.update(_describe(os.path.join(relative, name), info, name, folder_fd))
    return f"sha256:{digest.hexdigest()}"


def _describe(path: str, info: os.stat_result, name: str, folder_fd: int | None) -> bytes:
    kind = stat.S_IFMT(info.st_mode)
    extra = ""
    if stat.S_ISLNK(info.st_mode):
        extra = os.readlink(name, dir_fd=folder_fd)
    elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
        extra = f"{os.major(info.st_rdev)},{os.minor(info.st_rdev)}"
    elif stat.S_ISREG(info.st_mode):
        extra = _content_digest(name, folder_fd)
    fields = [path, f"{kind:o}", f"{stat.S_IMODE(info.st_mode):o}", str(info.st_uid), str(info.st_gid)]
    fields += [str(info.st_size if stat.S_ISREG(info.st_mode) else 0), extra, _xattrs(name, folder_fd, info)]
    return "\0".join(fields).encode(errors="surrogateescape") + b"\n"


def _content_digest(name: str, folder_fd: int | None) -> str:
    try:
        fd = os.open(name, _READ, dir_fd=folder_fd)
    except PermissionError:  # an ordinary user's file of mode 000: its metadata still counts
        return "unreadable"
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
