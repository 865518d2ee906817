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
RECORD = re.compile(
    rb"audit: type=1326 .*?\bses=(\d+) .*?\bpid=(\d+) .*?\barch=([0-9a-f]+) syscall=(\d+) .*?\bcode=0x([0-9a-f]+)"
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
            match = RECORD.search(record)
            if match:
                session, pid, arch, syscall, code = match.groups()
                found.append((int(session), int(pid), int(arch, 16), int(syscall), int(code, 16)))

    def close(self) -> None:
        os.close(self.fd)


def readable() -> bool:
    """Whether this process may read the kernel's log (root, or CAP_SYSLOG)."""
    try:
        os.close(os.open(KMSG, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except OSError:
        return False
    return True


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
