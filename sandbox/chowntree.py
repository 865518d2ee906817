"""`-v SRC:DST:U`: give a host tree to the container's user (podman's `:U`), so that a folder
owned by host root (or, for an ordinary user, by the user: the container's root), is the
container user's own. Root gives host ids; an ordinary user walks as root of a user
namespace mapped as the container's (sandbox.plan.give_trees).

Root does this on the host, in folders other users may write into, so the walk takes nothing
on trust: every folder is opened relative to the one above it with O_NOFOLLOW (a link swapped
in for a folder mid-walk is refused, never followed), every entry is changed by name relative
to its folder without following links (a link is given, never what it points at), and the
walk stays on the file system it started on (a mount inside the tree is not crossed)."""

from __future__ import annotations

import os
import re
import stat

from pysbx.sandbox.errors import SandboxError

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class ChownError(SandboxError):
    """The tree could not be given whole; what was given stays given."""


def open_folder(path: str) -> int:
    """A descriptor on the folder at the absolute, link-free `path` (a realpath), opened one
    component at a time without following links: a component replaced by a link since the
    path was resolved is an error, not a detour."""
    if not os.path.isabs(path):
        raise ChownError(f"{path}: expected an absolute path")
    fd = os.open("/", _DIRECTORY)
    try:
        for part in [part for part in path.split("/") if part]:
            inner = os.open(part, _DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
    except OSError as error:
        os.close(fd)
        raise ChownError(f"{path}: cannot open it without following links ({error.strerror})") from None
    return fd


def give_tree(path: str, uid: int, gid: int) -> int:
    """Make `uid:gid` own the tree at `path` (a realpath), its top included; return how many
    entries changed owner. Raises ChownError naming the entry that could not be changed."""
    top = open_folder(path)
    device, mount = os.fstat(top).st_dev, mount_id(top)
    changed = 0
    pending = [(top, path)]
    skipped = mount_points_below(path)
    try:
        while pending:
            fd, where = pending.pop()
            try:
                info = os.fstat(fd)
                if info.st_dev != device or mount_id(fd) != mount:  # a mount reached by a path renamed since
                    continue
                if _owner(info) != (uid, gid):
                    os.fchown(fd, uid, gid)
                    changed += 1
                changed += _give_entries(fd, where, uid, gid, (device, skipped), pending)
            finally:
                os.close(fd)
    except OSError as error:
        raise ChownError(f"{error.filename or path}: cannot give it to {uid}:{gid} ({error.strerror})") from None
    finally:
        for fd, _ in pending:
            os.close(fd)
    return changed


def mount_id(fd: int) -> int:
    """The id of the mount an open folder is on (/proc/self/fdinfo's mnt_id, kernel 3.15+):
    a bind mount of the same file system has its own, whatever path reaches it."""
    try:
        with open(f"/proc/self/fdinfo/{fd}") as info:
            for line in info:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    raise ChownError("cannot tell mounts apart (no mnt_id in /proc/self/fdinfo)")


def mount_points_below(path: str) -> set[str]:
    """The mount points strictly inside `path`, from /proc/self/mountinfo (octal escapes undone)."""
    try:
        with open("/proc/self/mountinfo", "rb") as table:
            lines = table.read().decode("utf-8", "surrogateescape").splitlines()
    except OSError as error:
        raise ChownError(f"cannot read /proc/self/mountinfo to avoid crossing mounts ({error.strerror})") from None
    points = set()
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            point = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), fields[4])
            if point.startswith(path.rstrip("/") + "/"):
                points.add(point)
    return points


def _give_entries(
    fd: int, where: str, uid: int, gid: int, boundary: tuple[int, set[str]], pending: list[tuple[int, str]]
) -> int:
    """Give each entry of the folder open at `fd`; queue its sub-folders (opened, not by path)."""
    device, mount_points = boundary
    changed = 0
    for name in os.listdir(fd):
        entry = os.lstat(name, dir_fd=fd)
        if entry.st_dev != device or f"{where}/{name}" in mount_points:
            continue  # another file system, or a folder mounted inside the tree: not ours to change
        if stat.S_ISDIR(entry.st_mode):
            try:
                inner = os.open(name, _DIRECTORY, dir_fd=fd)
            except OSError as error:
                raise OSError(error.errno, error.strerror, f"{where}/{name}") from None
            pending.append((inner, f"{where}/{name}"))
        elif stat.S_ISREG(entry.st_mode):
            try:
                changed += _give_file(fd, name, uid, gid)
            except OSError as error:
                raise OSError(error.errno, error.strerror, f"{where}/{name}") from None
        elif entry.st_nlink > 1 and not stat.S_ISLNK(entry.st_mode):
            continue  # one inode, other names: not only this tree's to give
        elif _owner(entry) != (uid, gid):
            os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
            changed += 1
    return changed


def _give_file(fd: int, name: str, uid: int, gid: int) -> int:
    """A regular file, judged and changed through one descriptor (fstat, then fchown): a file
    swapped in after the folder was listed (a hard link to another file) is what is judged."""
    try:
        file = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
    except OSError as error:
        if error.errno == 40:  # ELOOP: it became a link since the listing; not followed, not given
            return 0
        raise
    try:
        info = os.fstat(file)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1 or _owner(info) == (uid, gid):
            return 0  # one inode, other names: not only this tree's to give
        os.fchown(file, uid, gid)
        return 1
    finally:
        os.close(file)


def _owner(entry: os.stat_result) -> tuple[int, int]:
    return entry.st_uid, entry.st_gid
