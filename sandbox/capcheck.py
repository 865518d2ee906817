"""Calls the filter allows that the kernel refuses for a capability the caller lacks, heard
by `run --explain` (and told to `learn`): binding a port below 1024 (CAP_NET_BIND_SERVICE),
giving a file away (CAP_CHOWN), changing the mode of a file one does not own (CAP_FOWNER),
taking ids one does not hold (CAP_SETUID, CAP_SETGID), and container root writing a file its
mode does not let it write (CAP_DAC_OVERRIDE, from sandbox.pathwrites).

Whether such a call fails depends on more than its registers: the file's owner, the
caller's ids. So the call is notified (bpfeval.with_notified_calls, where the plain filter
allows it whatever its arguments and the policy does not grant the capability) and the
monitor, before answering "continue" as the filter would, reads what the kernel will
check: the caller's ids and effective capabilities (/proc/PID/status, ids as the monitor's
namespace sees them), its id maps (/proc/PID/uid_map: the call's ids are the container's),
the file's owner (resolved as sandbox.pathwrites resolves paths), the sockaddr (its memory).
The rules are the kernel's (kernel/sys.c, fs/attr.c, net/ipv4/af_inet.c), a prediction made
an instant before the call."""

from __future__ import annotations

import errno
import os
import stat

from pysbx.sandbox import pathwrites
from pysbx.sandbox.caller import Caller
from pysbx.sandbox.capabilities import CAPABILITY_NUMBERS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

UNCHANGED = 0xFFFFFFFF  # an id of -1: "leave it"
UNPRIVILEGED_PORT_START = 1024  # a new network namespace's net.ipv4.ip_unprivileged_port_start
AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 2, 10, 16, 17
SOCK_RAW, NETLINK_AUDIT = 3, 9
FILE_CAPABILITY = b"security.capability"


class Check:
    """What one call needs checked: its capability, how to read it (`kind`: "bind",
    "chown", "chmod", "setuid", "setreuid", "setresuid", "setgroups"), whether it is about
    gids, where its ids start among the arguments, and where its file is (as pathwrites.Write
    says; path -1: a descriptor in argument `directory`) and an open's flags (-1: creat's)."""

    __slots__ = ("capability", "directory", "flags", "follow", "gids", "ids", "kind", "path")

    def __init__(
        self,
        capability: str,
        kind: str,
        ids: int = 0,
        gids: bool = False,
        directory: int = -1,
        path: int = -1,
        follow: bool = True,
        flags: int = -1,
    ) -> None:
        self.capability, self.kind, self.ids, self.gids = capability, kind, ids, gids
        self.directory, self.path, self.follow, self.flags = directory, path, follow, flags


CHECKS = {
    "bind": Check("CAP_NET_BIND_SERVICE", "bind"),
    "chown": Check("CAP_CHOWN", "chown", ids=1, path=0),
    "lchown": Check("CAP_CHOWN", "chown", ids=1, path=0, follow=False),
    "fchown": Check("CAP_CHOWN", "chown", ids=1, directory=0),
    "fchownat": Check("CAP_CHOWN", "chown", ids=2, directory=0, path=1),
    "chmod": Check("CAP_FOWNER", "chmod", path=0), "fchmod": Check("CAP_FOWNER", "chmod", directory=0),
    "fchmodat": Check("CAP_FOWNER", "chmod", directory=0, path=1),
    "setuid": Check("CAP_SETUID", "setuid"), "setreuid": Check("CAP_SETUID", "setreuid"),
    "setresuid": Check("CAP_SETUID", "setresuid"), "setgid": Check("CAP_SETGID", "setuid", gids=True),
    "setregid": Check("CAP_SETGID", "setreuid", gids=True), "setresgid": Check("CAP_SETGID", "setresuid", gids=True),
    "setgroups": Check("CAP_SETGID", "setgroups"),
}  # fmt: skip
# What `learn` looks at besides (under observation every call is heard): the capabilities of
# Docker's default set whose use shows in a call. Not here, so kept by learn: CAP_KILL (whom a
# signal reaches), CAP_FSETID, CAP_MKNOD.
LEARN_CHECKS = {
    **CHECKS,
    "socket": Check("CAP_NET_RAW", "socket"), "chroot": Check("CAP_SYS_CHROOT", "always"),
    "setxattr": Check("CAP_SETFCAP", "setxattr"), "lsetxattr": Check("CAP_SETFCAP", "setxattr"),
    "fsetxattr": Check("CAP_SETFCAP", "setxattr"),
    "open": Check("CAP_DAC_OVERRIDE", "open", flags=1, path=0), "creat": Check("CAP_DAC_OVERRIDE", "open", path=0),
    "openat": Check("CAP_DAC_OVERRIDE", "open", flags=2, directory=0, path=1),
}  # fmt: skip
OBSERVABLE = frozenset(
    {check.capability for check in LEARN_CHECKS.values()} | {"CAP_AUDIT_WRITE"}
)  # what learn can tell was used
WHAT = {
    "bind": "binding a port below 1024", "chown": "giving a file to another owner or group",
    "chmod": "changing the mode of a file it does not own", "setuid": "taking an id it does not hold",
    "setreuid": "taking an id it does not hold", "setresuid": "taking an id it does not hold",
    "setgroups": "setting its supplementary groups", "open": "writing a file whose mode does not let root write it",
}  # fmt: skip


def notified_checks(
    number_of: Callable[[str], int | None], allows_always: Callable[[int], bool], granted: int
) -> tuple[dict[int, Check], list[tuple[int, int, int, int]]]:
    """The calls to hear, by this machine's numbers, for the capabilities missing from the
    mask `granted`, and their prologue tests (every call of each)."""
    checks = {}
    for name, check in CHECKS.items():
        number = number_of(name)
        if number is not None and not granted >> CAPABILITY_NUMBERS[check.capability] & 1 and allows_always(number):
            checks[number] = check
    return checks, [(number, 0, 0, 0) for number in checks]


def refused(
    pid: int, check: Check, args: tuple[int, ...] | list[int], path: bytes | None, read: Callable[[int, int], bytes]
) -> bool:
    """Whether the kernel will refuse this call for want of check.capability (EPERM, or
    EACCES for bind). `path` is the call's path as read from the caller (None: it has none,
    or it could not be read)."""
    caller = Caller(pid)
    return not caller.holds(check.capability) and needed(caller, pid, check, args, path, read) != ""


def needed(
    caller: Caller,
    pid: int,
    check: Check,
    args: tuple[int, ...] | list[int],
    path: bytes | None,
    read: Callable[[int, int], bytes],
) -> str:
    """The capability without which the kernel refuses this call of `caller` (whether it
    holds it or not), or "": what `learn` counts as used."""
    if check.kind == "bind":
        return check.capability if _binds_privileged_port(args, read) else ""
    if check.kind in ("setuid", "setreuid", "setresuid"):
        return check.capability if _takes_ids_not_held(caller, check, args) else ""
    if check.kind in ("setgroups", "always"):
        return check.capability
    if check.kind == "socket":
        return _socket_capability(args)
    if check.kind == "setxattr":
        return check.capability if read(args[1], len(FILE_CAPABILITY) + 1) == FILE_CAPABILITY + b"\0" else ""
    owner = _file_owner(pid, check, args, path)
    if owner is None or not caller.maps_owner(owner):  # the capability would not reach it either
        return ""
    if check.kind == "open":
        return check.capability if _overrides_permissions(caller, check, args, owner) else ""
    return check.capability if _may_not_change(caller, check, args, (owner.st_uid, owner.st_gid)) else ""


def _socket_capability(args: tuple[int, ...] | list[int]) -> str:
    """A packet socket, or a raw one of any family, needs CAP_NET_RAW; an audit netlink
    socket (what login, su and sshd write to), CAP_AUDIT_WRITE."""
    family, kind, protocol = args[0] & 0xFFFFFFFF, args[1] & 0xF, args[2] & 0xFFFFFFFF
    if family == AF_PACKET or (kind == SOCK_RAW and family != AF_NETLINK):
        return "CAP_NET_RAW"
    if family == AF_NETLINK and protocol == NETLINK_AUDIT:
        return "CAP_AUDIT_WRITE"
    return ""


def _overrides_permissions(
    caller: Caller, check: Check, args: tuple[int, ...] | list[int], info: os.stat_result
) -> bool:
    """An open of a regular file whose mode refuses the caller what it asks (read, write)."""
    if not stat.S_ISREG(info.st_mode):
        return False
    flags = args[check.flags] if check.flags >= 0 else pathwrites.CREAT_FLAGS
    access = flags & pathwrites.O_ACCMODE
    writes = access != os.O_RDONLY or bool(flags & pathwrites.O_TRUNC)
    return not caller.may_access(info, read=access != os.O_WRONLY, write=writes, overriding=False)


def _binds_privileged_port(args: tuple[int, ...] | list[int], read: Callable[[int, int], bytes]) -> bool:
    address = read(args[1], 4) if args[2] >= 4 else b""
    if len(address) < 4 or int.from_bytes(address[:2], "little") not in (AF_INET, AF_INET6):
        return False
    port = int.from_bytes(address[2:4], "big")
    return 0 < port < UNPRIVILEGED_PORT_START


def _takes_ids_not_held(caller: Caller, check: Check, args: tuple[int, ...] | list[int]) -> bool:
    """kernel/sys.c without the capability: setuid to the real or saved id; setreuid's real
    to the real or effective, its effective to any of the three; setresuid's each to any of
    the three. An id the container's map lacks is EINVAL, not this."""
    real, effective, saved, _ = caller.gids if check.gids else caller.uids
    allowed = {
        "setuid": ((real, saved),),
        "setreuid": ((real, effective), (real, effective, saved)),
        "setresuid": ((real, effective, saved),) * 3,
    }[check.kind]
    for index, held in enumerate(allowed):
        value = args[index] & 0xFFFFFFFF
        if value == UNCHANGED:
            continue
        wanted = caller.outside(value, check.gids)
        if wanted is not None and wanted not in held:
            return True
    return False


def _file_owner(pid: int, check: Check, args: tuple[int, ...] | list[int], path: bytes | None) -> os.stat_result | None:
    """The call's file's status (its owner and group as the monitor sees them), or None."""
    if check.path < 0:  # fchown, fchmod: the descriptor's file
        target = os.open(f"/proc/{pid}/fd/{pathwrites.signed(args[check.directory])}", os.O_PATH | os.O_CLOEXEC)
    else:
        if not path:
            return None
        directory = pathwrites.signed(args[check.directory]) if check.directory >= 0 else pathwrites.AT_FDCWD
        found = pathwrites.resolved(pid, directory, path, check.follow)
        if found is None:
            return None
        target = found
    try:
        return os.fstat(target)
    finally:
        os.close(target)


def _may_not_change(caller: Caller, check: Check, args: tuple[int, ...] | list[int], owner: tuple[int, int]) -> bool:
    """fs/attr.c: chown's uid only by the owner to itself, its gid only by the owner to a
    group it is in (or the file's); chmod only by the owner."""
    fsuid, fsgid = caller.uids[3], caller.gids[3]
    owns = fsuid == owner[0]
    if check.kind == "chmod":
        return not owns
    uid, gid = args[check.ids] & 0xFFFFFFFF, args[check.ids + 1] & 0xFFFFFFFF
    if uid != UNCHANGED:
        wanted = caller.outside(uid, False)
        if wanted is None:
            return False  # EINVAL
        if not (owns and wanted == owner[0]):
            return True
    if gid != UNCHANGED:
        wanted = caller.outside(gid, True)
        if wanted is None:
            return False
        if not (owns and (wanted == owner[1] or wanted in caller.groups or wanted == fsgid)):
            return True
    return False


def refused_errno(check: Check) -> int:
    return errno.EACCES if check.kind == "bind" else errno.EPERM
