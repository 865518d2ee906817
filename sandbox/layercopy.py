"""A bounded writable layer (limits.writable_size: the upper folder on a tmpfs of that size,
new for each run) kept across a detached container's runs, as `restart` and `start`
promise: when a run ends, the setup process makes the tmpfs read-only (nothing outside the
container can write to it while it is copied: a descriptor another container was handed
cannot grow the copy) and copies its `upper` to the container's state folder, where an
unbounded layer lives anyway (`writable/upper`, under the tmpfs's mount point); the next
run's setup copies it back into its new tmpfs.

Both copies run as root of the container's user namespace over what the container wrote,
and the saving one runs after pivot_root has made the container's root its own: every
step is relative to descriptors and never follows a symlink; holes stay holes (a sparse
file of a terabyte takes its few blocks of the host's disk, not a terabyte) and hard links
stay links, remembered by their folder's place in a tree rather than by a path (no PATH_MAX,
and memory in proportion to the entries, not to their depth), so a layer saved takes no
more than it took in its tmpfs, plus a block per folder, which the tmpfs's inode count
bounds (mounts.mount_bounded_layer). Owners, modes, times and extended attributes
(overlayfs's `user.overlay.*`, file capabilities) are kept; what cannot be (a socket)
becomes a whiteout, so an image file it replaced stays deleted. Imported before the setup
process forks: after pivot_root nothing can be.

A save goes to a new folder and is swapped in by renames, and what is deleted is renamed
away first: after a kill at any moment, `upper` (or, between the renames, `upper.old`) is a
whole copy. A save that fails or is interrupted leaves the previous copy, and the next run
says so in its log."""

from __future__ import annotations

import errno
import os
import stat

from pysbx.sandbox.state import remove_tree

UPPER = "upper"
_NEW, _OLD, _TRASH = "upper.new", "upper.old", "upper.trash"
SKIP_SAVE = "removing"  # in the state folder: rm -f is about to delete the layer, do not save it
MAX_DEPTH = 256  # folders deeper than this are refused (each level holds two descriptors)
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class LayerCopyError(OSError):
    """The layer could not be copied: one sentence for the container's log."""


def restore(disk: int, tmpfs: int) -> str:
    """Copy the saved layer from the folder open as `disk` into the new tmpfs open as
    `tmpfs`. Returns what the log should say ("" when all is well): a save of the last run
    that did not finish (killed, or failed: its note said why)."""
    _recover(disk)
    unfinished = _exists(disk, _NEW)
    if _exists(disk, UPPER):
        copy_tree(disk, UPPER, tmpfs, UPPER)
    if not unfinished:
        return ""
    return "the last run's writable layer was not saved whole: this run starts from the layer saved before it"


def save(tmpfs: int, disk: int) -> None:
    """Copy the tmpfs's `upper` to the folder open as `disk`, in place of the saved one.
    On failure the new copy is removed and the previous one stays."""
    _recover(disk)
    remove_tree(disk, _TRASH)
    remove_tree(disk, _NEW)
    copy_tree(tmpfs, UPPER, disk, _NEW)  # a failure leaves _NEW: the next restore says so
    if _exists(disk, UPPER):  # not at the first save
        os.rename(UPPER, _OLD, src_dir_fd=disk, dst_dir_fd=disk)
    os.rename(_NEW, UPPER, src_dir_fd=disk, dst_dir_fd=disk)
    _discard(disk, _OLD)


def _recover(disk: int) -> None:
    """After a kill between a save's two renames: the previous copy is `upper` again."""
    if not _exists(disk, UPPER) and _exists(disk, _OLD):
        os.rename(_OLD, UPPER, src_dir_fd=disk, dst_dir_fd=disk)
    _discard(disk, _OLD)


def _discard(disk: int, name: str) -> None:
    """Delete `name`, renamed away first: never a half-deleted copy under a name restore reads."""
    if _exists(disk, name):
        remove_tree(disk, _TRASH)
        os.rename(name, _TRASH, src_dir_fd=disk, dst_dir_fd=disk)
        remove_tree(disk, _TRASH)


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def copy_tree(source_parent: int, source: str, target_parent: int, target: str) -> None:
    """Copy the folder `source` (under the folder open as `source_parent`) to the new folder
    `target` under `target_parent`."""
    info = os.stat(source, dir_fd=source_parent, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        raise LayerCopyError(errno.ENOTDIR, f"{source} is not a folder")
    os.mkdir(target, 0o700, dir_fd=target_parent)
    root = os.open(target, _DIRECTORY, dir_fd=target_parent)
    try:
        _Copy(root).folder(source_parent, source, info, root, _Place(None, ""))
    finally:
        os.close(root)


class _Place:
    """A folder of the copy: its parent's place and its name (a path without the string)."""

    __slots__ = ("name", "parent")

    def __init__(self, parent: _Place | None, name: str) -> None:
        self.parent, self.name = parent, name

    def names(self) -> list[str]:
        """The names from the copy's root down to this folder."""
        found: list[str] = []
        place: _Place | None = self
        while place is not None and place.parent is not None:
            found.append(place.name)
            place = place.parent
        return found[::-1]


class _Copy:
    """One copy: its target's root, and the files it has copied that have more than one name
    (by inode, to their folder's place and name: their further names become hard links)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.linked: dict[tuple[int, int], tuple[_Place, str]] = {}

    def folder(self, parent: int, name: str, info: os.stat_result, copy: int, place: _Place, depth: int = 0) -> None:
        """Copy the folder `name` under `parent` into the folder open as `copy` (at `place`)."""
        if depth >= MAX_DEPTH:
            raise LayerCopyError(errno.ELOOP, f"folders nest deeper than {MAX_DEPTH} levels")
        source = os.open(name, _DIRECTORY, dir_fd=parent)
        try:
            with os.scandir(source) as entries:
                children = [entry.name for entry in entries]
            for child in children:
                self.entry(source, child, copy, place, depth)
            _attributes(source, copy, info)
        finally:
            os.close(source)

    def entry(self, source: int, name: str, copy: int, place: _Place, depth: int) -> None:
        info = os.stat(name, dir_fd=source, follow_symlinks=False)
        kind = stat.S_IFMT(info.st_mode)
        if kind == stat.S_IFDIR:
            os.mkdir(name, 0o700, dir_fd=copy)
            inner = os.open(name, _DIRECTORY, dir_fd=copy)
            try:
                self.folder(source, name, info, inner, _Place(place, name), depth + 1)
            finally:
                os.close(inner)
        elif kind == stat.S_IFREG and self.link_again(info, copy, name):
            return
        elif kind == stat.S_IFREG:
            _copy_file(source, name, info, copy)
            if info.st_nlink > 1:
                self.linked[(info.st_dev, info.st_ino)] = (place, name)
        elif kind == stat.S_IFLNK:
            os.symlink(os.readlink(name, dir_fd=source), name, dir_fd=copy)
            _path_attributes(copy, name, info)
        elif kind == stat.S_IFIFO:
            os.mkfifo(name, 0o600, dir_fd=copy)
            _path_attributes(copy, name, info)
        else:  # an overlayfs whiteout (0/0), or what cannot be kept (a socket): a whiteout, deleted
            os.mknod(name, stat.S_IFCHR | 0o600, 0, dir_fd=copy)
            _path_attributes(copy, name, info if info.st_rdev == 0 and kind == stat.S_IFCHR else None)

    def link_again(self, info: os.stat_result, copy: int, name: str) -> bool:
        """A further name of a file copied already becomes a hard link to its copy, reached
        from the copy's root folder by folder (made by this copy, which only it writes)."""
        first = self.linked.get((info.st_dev, info.st_ino)) if info.st_nlink > 1 else None
        if first is None:
            return False
        place, first_name = first
        folder = os.dup(self.root)
        try:
            for step in place.names():
                inner = os.open(step, _DIRECTORY, dir_fd=folder)
                os.close(folder)
                folder = inner
            os.link(first_name, name, src_dir_fd=folder, dst_dir_fd=copy, follow_symlinks=False)
        finally:
            os.close(folder)
        return True


def _copy_file(source: int, name: str, info: os.stat_result, copy: int) -> None:
    """Data only where the source has data (SEEK_DATA/SEEK_HOLE), then the size."""
    reading = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=source)
    try:
        if not stat.S_ISREG(os.fstat(reading).st_mode):  # swapped since the stat
            raise LayerCopyError(errno.EINVAL, f"{name} changed while it was copied")
        writing = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=copy)
        try:
            _copy_data(reading, writing, info.st_size)
            _attributes(reading, writing, info)
        finally:
            os.close(writing)
    finally:
        os.close(reading)


def _copy_data(reading: int, writing: int, size: int) -> None:
    offset = 0
    while offset < size:
        try:
            start = os.lseek(reading, offset, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:  # only a hole from here
                break
            raise
        end = os.lseek(reading, start, os.SEEK_HOLE)
        os.lseek(writing, start, os.SEEK_SET)
        while start < end:
            sent = os.sendfile(writing, reading, start, min(_CHUNK, end - start))
            if sent == 0:  # shrank meanwhile
                break
            start += sent
        offset = end
    os.ftruncate(writing, size)


def _attributes(source: int, target: int, info: os.stat_result) -> None:
    """Owner, extended attributes, mode, times, in that order: chown clears set-id bits and
    file capabilities (security.capability; found by review)."""
    os.fchown(target, info.st_uid, info.st_gid)
    for key in os.listxattr(source):
        try:
            os.setxattr(target, key, os.getxattr(source, key))
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENODATA):
                raise
    os.fchmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def _path_attributes(folder: int, name: str, info: os.stat_result | None) -> None:
    """Owner, mode and times of what cannot be opened (a symlink's mode is its own); None:
    a whiteout made in place of what could not be kept, as it was made."""
    if info is None:
        return
    os.chown(name, info.st_uid, info.st_gid, dir_fd=folder, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(name, stat.S_IMODE(info.st_mode), dir_fd=folder)
    os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=folder, follow_symlinks=False)
