"""The system calls Python's os module lacks, made by number through one primitive: the C
extension sandbox._syscall, or where it was not built, ctypes (sandbox/syscall_ctypes.py),
which costs a warm start about 2 ms more to load. Each wrapper raises OSError naming the
operation and its target, so a failure reads as
"mount /proc on /x/proc: Operation not permitted"."""

from __future__ import annotations

import errno
import os
import struct
import sys

try:
    from pysbx.sandbox._syscall import address, syscall
except ImportError:
    from pysbx.sandbox.syscall_ctypes import address, syscall

__all__ = ["address", "syscall"]

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACE_FLAGS = {
    "mount": CLONE_NEWNS,
    "cgroup": CLONE_NEWCGROUP,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "user": CLONE_NEWUSER,
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
}

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# By machine: the numbers of the calls made here (asm/unistd.h).
NUMBERS = {
    "x86_64": {
        "capget": 125, "capset": 126, "mount": 165, "pivot_root": 155, "prctl": 157, "seccomp": 317,
        "sethostname": 170, "umount2": 166, "unshare": 272, "setns": 308, "pidfd_open": 434,
        "fsconfig": 431, "fspick": 433, "process_vm_readv": 310, "openat2": 437, "socket": 41, "ioctl": 16,
    },
    "aarch64": {
        "capget": 90, "capset": 91, "mount": 40, "pivot_root": 41, "prctl": 167, "seccomp": 277,
        "sethostname": 161, "umount2": 39, "unshare": 97, "setns": 268, "pidfd_open": 434,
        "fsconfig": 431, "fspick": 433, "process_vm_readv": 270, "openat2": 437, "socket": 198, "ioctl": 29,
    },
}[os.uname().machine]  # fmt: skip


def call(name: str, *args: int | bytes | bytearray | None, what: str, hints: dict[int, str] | None = None) -> int:
    """System call `name`; an OSError says `what` was being done, and `hints` may say why
    an errno comes up there."""
    try:
        return syscall(NUMBERS[name], *args)
    except OSError as error:
        hint = (hints or {}).get(error.errno or 0)
        raise OSError(error.errno, f"{what}: {error.strerror}" + (f"; {hint}" if hint else "")) from None


def _path(text: str) -> bytes:
    """A path as the kernel reads it (to the first NUL, which os functions refuse too)."""
    data = os.fsencode(text)
    if b"\0" in data:
        raise ValueError(f"embedded null byte in {text!r}")
    return data


def unshare(flags: int) -> None:
    call("unshare", flags, what="unshare")


def setns(fd: int, flag: int, what: str) -> None:
    call("setns", fd, flag, what=f"join the container's {what} namespace")


def pidfd_open(pid: int) -> int:
    """A descriptor that stays on process `pid` (or fails): what it names cannot be reused."""
    return call("pidfd_open", pid, 0, what=f"pidfd_open {pid}")


def mount(source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    what = f"mount {source} on {target}" + (f" ({fstype})" if fstype else "")
    call("mount", _path(source), _path(target), fstype.encode() if fstype else None, flags, _text(data), what=what)


FSPICK_CLOEXEC, FSPICK_EMPTY_PATH = 1, 8
FSCONFIG_SET_FLAG, FSCONFIG_CMD_RECONFIGURE = 0, 7


def remount_read_only(root: int, what: str, busy: str) -> None:
    """Make the filesystem whose root is open as `root` read-only, for every mount of it
    (fspick, unlike mount(2), reaches a mount that is detached). EBUSY, said as `busy`,
    while anyone holds a file of it open for writing."""
    doing = f"make {what} read-only"
    context = call("fspick", root, b"", FSPICK_EMPTY_PATH | FSPICK_CLOEXEC, what=doing)
    try:
        call("fsconfig", context, FSCONFIG_SET_FLAG, b"ro", None, 0, what=doing)
        call("fsconfig", context, FSCONFIG_CMD_RECONFIGURE, None, None, 0, what=doing, hints={errno.EBUSY: busy})
    finally:
        os.close(context)


def process_vm_read(pid: int, remote: int, size: int) -> bytes:
    """Up to `size` bytes of process `pid`'s memory at `remote` (fewer where its mapping
    ends). Unlike /proc/PID/mem, which is 0600 and owned by the process's uid (a container
    user's subordinate id), this asks only the ptrace access check an ordinary user passes
    for the processes of a user namespace they own."""
    buffer = bytearray(size)
    local = struct.pack("=QQ", address(buffer), size)
    far = struct.pack("=QQ", remote, size)
    done = call("process_vm_readv", pid, local, 1, far, 1, 0, what=f"read the memory of process {pid}")
    return bytes(buffer[:done])


RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_BENEATH, RESOLVE_IN_ROOT = 0x01, 0x02, 0x08, 0x10


def openat2(directory: int, path: bytes, flags: int, resolve: int) -> int:
    """openat2(2): `path` from `directory`, resolved as `resolve` says (RESOLVE_IN_ROOT: as
    if `directory` were the root, symlinks included)."""
    how = struct.pack("=QQQ", flags | os.O_CLOEXEC, 0, resolve)  # struct open_how: flags, mode, resolve
    return call("openat2", directory, path, how, len(how), what=f"openat2 {os.fsdecode(path)!r}")


def _text(data: str | None) -> bytes | None:
    return data.encode() if data else None


def umount(target: str, flags: int = 0) -> None:
    call("umount2", _path(target), flags, what=f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    call("pivot_root", _path(new_root), _path(put_old), what=f"pivot_root to {new_root}")


def sethostname(name: str) -> None:
    data = name.encode()
    call("sethostname", data, len(data), what=f"sethostname {name}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return call("prctl", option, arg2, arg3, arg4, arg5, what=f"prctl({option})")


_CAPABILITY_VERSION_3 = 0x20080522


def u32(value: int) -> bytes:
    return (value & 0xFFFFFFFF).to_bytes(4, sys.byteorder)


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets from 64-bit masks (two 32-bit halves, low first)."""
    header = u32(_CAPABILITY_VERSION_3) + u32(0)  # struct __user_cap_header_struct: version, pid
    data = b"".join(u32(effective >> s) + u32(permitted >> s) + u32(inheritable >> s) for s in (0, 32))
    call("capset", header, data, what="capset")


def capget() -> tuple[int, int, int]:
    """This thread's (effective, permitted, inheritable) capability sets as 64-bit masks."""
    header = u32(_CAPABILITY_VERSION_3) + u32(0)
    data = bytearray(24)  # two struct __user_cap_data_struct: effective, permitted, inheritable
    call("capget", header, data, what="capget")
    words = [int.from_bytes(data[i : i + 4], sys.byteorder) for i in range(0, 24, 4)]
    return tuple(words[k] | words[k + 3] << 32 for k in range(3))  # type: ignore[return-value]


def set_loopback_up() -> None:
    """Bring `lo` up in this network namespace (SIOCGIFFLAGS, then SIOCSIFFLAGS with IFF_UP).
    By number, like the calls above: the `socket` module pulls in enum, selectors and
    collections (7 ms), and even its C half `_socket` is a shared library whose loading
    cost a warm start 0.4 ms in PID 1."""
    af_inet, sock_dgram_cloexec = 2, 2 | os.O_CLOEXEC
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    sock = call("socket", af_inet, sock_dgram_cloexec, 0, what="socket for lo")
    try:
        request = bytearray(40)  # struct ifreq: the name (16 bytes), then ifr_flags (a short)
        request[: len(b"lo")] = b"lo"
        call("ioctl", sock, siocgifflags, request, what="read the flags of lo")
        flags = int.from_bytes(request[16:18], sys.byteorder) | iff_up
        request[16:18] = flags.to_bytes(2, sys.byteorder)
        call("ioctl", sock, siocsifflags, request, what="bring lo up")
    finally:
        os.close(sock)
