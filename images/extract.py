"""Unpacking layers into a root filesystem folder, safely.

Every path is resolved inside the target, one component at a time with O_NOFOLLOW, the way
openat2(RESOLVE_IN_ROOT) would: a symlink met on the way is followed as if the target were
`/` (an absolute link restarts at the target, `..` stops at it), and the final component
is created with the *at() calls relative to its parent's descriptor, never through a path
string. So whatever a layer holds (`../`, absolute names, symlinks that point out and are
then written through, hard links to outside), nothing outside the target is created or
changed. Whiteouts and opaque directories are applied as the OCI image spec says."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pysbx.images import overlay
from pysbx.images.decompress import DEFAULT_MAX_BYTES, ByteBudget
from pysbx.images.errors import ImageError
from pysbx.images.image import Image, Layer
from pysbx.images.layers import Entry, LayerMember, walk_layer

_MAX_SYMLINKS = 40
_OPEN_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OWNER_XATTR = "user.containers.override_stat"  # the convention of containers/storage
_PRIVATE = 0o600  # a new file's mode until its owner is set
_T = TypeVar("_T")


@dataclass
class UnpackReport:
    layers: int = 0
    files: int = 0
    directories: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    fifos: int = 0
    bytes_written: int = 0
    whiteouts: int = 0
    uncompressed_bytes: int = 0
    skipped_devices: list[str] = field(default_factory=list)
    ownership_not_kept: int = 0
    ownership_recorded: int = 0

    def notes(self) -> list[str]:
        notes = []
        if self.skipped_devices:
            shown = ", ".join("/" + p for p in self.skipped_devices[:5])
            more = f" and {len(self.skipped_devices) - 5} more" if len(self.skipped_devices) > 5 else ""
            notes.append(f"skipped {len(self.skipped_devices)} device nodes ({shown}{more})")
        if self.ownership_not_kept:
            notes.append(
                f"ownership of {self.ownership_not_kept} entries could not be kept as uid "
                f"{os.getuid()}; {self.ownership_recorded} recorded in the {_OWNER_XATTR} xattr"
            )
        return notes


@dataclass(frozen=True)
class UnpackOptions:
    max_bytes: int = DEFAULT_MAX_BYTES
    keep_ownership: bool = True
    # Added to every uid and gid: a runtime run by root shifts a rootfs into the unprivileged
    # range its containers map to, so that container root owns what image root owned.
    id_offset: int = 0
    # How many ids the container's map holds (root's runs, which create files as those ids):
    # an entry owned by an id at or above it is refused, so no layer can own a file as a host
    # id outside the container's range (another user's, say).
    id_limit: int | None = None
    # None: flatten every layer into one tree, applying whiteouts. A tuple: unpack one layer
    # on its own as an overlayfs lower folder over these folders (top first; images.overlay):
    # whiteouts and opaque directories are kept in the kernel's format, not applied.
    lowers: tuple[Path, ...] | None = None


class LayerNeedsParents(ImageError):
    """The layer reaches through what a lower layer holds (a parent that is a symlink
    there, a hard link to a file there): it cannot be kept as a folder of its own, and the
    image is flattened instead."""


class _RootResolver:
    """Resolves directories inside the root, keeping open the last directory resolved and
    every directory above it (the chain). Layer entries arrive grouped by directory, so a
    lookup starts from the deepest directory of the chain its path goes through and opens
    only the rest: N nested folders cost N opens in all, not N²/2. The chain holds real
    directories, by the names they were opened with (never a symlink), so a path that goes
    through one resolves from it exactly as it would from the root. Anything that removes
    or replaces a directory or symlink drops the chain all the same."""

    def __init__(self, root_fd: int, make_missing: Callable[[str, str, int], None] | None = None) -> None:
        self.root_fd = root_fd
        self._paths: list[str] = []  # the resolved path of each directory of the chain
        self._fds: list[int] = []  # and its descriptor (the root is not in the chain)
        self._last: tuple[str, int] | None = None  # the last lookup's path and answer, while the chain stands
        self._lent: set[int] = set()  # answers given since release(): the caller may still use them
        self._retired: list[int] = []  # lent descriptors dropped from the chain, closed at release()
        # Called as (resolved path, name, parent descriptor) to create a missing directory.
        self.make_missing = make_missing or (lambda _path, name, parent: _mkdir_missing(name, parent))

    def invalidate(self) -> None:
        """Forget every open directory: one of them may have been removed, or a path may now
        lead elsewhere. One the caller still uses stays open until release()."""
        self._truncate(0)

    def release(self) -> None:
        """The descriptors handed out so far are no longer used (the next entry begins)."""
        for fd in self._retired:
            os.close(fd)
        self._retired.clear()
        self._lent.clear()

    def close(self) -> None:
        self.invalidate()
        self.release()

    def directory(self, path: str, create: bool, label: str) -> int | None:
        """A descriptor for directory `path` (borrowed: the caller must not close it, and it
        stays open until release()), or None when it is missing and `create` is false."""
        if self._last is not None and self._last[0] == path:
            fd = self._last[1]
        else:
            depth = self._shared_depth(path)
            self._truncate(depth)
            if not self._walk(path[len(self._paths[-1]) + 1 :] if depth else path, create, path, label):
                return None
            fd = self._fds[-1] if self._fds else self.root_fd
            self._last = (path, fd)
        self._lent.add(fd)
        return fd

    def _shared_depth(self, path: str) -> int:
        """How many directories of the chain `path` goes through (or ends at)."""
        paths = self._paths
        if not paths or _goes_through(path, paths[-1]):
            return len(paths)
        low, high = 0, len(paths) - 1  # a binary search: the chain's paths nest
        while low < high:
            middle = (low + high + 1) // 2
            if _goes_through(path, paths[middle - 1]):
                low = middle
            else:
                high = middle - 1
        return low

    def _truncate(self, depth: int) -> None:
        """Keep the first `depth` directories of the chain."""
        self._last = None
        while len(self._fds) > depth:
            fd = self._fds.pop()
            self._paths.pop()
            if fd in self._lent:
                self._retired.append(fd)
            else:
                os.close(fd)

    def _walk(self, rest: str, create: bool, path: str, label: str) -> bool:
        """Extend the chain along `rest`, following symlinks inside the root; False when a
        directory is missing and `create` is false."""
        pending = rest.split("/")
        pending.reverse()
        followed = 0
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                self._truncate(max(len(self._fds) - 1, 0))  # never above the root
                continue
            here = self._fds[-1] if self._fds else self.root_fd
            try:
                fd = os.open(name, _OPEN_DIR, dir_fd=here)
            except FileNotFoundError:
                if not create:
                    return False
                self.make_missing(self._child_path(name), name, here)
                fd = os.open(name, _OPEN_DIR, dir_fd=here)
            except OSError as error:
                target = _symlink_target(name, here, error, path, label)
                followed += 1
                if followed > _MAX_SYMLINKS:
                    raise ImageError(f"{label}: /{path}: too many levels of symbolic links") from None
                if target.startswith("/"):
                    self._truncate(0)
                pending.extend(reversed(target.split("/")))
                continue
            self._paths.append(self._child_path(name))
            self._fds.append(fd)
        return True

    def _child_path(self, name: str) -> str:
        return f"{self._paths[-1]}/{name}" if self._paths else name


def _goes_through(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory + "/")


def _symlink_target(name: str, parent: int, error: OSError, path: str, label: str) -> str:
    """The target of the symlink `name` that an open as a directory stopped at, or the
    ImageError that `error` means when `name` is no symlink."""
    if error.errno not in (errno.ENOTDIR, errno.ELOOP):
        raise ImageError(f"{label}: cannot open /{path}: {error.strerror}") from None
    info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        raise ImageError(f"{label}: /{path}: a component is not a directory") from None
    return os.readlink(name, dir_fd=parent)


def _made_directory(name: str, parent: int) -> bool:
    """Make directory `name` (kept writable until finish_directories); False when
    something is there already."""
    try:
        _mkdir_writable(name, parent, 0o700)
        return True
    except FileExistsError:
        return False


@dataclass(frozen=True)
class _Creator:
    """What the files this process creates in the root start with: an owner and group
    (None when the root is not this process's own, so the filesystem may decide), and the
    permission bits the umask takes away (None when unknown, or when a default ACL on the
    root decides instead)."""

    owner: tuple[int, int] | None
    umask: int | None

    @classmethod
    def of(cls, root_fd: int) -> _Creator:
        info = os.fstat(root_fd)
        owner = None
        if info.st_uid == os.geteuid():
            # A set-group-ID directory gives its group to what is created in it, and the bit to
            # the directories made in it (ours get their own modes only at the end).
            owner = (info.st_uid, info.st_gid if info.st_mode & stat.S_ISGID else os.getegid())
        return cls(owner, None if _has_default_acl(root_fd) else _umask())


def _umask() -> int | None:
    """The process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _has_default_acl(directory_fd: int) -> bool:
    try:
        os.getxattr(directory_fd, "system.posix_acl_default")
        return True
    except OSError as error:
        return error.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP)


def _mkdir_missing(name: str, parent_fd: int) -> None:
    with contextlib.suppress(FileExistsError):
        _mkdir_writable(name, parent_fd, 0o755)


def _mkdir_writable(name: str, parent: int | None, mode: int) -> None:
    """mkdir, and the owner's rwx given back when the umask (or a default ACL) took them:
    the unpack writes in every folder it makes. Root needs no permission bits; an ordinary
    user under umask 277 could not fill the folders (their own modes come at the end,
    finish_directories). One lstat, no open: the folder's mode needs no read bit to see."""
    os.mkdir(name, mode, dir_fd=parent)
    if os.geteuid() == 0:
        return
    made = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if stat.S_ISDIR(made.st_mode) and made.st_mode & 0o700 != 0o700:
        # By name (Linux has no chmod that refuses a link): a folder we made a moment ago, in
        # the unpack's own tree or in the folder the caller chose for the target.
        os.chmod(name, stat.S_IMODE(made.st_mode) | 0o700, dir_fd=parent)


class _Unpacker:
    def __init__(self, root_fd: int, options: UnpackOptions, report: UnpackReport) -> None:
        layered = options.lowers is not None
        self.resolver = _RootResolver(root_fd, self.make_missing_parent if layered else None)
        self.options = options
        self.report = report
        self.directory_metadata: dict[str, Entry] = {}
        self.creator = _Creator.of(root_fd)

    def apply(self, member: LayerMember, label: str, this_layer: set[str]) -> None:
        self.resolver.release()
        entry = member.entry
        if entry.whiteout is not None and self.options.lowers is not None:
            self.keep_whiteout(entry, label, this_layer)
            return
        if entry.whiteout == "file":
            self.remove_below(entry.path, label, this_layer)
            return
        if entry.whiteout == "opaque":
            self.make_opaque(entry.path, label, this_layer)
            return
        self.check_ids(entry, label)
        this_layer.add(entry.path)
        parent_path, _, name = entry.path.rpartition("/")
        parent = self.resolver.directory(parent_path, True, label)
        assert parent is not None
        try:
            self.create(member, parent, name, label)
        except OSError as error:
            raise ImageError(f"{label}: cannot create /{entry.path}: {error.strerror}") from None

    def check_ids(self, entry: Entry, label: str) -> None:
        limit = self.options.id_limit
        if limit is not None and (entry.uid >= limit or entry.gid >= limit):
            raise ImageError(
                f"{label}: /{entry.path} is owned by {entry.uid}:{entry.gid}, outside the {limit} ids the "
                "container's user namespace maps (insufficient UIDs or GIDs: the image needs a larger ids.size)"
            )

    def create(self, member: LayerMember, parent: int, name: str, label: str) -> None:
        entry = member.entry
        if entry.kind in ("char", "block"):
            self.report.skipped_devices.append(entry.path)
        elif entry.kind == "dir":
            self.make_directory(entry, parent, name)
        elif entry.kind == "file":
            self.write_file(member, parent, name)
        elif entry.kind == "symlink":
            self.replacing(entry, parent, name, lambda: os.symlink(entry.link, name, dir_fd=parent))
            self.set_link_metadata(entry, parent, name)
            self.report.symlinks += 1
        elif entry.kind == "hardlink":
            self.clear_the_way(entry, parent, name)  # first: removing it may remove the link's target
            self.link(entry, parent, name, label)
        elif entry.kind == "fifo":
            # Private: set_metadata_by_name opens it for reading, which its own mode may forbid.
            self.replacing(entry, parent, name, lambda: os.mkfifo(name, _PRIVATE, dir_fd=parent))
            self.set_metadata_by_name(entry, parent, name)
            self.report.fifos += 1

    def make_directory(self, entry: Entry, parent: int, name: str) -> None:
        """mkdir first, as most directories are new; but one a lower layer listed already
        most likely is there: lstat first then (upper layers list their parents again)."""
        listed_before = entry.path in self.directory_metadata
        if (listed_before or not _made_directory(name, parent)) and self.clear_the_way(entry, parent, name):
            _mkdir_writable(name, parent, 0o700)
        self.directory_metadata[entry.path] = entry
        self.report.directories += 1

    def write_file(self, member: LayerMember, parent: int, name: str) -> None:
        entry = member.entry
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        given = self.mode_at_creation(entry)
        mode = _PRIVATE if given is None else given
        fd = self.replacing(entry, parent, name, lambda: os.open(name, flags, mode, dir_fd=parent))
        try:
            member.copy_data_to(fd)
            self.set_metadata(entry, fd, created_with=mode)
        finally:
            os.close(fd)
        self.report.files += 1
        self.report.bytes_written += entry.size

    def replacing(self, entry: Entry, parent: int, name: str, make: Callable[[], _T]) -> _T:
        """make(), which creates `name` exclusively; if something is there already, that is
        removed and make() tried again. Most names are new: one call, no lstat first."""
        try:
            return make()
        except FileExistsError:
            self.clear_the_way(entry, parent, name)
            return make()

    def clear_the_way(self, entry: Entry, parent: int, name: str) -> bool:
        """Remove what is at `name` for `entry`, except a directory where a directory is to
        be: that is kept (False)."""
        existing = _lstat(name, parent)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            if entry.kind == "dir":
                return False
            # The directories below go with it: their metadata must not be applied later to
            # whatever the path leads to then (a file, or another folder through a symlink).
            self.forget_directories(entry.path)
        self.remove_existing(name, parent, existing)
        return True

    def link(self, entry: Entry, parent: int, name: str, label: str) -> None:
        source_parent_path, _, source_name = entry.link.rpartition("/")
        source_parent = self.resolver.directory(source_parent_path, False, label)
        if source_parent is None or _lstat(source_name, source_parent) is None:
            if self.options.lowers is not None and overlay.visible(self.options.lowers, entry.link):
                raise LayerNeedsParents(f"{label}: hard link /{entry.path} -> /{entry.link} into a lower layer")
            raise ImageError(f"{label}: hard link /{entry.path} -> /{entry.link}: the target is not in the image")
        try:
            os.link(source_name, name, src_dir_fd=source_parent, dst_dir_fd=parent, follow_symlinks=False)
        except PermissionError:
            raise ImageError(
                f"{label}: hard link /{entry.path} -> /{entry.link}: the target cannot be linked (a directory?)"
            ) from None
        self.report.hardlinks += 1

    # -- a layer kept as an overlay lower folder ----------------------------------------
    def keep_whiteout(self, entry: Entry, label: str, this_layer: set[str]) -> None:
        """The kernel's form of an OCI whiteout: a 0/0 character device for a removed path,
        the opaque xattr on a directory whose lower children are hidden."""
        if entry.whiteout == "opaque":
            directory = self.resolver.directory(entry.path, True, label)
            assert directory is not None
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=directory)
            try:
                os.setxattr(fd, overlay.OPAQUE_XATTR, b"y")
            finally:
                os.close(fd)
            return
        if entry.path in this_layer:
            return  # whiteouts never hide their own layer's files (OCI image spec)
        assert self.options.lowers is not None
        if overlay.visible(self.options.lowers, entry.path) is None:
            return  # nothing to hide; in a folder no other layer has, the kernel would list it
        parent_path, _, name = entry.path.rpartition("/")
        parent = self.resolver.directory(parent_path, True, label)
        assert parent is not None
        with contextlib.suppress(FileExistsError):  # something of this layer there hides the lower ones itself
            os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=parent)
            self.report.whiteouts += 1

    def make_missing_parent(self, path: str, name: str, parent: int) -> None:
        """A directory the layer writes into without listing it: it takes the metadata the
        layers below give it (the merged view would otherwise show ours), as containerd does."""
        assert self.options.lowers is not None
        found = overlay.visible(self.options.lowers, path)
        if found is not None and not stat.S_ISDIR(found[1].st_mode):
            raise LayerNeedsParents(f"/{path} is not a directory in a lower layer, and a later layer writes below it")
        _mkdir_missing(name, parent)
        self.directory_metadata.setdefault(path, self.lower_directory_entry(path, found))

    def lower_directory_entry(self, path: str, found: tuple[Path, os.stat_result] | None) -> Entry:
        if found is None:
            return Entry(path, "dir", 0o755, 0, 0, 0, "", 0.0)
        where, info = found
        offset = self.options.id_offset
        uid, gid = max(info.st_uid - offset, 0), max(info.st_gid - offset, 0)
        with contextlib.suppress(OSError, ValueError):
            recorded = os.getxattr(where, _OWNER_XATTR, follow_symlinks=False).decode().split(":")
            uid, gid = int(recorded[0]), int(recorded[1])
        return Entry(path, "dir", stat.S_IMODE(info.st_mode), uid, gid, 0, "", info.st_mtime)

    # -- removal ------------------------------------------------------------------------
    def remove_existing(self, name: str, parent: int, existing: os.stat_result | None) -> None:
        if existing is None:
            return
        if stat.S_ISDIR(existing.st_mode):
            _remove_tree(name, parent)
            self.resolver.invalidate()
        else:
            os.unlink(name, dir_fd=parent)
            if stat.S_ISLNK(existing.st_mode):
                self.resolver.invalidate()

    def remove_below(self, path: str, label: str, this_layer: set[str]) -> None:
        """A whiteout removes what the layers below put at `path`."""
        if path in this_layer:
            return  # whiteouts never hide their own layer's files (OCI image spec)
        parent_path, _, name = path.rpartition("/")
        parent = self.resolver.directory(parent_path, False, label)
        if parent is None:
            return
        existing = _lstat(name, parent)
        if existing is not None:
            self.remove_existing(name, parent, existing)
            self.forget_directories(path)
            self.report.whiteouts += 1

    def make_opaque(self, path: str, label: str, this_layer: set[str]) -> None:
        """An opaque directory hides every child the layers below gave it."""
        directory = self.resolver.directory(path, False, label)
        if directory is None:
            return
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=directory)
        try:
            children = os.listdir(fd)
        finally:
            os.close(fd)
        for child in children:
            self.remove_below(f"{path}/{child}" if path else child, label, this_layer)

    def forget_directories(self, path: str) -> None:
        prefix = path + "/"
        for key in [k for k in self.directory_metadata if k == path or k.startswith(prefix)]:
            del self.directory_metadata[key]

    # -- metadata -----------------------------------------------------------------------
    def set_metadata(self, entry: Entry, fd: int, created_with: int | None = None) -> None:
        """Owner first (chown clears set-id bits), then mode, then times. A file this process
        just created (with mode `created_with`) is not given again what it has already."""
        fresh = created_with is not None
        if self.options.keep_ownership and not (fresh and self.owned_as_created(entry)):
            try:
                os.fchown(fd, entry.uid + self.options.id_offset, entry.gid + self.options.id_offset)
            except PermissionError:
                self.report.ownership_not_kept += 1
                self.record_owner(fd, entry)
        if not (fresh and created_with == self.mode_at_creation(entry)):
            os.fchmod(fd, entry.mode)
        os.utime(fd, ns=(int(entry.mtime * 1e9),) * 2)

    def owned_as_created(self, entry: Entry) -> bool:
        """Whether what this process creates already has the owner `entry` asks for."""
        offset = self.options.id_offset
        return (entry.uid + offset, entry.gid + offset) == self.creator.owner

    def mode_at_creation(self, entry: Entry) -> int | None:
        """The entry's mode, when a file created with it has it at once and keeps it: no
        set-id or sticky bit, nothing the umask takes away, and no chown to come (which
        clears set-id bits, and until which the file would be open to the wrong group).
        None: the file is created private and given its mode after its owner."""
        umask = self.creator.umask
        if umask is None or entry.mode & ~0o777 or entry.mode & umask:
            return None
        if self.options.keep_ownership and not self.owned_as_created(entry):
            return None
        return entry.mode

    def record_owner(self, fd: int, entry: Entry) -> None:
        value = f"{entry.uid}:{entry.gid}:0{entry.mode:o}".encode()
        try:
            os.setxattr(fd, _OWNER_XATTR, value)
            self.report.ownership_recorded += 1
        except OSError:
            pass

    def set_metadata_by_name(self, entry: Entry, parent: int, name: str) -> None:
        """For a FIFO just made, private."""
        # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(name, flags, dir_fd=parent)
        try:
            self.set_metadata(entry, fd, created_with=_PRIVATE)
        finally:
            os.close(fd)

    def set_link_metadata(self, entry: Entry, parent: int, name: str) -> None:
        if self.options.keep_ownership and not self.owned_as_created(entry):
            try:
                offset = self.options.id_offset
                os.chown(name, entry.uid + offset, entry.gid + offset, dir_fd=parent, follow_symlinks=False)
            except PermissionError:
                self.report.ownership_not_kept += 1
        os.utime(name, ns=(int(entry.mtime * 1e9),) * 2, dir_fd=parent, follow_symlinks=False)

    def finish_directories(self, label: str) -> None:
        """Directories were kept writable while layers landed; give them their own owner,
        mode and times now, deepest first so that a parent's mode cannot lock us out."""
        for path in sorted(self.directory_metadata, key=lambda p: p.count("/"), reverse=True):
            self.resolver.release()
            parent_path, _, name = path.rpartition("/")
            parent = self.resolver.directory(parent_path, False, label)
            if parent is None:
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            except OSError:
                continue  # replaced by a non-directory in a later layer
            try:
                self.set_metadata(self.directory_metadata[path], fd)
            finally:
                os.close(fd)


def _remove_tree(name: str, parent: int) -> None:
    """Remove the directory `name` of `parent` and everything below it, never following a
    symlink. Iterative, with one descriptor per level: shutil.rmtree recurses once per level
    (Python 3.11), and a layer can nest folders deeper than the recursion limit."""
    frames = [_open_for_removal(name, parent)]
    try:
        while frames:
            fd, current, subdirectories = frames[-1]
            if subdirectories:
                frames.append(_open_for_removal(subdirectories.pop(), fd))
                continue
            frames.pop()
            os.close(fd)
            os.rmdir(current, dir_fd=frames[-1][0] if frames else parent)
    finally:
        for fd, _, _ in frames:
            os.close(fd)


def _open_for_removal(name: str, parent: int) -> tuple[int, str, list[str]]:
    """Open directory `name`, unlink every non-directory in it, and list its subdirectories."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        subdirectories = []
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subdirectories.append(entry.name)
                else:
                    os.unlink(entry.name, dir_fd=fd)
    except BaseException:
        os.close(fd)
        raise
    return fd, name, subdirectories


def _lstat(name: str, parent: int) -> os.stat_result | None:
    """None when nothing is there, or nothing can be (a name longer than the system allows)."""
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            return None
        raise


def unpack_image(
    image: Image,
    target: Path,
    options: UnpackOptions | None = None,
    on_layer: Callable[[Layer], None] | None = None,
) -> UnpackReport:
    """Flatten every layer of `image` into `target` (created if missing, else it must be
    empty). On any error the target is emptied again and the error re-raised: a tampered
    layer leaves nothing behind."""
    return _unpack(image, image.layers, target, options or UnpackOptions(), on_layer)


def unpack_layer_folder(image: Image, layer: Layer, target: Path, options: UnpackOptions) -> UnpackReport:
    """One layer on its own into `target`, as an overlay lower folder over `options.lowers`
    (the folders of the layers below it, top first). Raises LayerNeedsParents when the layer
    cannot stand alone; emptied again on any error, as unpack_image."""
    if options.lowers is None:
        raise ValueError("unpack_layer_folder needs options.lowers (may be empty)")
    return _unpack(image, [layer], target, options, None)


def _unpack(
    image: Image,
    layers: Sequence[Layer],
    target: Path,
    options: UnpackOptions,
    on_layer: Callable[[Layer], None] | None,
) -> UnpackReport:
    created = _prepare_target(target)
    root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    report = UnpackReport()
    unpacker = _Unpacker(root_fd, options, report)
    budget = ByteBudget(options.max_bytes)
    try:
        for layer in layers:
            unpack_layer(image, layer, unpacker, budget)
            if on_layer is not None:
                on_layer(layer)
        unpacker.finish_directories(str(target))
        report.uncompressed_bytes = budget.used
        return report
    except BaseException:
        unpacker.resolver.close()  # a deep chain would leave _remove_tree no descriptors
        _empty_target(root_fd, target, created)
        raise
    finally:
        unpacker.resolver.close()
        os.close(root_fd)


def unpack_layer(image: Image, layer: Layer, unpacker: _Unpacker, budget: ByteBudget) -> None:
    label = f"{image.store.label}: {layer.label}"
    this_layer: set[str] = set()
    for member in walk_layer(image, layer, budget):
        unpacker.apply(member, label, this_layer)
    unpacker.report.layers += 1


def _prepare_target(target: Path) -> bool:
    try:
        _mkdir_writable(str(target), None, 0o755)
        return True
    except FileExistsError:
        pass
    except OSError as error:
        raise ImageError(f"{target}: cannot create the target folder: {error.strerror}") from None
    if target.is_symlink() or not target.is_dir():
        raise ImageError(f"{target}: the target exists and is not a folder")
    if any(target.iterdir()):
        raise ImageError(f"{target}: the target folder is not empty")
    return False


def _empty_target(root_fd: int, target: Path, created: bool) -> None:
    for name in os.listdir(root_fd):
        info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            with contextlib.suppress(OSError):
                _remove_tree(name, root_fd)
        else:
            os.unlink(name, dir_fd=root_fd)
    if created:
        os.rmdir(target)
