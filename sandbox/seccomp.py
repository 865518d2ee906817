"""Load a compiled seccomp filter into the calling thread: the last step before execve.

This is the warm path of `pysandbox run`, so it imports only the standard library: the
program was compiled earlier with libseccomp (policies/seccomp.py, on the cold path) and
cached in the plan as bytes. The filter applies to the calling thread and everything it
starts or execs from now on; the sandbox init is single-threaded at this point, and loads it
as close to execve as possible so that the init's own work is not filtered.
"""

from __future__ import annotations

import ctypes
import errno
import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # `run`'s warm start imports this module: typing costs it 3 ms
    from collections.abc import Iterable
    from typing import NoReturn

PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2
SECCOMP_SET_MODE_FILTER = 1
BPF_MAXINSNS = 4096
_INSTRUCTION_BYTES = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k

# seccomp(2) flags by the names profiles use for them (linux/seccomp.h).
FILTER_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}
# The seccomp(2) system call's number; needed only when flags are asked for, since
# prctl(PR_SET_SECCOMP) takes no flags.
_SECCOMP_SYSCALL = {
    "x86_64": 317,
    "aarch64": 277,
    "riscv64": 277,
    "loongarch64": 277,
    "i386": 354,
    "i686": 354,
    "armv7l": 383,
    "armv6l": 383,
    "ppc64le": 358,
    "ppc64": 358,
    "s390x": 348,
}


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_bpf(bpf: bytes, *, has_cap_sys_admin: bool = False, flags: Iterable[str] = ()) -> None:
    """Install `bpf` (libseccomp's export_bpf output) as a seccomp filter.

    The kernel accepts a filter from a process without CAP_SYS_ADMIN only once
    no_new_privs is set, so it is set here unless the caller says it holds CAP_SYS_ADMIN
    (a policy may want setuid programs to keep working then). `flags` are seccomp(2)
    filter flags by name, such as SECCOMP_FILTER_FLAG_LOG. Raises OSError with a message
    that names the step that failed."""
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
    libc = ctypes.CDLL(None, use_errno=True)
    if not has_cap_sys_admin and libc.prctl(_ulong(PR_SET_NO_NEW_PRIVS), _ulong(1), _ulong(0), _ulong(0), _ulong(0)):
        _fail("cannot set no_new_privs, which loading a seccomp filter without CAP_SYS_ADMIN needs")
    program = ctypes.create_string_buffer(bpf, len(bpf))
    fprog = _SockFprog(count, ctypes.addressof(program))
    if mask:
        number = _SECCOMP_SYSCALL.get(os.uname().machine)
        if number is None:
            raise OSError(errno.ENOSYS, f"seccomp filter flags are not supported on {os.uname().machine}")
        result = libc.syscall(ctypes.c_long(number), _ulong(SECCOMP_SET_MODE_FILTER), _ulong(mask), ctypes.byref(fprog))
    else:
        result = libc.prctl(
            _ulong(PR_SET_SECCOMP), _ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog), _ulong(0), _ulong(0)
        )
    if result > 0:  # TSYNC answers with the id of a thread it could not synchronise
        raise OSError(errno.ESRCH, f"the seccomp filter could not be applied to thread {result} of this process")
    if result:
        _fail("the kernel refused the seccomp filter")


def _ulong(value: int) -> ctypes.c_ulong:
    """prctl and syscall are variadic: every argument must be passed at full register width."""
    return ctypes.c_ulong(value)


_HINTS = {
    errno.EACCES: "without no_new_privs the kernel requires CAP_SYS_ADMIN",
    errno.EINVAL: "the kernel has no seccomp filter support, or rejected the program or a flag",
    errno.EFAULT: "the program could not be read",
    errno.ENOMEM: "the filters of this process exceed the kernel's limit",
}


def _fail(what: str) -> NoReturn:
    number = ctypes.get_errno()
    hint = _HINTS.get(number)
    detail = os.strerror(number) + (f"; {hint}" if hint else "")
    raise OSError(number, f"{what}: {detail}")
