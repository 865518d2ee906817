"""Writes a read-only mount refuses (EROFS), heard by `run --explain`: the root made
read-only, a read-only or masked path, a volume bound read-only, /sys.

These are no seccomp denial, so the filter has nothing to say about them. With --explain
the calls that write through a path (write-mode opens, mkdir, unlink, rename, chmod...) are
notified before the filter is asked (bpfeval.with_notified_calls, only where the plain
filter allows the call whatever its arguments), and the monitor, before answering
"continue" as the filter would, resolves the path as the caller will: from its root, its
working folder or its descriptor (/proc/PID/root, cwd, fd/N), with openat2 and
RESOLVE_IN_ROOT (a relative path: RESOLVE_BENEATH), never following a magic link and never
opening the file itself (O_PATH). A mount read-only there means the call gets EROFS: the
monitor records the path and the mount's point as the container sees it (from
/proc/PID/mountinfo), which policies.explain maps to the policy key.

A prediction, made an instant before the call: a folder made or removed meanwhile can make
it wrong, and a relative path that climbs out of its folder (or a symlink to an absolute
path from one) is not resolved and not reported. Reading a masked path is no error (it
reads empty) and is not heard."""

from __future__ import annotations

import errno
import os
import stat

from pysbx.sandbox import linux
from pysbx.sandbox.caller import Caller

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Write:
    """How one call writes through a path: the argument holding the folder descriptor (-1:
    none, the working folder), the path's, the flags' (-1: none; openat2 keeps its flags in
    memory: -2), and what it does there: "open", "create" (a new name: mkdir, symlink...),
    "remove" (unlink, rename's source), "change" (the file itself: chmod, truncate...), "fd"
    (the file open as argument `directory`: fchmod, fchown...). `follow`: whether a symlink
    at the end is followed."""

    __slots__ = ("directory", "flags", "follow", "kind", "path")

    def __init__(self, directory: int, path: int, kind: str, flags: int = -1, follow: bool = True) -> None:
        self.directory, self.path, self.kind, self.flags, self.follow = directory, path, kind, flags, follow


WRITES = {
    "open": Write(-1, 0, "open", flags=1), "openat": Write(0, 1, "open", flags=2),
    "openat2": Write(0, 1, "open", flags=-2), "creat": Write(-1, 0, "open"),
    "mkdir": Write(-1, 0, "create"), "mkdirat": Write(0, 1, "create"),
    "mknod": Write(-1, 0, "create"), "mknodat": Write(0, 1, "create"),
    "symlink": Write(-1, 1, "create"), "symlinkat": Write(1, 2, "create"),
    "link": Write(-1, 1, "create"), "linkat": Write(2, 3, "create"),
    "unlink": Write(-1, 0, "remove"), "unlinkat": Write(0, 1, "remove"), "rmdir": Write(-1, 0, "remove"),
    "rename": Write(-1, 0, "remove"), "renameat": Write(0, 1, "remove"), "renameat2": Write(0, 1, "remove"),
    "truncate": Write(-1, 0, "change"), "chmod": Write(-1, 0, "change"), "fchmodat": Write(0, 1, "change"),
    "chown": Write(-1, 0, "change"), "lchown": Write(-1, 0, "change", follow=False),
    "fchownat": Write(0, 1, "change"), "utimensat": Write(0, 1, "change"),
    "setxattr": Write(-1, 0, "change"), "lsetxattr": Write(-1, 0, "change", follow=False),
    "removexattr": Write(-1, 0, "change"), "lremovexattr": Write(-1, 0, "change", follow=False),
    "utime": Write(-1, 0, "change"), "utimes": Write(-1, 0, "change"), "futimesat": Write(0, 1, "change"),
    "fchmodat2": Write(0, 1, "change"), "fchmod": Write(0, -1, "fd"), "fchown": Write(0, -1, "fd"),
    "fsetxattr": Write(0, -1, "fd"), "fremovexattr": Write(0, -1, "fd"),
}  # fmt: skip

O_ACCMODE, O_CREAT, O_TRUNC, O_NOFOLLOW = 0o3, 0o100, 0o1000, 0o400000
CREAT_FLAGS = os.O_WRONLY | O_CREAT | O_TRUNC
# An open writes when its flags have any of these bits: (mask, value) tests for the prologue.
WRITING_OPEN = ((1, 1), (2, 2), (O_CREAT, O_CREAT), (O_TRUNC, O_TRUNC))
AT_FDCWD = -100
MAX_MOUNTINFO = 1 << 20


def notified_writes(
    number_of: Callable[[str], int | None], allows_always: Callable[[int], bool]
) -> tuple[dict[int, Write], list[tuple[int, int, int, int]]]:
    """The writing calls to hear, by this machine's numbers, and their prologue tests
    (bpfeval.with_notified_calls): those the plain filter allows whatever their arguments
    (`allows_always`); a call it denies is heard as a denial already, and one it answers
    otherwise for some arguments is left to it."""
    writes: dict[int, Write] = {}
    tests: list[tuple[int, int, int, int]] = []
    for name, write in WRITES.items():
        number = number_of(name)
        if number is None or not allows_always(number):
            continue
        writes[number] = write
        if write.flags >= 0:
            tests += [(number, write.flags, mask, value) for mask, value in WRITING_OPEN]
        else:
            tests.append((number, 0, 0, 0))  # every call: argument & 0 == 0
    return writes, tests


def may_write(write: Write, args: tuple[int, ...] | list[int]) -> bool:
    """False for an open whose flags (in a register) say it only reads: nothing to look at."""
    if write.kind != "open" or write.flags < 0:
        return True
    return bool(args[write.flags] & (O_ACCMODE | O_CREAT | O_TRUNC))


def refusal(
    pid: int, write: Write, args: tuple[int, ...] | list[int], path: bytes, read: Callable[[int, int], bytes]
) -> tuple[int, str, str] | None:
    """How the kernel will refuse this call, or None (it will not, or it cannot be told):
    EROFS and the point (as the container sees it) of the read-only mount, or, for the
    container's root opening a file its mode does not let it write, EACCES and the
    capability that would (CAP_DAC_OVERRIDE, which the policy drops). `path` is the call's
    path as read from the caller; `read(address, size)` reads the caller's memory."""
    found = _target(pid, write, args, path, read)
    if found is None:
        return None
    target, flags = found
    try:
        read_only = bool(os.fstatvfs(target).f_flag & os.ST_RDONLY)
        info = os.fstat(target)
        # An existing file opened for writing: O_TRUNC asks the mount first, then the
        # permission check says EACCES, then the mount is asked (fs/namei.c do_open)
        if write.kind == "open" and stat.S_ISREG(info.st_mode) and not (read_only and flags & O_TRUNC):
            caller, reads = Caller(pid), flags & O_ACCMODE != os.O_WRONLY
            if not caller.may_access(info, read=reads, write=True):
                overridable = caller.is_root() and caller.maps_owner(info)
                return (errno.EACCES, "", "CAP_DAC_OVERRIDE") if overridable else None
        if not read_only:
            return None
        mount = _mount_point(pid, _mount_id(target))
        return (errno.EROFS, mount, "") if mount is not None else None
    finally:
        os.close(target)


def landing(
    pid: int, write: Write, args: tuple[int, ...] | list[int], path: bytes, read: Callable[[int, int], bytes]
) -> str:
    """The point (as the container sees it) of the mount this call writes to, or "": it
    writes nothing (`learn`: what was written on the root). OSError where that cannot be
    told."""
    found = _target(pid, write, args, path, read)
    if found is None:
        return ""
    try:
        point = _mount_point(pid, _mount_id(found[0]))
    finally:
        os.close(found[0])
    if point is None:
        raise OSError(errno.ENOENT, "the mount is not in the caller's mountinfo")
    return point


def absolute(pid: int, write: Write, args: tuple[int, ...] | list[int], path: bytes) -> bytes | None:
    """The call's path from the container's root: a relative one joined to the caller's
    working folder or folder descriptor as /proc shows them, a descriptor's own path (None
    where that is not a path from the root)."""
    if path.startswith(b"/"):
        return path
    directory = signed(args[write.directory]) if write.directory >= 0 else AT_FDCWD
    if write.kind == "fd":
        try:
            named = os.fsencode(os.readlink(f"/proc/{pid}/fd/{directory}"))
        except OSError:
            return None
        return named if named.startswith(b"/") else None
    where = f"/proc/{pid}/cwd" if directory == AT_FDCWD else f"/proc/{pid}/fd/{directory}"
    try:
        folder = os.fsencode(os.readlink(where))
    except OSError:
        return None
    return folder.rstrip(b"/") + b"/" + path if folder.startswith(b"/") else None


def _target(
    pid: int, write: Write, args: tuple[int, ...] | list[int], path: bytes, read: Callable[[int, int], bytes]
) -> tuple[int, int] | None:
    """The O_PATH descriptor whose mount decides the call (_place), and an open's flags;
    None where the call writes nothing (it fails first, or opens to read). OSError where
    that cannot be told (the path climbs out of its folder, the caller is gone...)."""
    flags = _open_flags(write, args, read) if write.kind == "open" else 0
    if write.kind == "open" and not flags & (O_ACCMODE | O_CREAT | O_TRUNC):
        return None
    directory = signed(args[write.directory]) if write.directory >= 0 else AT_FDCWD
    if write.kind == "fd":
        return os.open(f"/proc/{pid}/fd/{directory}", os.O_PATH | os.O_CLOEXEC), 0
    if not path or b"\0" in path:
        raise OSError(errno.EINVAL, "no path to resolve")
    start = _starting_point(pid, directory, path)
    try:
        target = _place(start, path, write, flags)
    finally:
        os.close(start)
    return (target, flags) if target is not None else None


def _open_flags(write: Write, args: tuple[int, ...] | list[int], read: Callable[[int, int], bytes]) -> int:
    if write.flags == -1:
        return CREAT_FLAGS
    if write.flags == -2:  # openat2's struct open_how starts with its u64 flags
        data = read(args[2], 8)
        return int.from_bytes(data, "little") if len(data) == 8 else 0
    return args[write.flags]


def signed(value: int) -> int:
    """A descriptor argument as the kernel reads it (an int: AT_FDCWD is -100)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _starting_point(pid: int, directory: int, path: bytes) -> int:
    """Where the caller's resolution starts, open (O_PATH) in the monitor: its root for an
    absolute path, else its working folder or the folder open as `directory`."""
    if path.startswith(b"/"):
        where = f"/proc/{pid}/root"
    elif directory == AT_FDCWD:
        where = f"/proc/{pid}/cwd"
    elif directory >= 0:
        where = f"/proc/{pid}/fd/{directory}"
    else:
        raise OSError(errno.EBADF, "no such descriptor")
    return os.open(where, os.O_PATH | os.O_CLOEXEC)


def resolved(pid: int, directory: int, path: bytes, follow: bool) -> int | None:
    """Process `pid`'s `path` from `directory` (AT_FDCWD: its working folder), open as
    O_PATH in the monitor, resolved as the caller would; None where that cannot be done."""
    try:
        start = _starting_point(pid, directory, path)
    except OSError:
        return None
    try:
        return _resolve(start, path, follow)
    except OSError:
        return None
    finally:
        os.close(start)


def _place(start: int, path: bytes, write: Write, flags: int) -> int | None:
    """The O_PATH descriptor whose mount decides the call: the file itself where it exists
    and is written (a regular file: a device or a pipe is written on a read-only mount too),
    its folder where a name is made or removed; None where the call fails for another
    reason first (no such file, a name that exists already)."""
    follow = write.follow and not (write.kind == "open" and flags & O_NOFOLLOW)
    if write.kind in ("open", "change"):
        found = _resolve(start, path, follow)
        if found is not None:
            if write.kind == "change" or (stat.S_ISREG(os.fstat(found).st_mode) and flags & (O_ACCMODE | O_TRUNC)):
                return found
            os.close(found)
            return None
        if not flags & O_CREAT:
            return None
        return _folder_of(start, _dangling_target(start, path) if follow else path)
    found = _resolve(start, path, follow=False)
    if found is not None:
        os.close(found)
    if (found is None) == (write.kind == "remove"):  # nothing to remove, or the name is taken
        return None
    return _folder_of(start, path)


def _dangling_target(start: int, path: bytes, depth: int = 8) -> bytes:
    """Where O_CREAT makes the file when `path` ends in a link to nothing (the link's
    target, itself perhaps a link), or `path` itself. OSError for a link to an absolute
    path met from a relative one: `start` is then the working folder, not the root."""
    relative = not path.startswith(b"/")
    for _ in range(depth):
        link = _resolve(start, path, follow=False)
        if link is None:
            return path
        try:
            if not stat.S_ISLNK(os.fstat(link).st_mode):
                return path
            target = os.fsencode(os.readlink("", dir_fd=link))
        finally:
            os.close(link)
        if target.startswith(b"/") and relative:
            raise OSError(errno.EXDEV, "a link to an absolute path, from a relative one")
        if not target.startswith(b"/"):
            folder = path.rstrip(b"/").rpartition(b"/")[0]
            target = folder + b"/" + target if folder or path.startswith(b"/") else target
        path = target
    return path


def _folder_of(start: int, path: bytes) -> int | None:
    trimmed = path.rstrip(b"/")
    if not trimmed:
        return None
    folder, _, name = trimmed.rpartition(b"/")
    if name in (b".", b".."):
        return None
    if not folder:
        folder = b"/" if trimmed.startswith(b"/") else b"."
    return _resolve(start, folder, follow=True)


def _resolve(start: int, path: bytes, follow: bool) -> int | None:
    """None where nothing is there (the call meets ENOENT or ENOTDIR); OSError where the
    caller's resolution cannot be followed (a path climbing out of its folder: EXDEV)."""
    scope = linux.RESOLVE_IN_ROOT if path.startswith(b"/") else linux.RESOLVE_BENEATH
    flags = os.O_PATH | (0 if follow else O_NOFOLLOW)
    try:
        return linux.openat2(start, path, flags, scope | linux.RESOLVE_NO_MAGICLINKS)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def _mount_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}", "rb") as info:
        for line in info:
            if line.startswith(b"mnt_id:"):
                return int(line.split()[1])
    return -1


def _mount_point(pid: int, mount_id: int) -> str | None:
    """The point of mount `mount_id` in process `pid`'s mountinfo, as its root shows it."""
    try:
        with open(f"/proc/{pid}/mountinfo", "rb") as table:
            text = table.read(MAX_MOUNTINFO)
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split(b" ")
        if len(fields) > 4 and fields[0] == str(mount_id).encode():
            return _unescaped(fields[4]).decode(errors="surrogateescape")
    return None


def _unescaped(field: bytes) -> bytes:
    """mountinfo writes space, tab, newline and backslash as \\ooo."""
    parts = field.split(b"\\")
    out = parts[0]
    for part in parts[1:]:
        if len(part) >= 3 and all(48 <= c <= 55 for c in part[:3]):
            out += bytes([int(part[:3], 8)]) + part[3:]
        else:
            out += b"\\" + part
    return out
