"""`run --explain` without a listener (the profile denies what the handover needs, the kernel
gives none, a filter of the chain listens already): the plain filter is loaded with
SECCOMP_FILTER_FLAG_LOG, so that each denial is written to the kernel's log as an audit
record (type=1326: pid, arch, syscall, action), and the monitor reads them from /dev/kmsg
while the container runs. Root only: /dev/kmsg is the host's whole log, which an ordinary
user may not read (the run says so, and hears nothing then).

Less than a listener hears: no arguments (the record has none), and a record is kept only
when its process is, when read, in the container's pid namespace (a process gone by then is
missed; another container's or the host's never counts). The kernel may rate-limit the log."""

from __future__ import annotations

import os
import re

KMSG = "/dev/kmsg"
# One kmsg record's first line: its prefix, the fixed fields up to ses=, then (after an LSM's
# subj=, which may hold spaces) pid=, and the fixed tail, anchored at the end: comm= and exe=
# between them are the container's to choose, but the kernel writes one with a space, a quote
# or a control character in hex, so no field can be forged from there.
RECORD = re.compile(
    rb"\A\d+,\d+,\d+,[^;]*;audit: type=1326 audit\([\d.]+:\d+\): auid=\d+ uid=\d+ gid=\d+ ses=(\d+) "
    rb"(?:subj=.*? )?pid=(\d+) comm=\S+ exe=\S+ sig=\d+ arch=([0-9a-f]+) syscall=(\d+) compat=\d+ "
    rb"ip=0x[0-9a-f]+ code=0x([0-9a-f]+)\Z"
)
UNSET = 0xFFFFFFFF  # an audit login uid or session never set
MAX_RECORD = 8192  # /dev/kmsg hands out one record per read, of at most this much


class KernelLog:
    """/dev/kmsg, opened at its end before the container starts: what comes after is read."""

    def __init__(self) -> None:
        self.fd = os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(self.fd, 0, os.SEEK_END)

    def records(self) -> list[tuple[int, int, int, int, int]]:
        """The seccomp records written since the last call: (session, pid, arch, syscall, action)."""
        found: list[tuple[int, int, int, int, int]] = []
        while True:
            try:
                record = os.read(self.fd, MAX_RECORD)
            except BlockingIOError:
                return found
            except OSError:  # EPIPE: records were overwritten before they were read; go on
                continue
            if not record:
                return found
            match = RECORD.match(record.split(b"\n", 1)[0])
            if match:
                session, pid, arch, syscall, code = match.groups()
                found.append((int(session), int(pid), int(arch, 16), int(syscall), int(code, 16)))

    def close(self) -> None:
        os.close(self.fd)


def readable() -> bool:
    """Whether this process may read the kernel's log (root, or CAP_SYSLOG) and audit records
    go there: the kernel has audit, and no audit daemon has them (it would take them from
    the log, and every denial of a container would fill the host's audit trail)."""
    try:
        os.close(os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except OSError:
        return False
    return _audit_daemon() == 0


AUDIT_GET, NETLINK_AUDIT, NLM_F_REQUEST = 1000, 9, 1


def _audit_daemon() -> int:
    """The pid of the audit daemon the kernel sends records to (0: none, they go to the log;
    -1: the kernel has no audit, or will not say)."""
    import socket
    import struct

    try:
        channel = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
    except OSError:
        return -1
    with channel:
        channel.settimeout(1.0)
        try:
            channel.send(struct.pack("=IHHII", 16, AUDIT_GET, NLM_F_REQUEST, 1, 0))
            reply = channel.recv(8192)
        except OSError:
            return -1
    if len(reply) < 32 or struct.unpack_from("=H", reply, 4)[0] != AUDIT_GET:
        return -1
    # struct audit_status after the 16-byte header: mask, enabled, failure, pid, ...
    return int(struct.unpack_from("=I", reply, 16 + 12)[0])


def new_session() -> None:
    """Give this process (the container's setup, still root on the host) an audit session of
    its own, which everything it starts inherits: writing the login uid (the one it has, or
    root's where none is set) starts a new one. The records of the container's processes then
    carry it, alive or gone by the time they are read. Where the kernel refuses, nothing
    changes (the monitor tells by the session it reads, and checks pid namespaces instead)."""
    try:
        with open("/proc/self/loginuid") as current:
            uid = int(current.read())
        with open("/proc/self/loginuid", "w") as login:
            login.write(str(uid if uid != UNSET else os.getuid()))
    except (OSError, ValueError):
        pass


def session_of(pid: int) -> int:
    """The audit session of process `pid`, or -1."""
    try:
        with open(f"/proc/{pid}/sessionid") as session:
            return int(session.read())
    except (OSError, ValueError):
        return -1


def in_namespace_of(pid: int, init: int) -> bool:
    """Whether process `pid` is in the pid namespace of process `init` (the container's)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return False
