"""Load a compiled seccomp filter into the calling thread: the last step before execve.

This is the warm path of `pysandbox run`, so it imports no libseccomp binding: the
program was compiled earlier with libseccomp (policies/seccomp.py, on the cold path) and
cached in the plan as bytes. The filter applies to the calling thread and everything it
starts or execs from now on; the sandbox init is single-threaded at this point, and loads it
as close to execve as possible so that the init's own work is not filtered.
"""

from __future__ import annotations

import errno
import sys

from pysbx.sandbox.linux import address, call

TYPE_CHECKING = False
if TYPE_CHECKING:  # `run`'s warm start imports this module: typing costs it 3 ms
    from collections.abc import Iterable

PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1
BPF_MAXINSNS = 4096
_INSTRUCTION_BYTES = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
_POINTER_BYTES = 8 if sys.maxsize > 2**32 else 4

# seccomp(2) flags by the names profiles use for them (linux/seccomp.h).
FILTER_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8


def load_bpf(bpf: bytes, *, has_cap_sys_admin: bool = False, flags: Iterable[str] = (), listener: bool = False) -> int:
    """Install `bpf` (libseccomp's export_bpf output) as a seccomp filter.

    The kernel accepts a filter from a process without CAP_SYS_ADMIN only once
    no_new_privs is set, so it is set here unless the caller says it holds CAP_SYS_ADMIN
    (a policy may want setuid programs to keep working then). `flags` are seccomp(2)
    filter flags by name, such as SECCOMP_FILTER_FLAG_LOG. With `listener` (run --explain),
    the filter gets a notification listener, whose descriptor (close-on-exec) is returned:
    a program that notifies (bpfeval.notify_variant) waits on it. Otherwise returns -1.
    Raises OSError with a message that names the step that failed."""
    count, remainder = divmod(len(bpf), _INSTRUCTION_BYTES)
    if remainder or not 0 < count <= BPF_MAXINSNS:
        raise OSError(
            errno.EINVAL,
            f"not a seccomp BPF program: {len(bpf)} bytes, expected 1 to {BPF_MAXINSNS} "
            f"instructions of {_INSTRUCTION_BYTES} bytes",
        )
    mask = 0
    for name in flags:
        if name not in FILTER_FLAGS:
            raise OSError(errno.EINVAL, f"unknown seccomp filter flag {name!r}")
        mask |= FILTER_FLAGS[name]
    if listener:  # a killable wait: a container killed while its call waits is not stuck
        mask |= SECCOMP_FILTER_FLAG_NEW_LISTENER | FILTER_FLAGS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    if not has_cap_sys_admin:
        what = "cannot set no_new_privs, which loading a seccomp filter without CAP_SYS_ADMIN needs"
        call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, what=what, hints=_HINTS)
    program = bytes(bpf)  # alive until the kernel has copied it
    # struct sock_fprog: unsigned short len, (padding), struct sock_filter *filter
    fprog = count.to_bytes(2, sys.byteorder) + bytes(_POINTER_BYTES - 2)
    fprog += address(program).to_bytes(_POINTER_BYTES, sys.byteorder)
    refused = "the kernel refused the seccomp filter"
    if listener:
        return _load_with_listener(mask, fprog)
    if mask:
        result = call("seccomp", SECCOMP_SET_MODE_FILTER, mask, fprog, what=refused, hints=_HINTS)
    else:
        result = call("prctl", PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, 0, 0, what=refused, hints=_HINTS)
    if result > 0:  # TSYNC answers with the id of a thread it could not synchronise
        raise OSError(errno.ESRCH, f"the seccomp filter could not be applied to thread {result} of this process")
    return -1


def _load_with_listener(mask: int, fprog: bytes) -> int:
    """The filter with a listener; a kernel before 5.19 knows no killable wait: without it,
    a signal interrupts a waiting call (EINTR) instead of waiting on."""
    refused = "the kernel refused the seccomp filter with a notification listener"
    killable = FILTER_FLAGS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    try:
        return call("seccomp", SECCOMP_SET_MODE_FILTER, mask, fprog, what=refused, hints=_HINTS)
    except OSError as error:
        if error.errno != errno.EINVAL or not mask & killable:
            raise
    return call("seccomp", SECCOMP_SET_MODE_FILTER, mask & ~killable, fprog, what=refused, hints=_HINTS)


_HINTS = {
    errno.EACCES: "without no_new_privs the kernel requires CAP_SYS_ADMIN",
    errno.EINVAL: "the kernel has no seccomp filter support, or rejected the program or a flag",
    errno.EFAULT: "the program could not be read",
    errno.ENOMEM: "the filters of this process exceed the kernel's limit",
}
