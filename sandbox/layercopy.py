"""A bounded writable layer (limits.writable_size: the upper folder on a tmpfs of that size,
new for each run) kept across a detached container's runs, as `restart` and `start`
promise: when a run ends, the setup process copies the tmpfs's `upper` to the container's
state folder, where an unbounded layer lives anyway (`writable/upper`, under the tmpfs's
mount point), and the next run's setup copies it back into its new tmpfs.

Both copies run as root of the container's user namespace over what the container wrote,
and the saving one runs after pivot_root has made the container's root its own: every
step is relative to descriptors and never follows a symlink; holes stay holes (a sparse
file of a terabyte takes its few blocks of the host's disk, not a terabyte) and hard links
stay links, so a layer saved takes no more than it took in its tmpfs (plus a block per
folder, which the tmpfs's inode count bounds: mounts.bounded_layer_options). Owners,
modes, times and extended attributes (overlayfs's `user.overlay.*`, file capabilities)
are kept; sockets are not (tar's rule). Imported before the setup process forks: after
pivot_root nothing can be."""

from __future__ import annotations

import errno
import os
import stat

from pysbx.sandbox.state import remove_tree

UPPER = "upper"
_NEW, _OLD = "upper.new", "upper.old"  # a save in progress; the previous copy while swapped
MAX_DEPTH = 256  # folders deeper than this are refused (each level holds two descriptors)
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class LayerCopyError(OSError):
    """The layer could not be copied: one sentence for the container's log."""


def restore(disk: int, tmpfs: int) -> bool:
    """Copy the saved layer (`upper`, or the previous copy a save left while swapping) from
    the folder open as `disk` into the new tmpfs open as `tmpfs`; False when none is saved."""
    for name in (UPPER, _OLD):
        if _exists(disk, name):
            copy_tree(disk, name, tmpfs, UPPER)
            return True
    return False


def _exists(folder: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def save(tmpfs: int, disk: int) -> None:
    """Copy the tmpfs's `upper` over the saved one: into a new folder first, then swapped in
    by two renames, so an interrupted save leaves the previous copy whole. When the copy
    fails, nothing stays saved: the next run starts from the image, not from a layer older
    than the one it follows (the caller says so in the log)."""
    remove_tree(disk, _NEW)
    try:
        copy_tree(tmpfs, UPPER, disk, _NEW)
    except OSError:
        for name in (_NEW, UPPER, _OLD):
            remove_tree(disk, name)
        raise
    remove_tree(disk, _OLD)
    if _exists(disk, UPPER):  # not at the first save
        os.rename(UPPER, _OLD, src_dir_fd=disk, dst_dir_fd=disk)
    os.rename(_NEW, UPPER, src_dir_fd=disk, dst_dir_fd=disk)
    remove_tree(disk, _OLD)


def copy_tree(source_parent: int, source: str, target_parent: int, target: str) -> None:
    """Copy the folder `source` (under the folder open as `source_parent`) to the new folder
    `target` under `target_parent`."""
    info = os.stat(source, dir_fd=source_parent, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        raise LayerCopyError(errno.ENOTDIR, f"{source} is not a folder")
    os.mkdir(target, 0o700, dir_fd=target_parent)
    root = os.open(target, _DIRECTORY, dir_fd=target_parent)
    try:
        _Copy(root).folder(source_parent, source, info, root, "")
    finally:
        os.close(root)


class _Copy:
    """One copy: its target's root, and the files it has copied that have more than one name
    (by inode, to their path in the target: their further names become hard links)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.linked: dict[tuple[int, int], str] = {}

    def folder(self, parent: int, name: str, info: os.stat_result, copy: int, path: str) -> None:
        """Copy the folder `name` under `parent` into the folder open as `copy` (at `path`)."""
        if path.count("/") >= MAX_DEPTH:
            raise LayerCopyError(errno.ELOOP, f"folders nest deeper than {MAX_DEPTH} levels")
        source = os.open(name, _DIRECTORY, dir_fd=parent)
        try:
            with os.scandir(source) as entries:
                children = [entry.name for entry in entries]
            for child in children:
                self.entry(source, child, copy, f"{path}/{child}" if path else child)
            _attributes(source, copy, info)
        finally:
            os.close(source)

    def entry(self, source: int, name: str, copy: int, path: str) -> None:
        info = os.stat(name, dir_fd=source, follow_symlinks=False)
        kind = stat.S_IFMT(info.st_mode)
        if kind == stat.S_IFDIR:
            os.mkdir(name, 0o700, dir_fd=copy)
            inner = os.open(name, _DIRECTORY, dir_fd=copy)
            try:
                self.folder(source, name, info, inner, path)
            finally:
                os.close(inner)
        elif kind == stat.S_IFREG and self.link_again(info, copy, name):
            return
        elif kind == stat.S_IFREG:
            _copy_file(source, name, info, copy)
            if info.st_nlink > 1:
                self.linked[(info.st_dev, info.st_ino)] = path
        elif kind == stat.S_IFLNK:
            os.symlink(os.readlink(name, dir_fd=source), name, dir_fd=copy)
            _path_attributes(copy, name, info)
        elif kind == stat.S_IFIFO:
            os.mkfifo(name, 0o600, dir_fd=copy)
            _path_attributes(copy, name, info)
        elif kind == stat.S_IFCHR and info.st_rdev == 0:  # an overlayfs whiteout: a deleted file
            os.mknod(name, stat.S_IFCHR | 0o600, 0, dir_fd=copy)
            _path_attributes(copy, name, info)
        # sockets, and devices a user namespace cannot have made: not kept

    def link_again(self, info: os.stat_result, copy: int, name: str) -> bool:
        """A further name of a file copied already becomes a hard link to its copy."""
        first = self.linked.get((info.st_dev, info.st_ino)) if info.st_nlink > 1 else None
        if first is None:
            return False
        # A path in the copy, which only this process writes: its folders are the ones made here.
        os.link(first, name, src_dir_fd=self.root, dst_dir_fd=copy, follow_symlinks=False)
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
    """Extended attributes, owner, mode (after the owner: chown clears set-id bits), times."""
    for key in os.listxattr(source):
        try:
            os.setxattr(target, key, os.getxattr(source, key))
        except OSError as error:
            if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENODATA):
                raise
    os.fchown(target, info.st_uid, info.st_gid)
    os.fchmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))


def _path_attributes(folder: int, name: str, info: os.stat_result) -> None:
    """Owner, mode and times of what cannot be opened (a symlink's mode is its own)."""
    os.chown(name, info.st_uid, info.st_gid, dir_fd=folder, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(name, stat.S_IMODE(info.st_mode), dir_fd=folder)
    os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=folder, follow_symlinks=False)
