"""Compiling a profile to BPF with libseccomp, as runc does: a rule whose action equals the
default action is left out (libseccomp refuses it), an ERRNO or TRACE rule without
`errnoRet` returns EPERM, and argument conditions on distinct arguments must all hold while
several conditions on the same argument are alternatives. The only module that imports the
binding (inside functions: 40 ms the warm path of `pysandbox run` never pays)."""

from __future__ import annotations

import errno as errno_codes
import functools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any

from pysbx.policies.seccomp.profile import (
    _ERRNO_ACTIONS,
    _NR_SCMP_ERROR,
    _SYSCALL_NAME,
    ACTIONS,
    OPERATORS,
    KernelVersion,
    Profile,
    SeccompProfileError,
)
from pysbx.policies.seccomp.resolve import _resolve_indexed, resolve_architectures, with_overrides

# ----- compiling with libseccomp ------------------------------------------------------------
#
# The binding is `pyseccomp` (PyPI): pure ctypes over the system's libseccomp and
# API-compatible with libseccomp's official `seccomp` module. The official module cannot
# serve here: its PyPI wheels exist only for Python 3.12 and later, and Debian's
# python3-seccomp is built for Debian's own interpreter, not for our 3.11 virtualenv.
# It is imported inside functions: the import costs about 40 ms, which the warm path of
# `pysandbox run` never pays (it loads cached BPF bytes with sandbox/seccomp.py).


@dataclass(frozen=True)
class Compiled:
    """A BPF program for prctl(PR_SET_SECCOMP) / seccomp(2), with what a person should know
    about how it was built (names this libseccomp does not know, architectures left out),
    and the profile's filter flags for whoever loads it."""

    bpf: bytes
    notes: list[str]
    flags: tuple[str, ...] = ()

    @property
    def instructions(self) -> int:
        return len(self.bpf) // 8


@functools.cache
def libseccomp_version() -> str:
    """The version of the libseccomp that compiles filters here, such as "2.5.4"."""
    import ctypes
    import ctypes.util

    class Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    try:
        library = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        library = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so")
    library.seccomp_version.restype = ctypes.POINTER(Version)
    version = library.seccomp_version().contents
    return f"{version.major}.{version.minor}.{version.micro}"


@functools.cache
def _native_number(name: str) -> int | None:
    """libseccomp's number for `name` on this machine (negative for a call that exists only
    on other architectures), or None when libseccomp does not know the name."""
    if not _SYSCALL_NAME.fullmatch(name):
        return None
    import pyseccomp

    number = int(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name))
    return None if number == _NR_SCMP_ERROR else number


def syscall_known(name: str) -> bool:
    """Whether libseccomp knows this system call name on any architecture."""
    return _native_number(name) is not None


def syscall_number(name: str) -> int | None:
    """The system call's number on this machine, or None when it has none here."""
    number = _native_number(name)
    return number if number is not None and number >= 0 else None


def _action_value(action: str, errno_value: int | None, source: str, where: str) -> int:
    if action == "SCMP_ACT_NOTIFY":
        raise SeccompProfileError(
            f"{source}: {where}: SCMP_ACT_NOTIFY needs a seccomp agent on listenerPath, which pysandbox does not run"
        )
    if action in _ERRNO_ACTIONS:
        return ACTIONS[action] | (errno_codes.EPERM if errno_value is None else errno_value)
    return ACTIONS[action]


def _build_filter(
    profile: Profile,
    capabilities: frozenset[str],
    deny: Iterable[str],
    allow: Iterable[str],
    version: KernelVersion | str | None,
) -> tuple[Any, list[str]]:
    import pyseccomp

    deny, allow = tuple(deny), tuple(allow)
    overridden = with_overrides(profile, deny, allow)
    for option, names in (("deny", deny), ("allow", allow)):
        for name in names:
            if not syscall_known(name):
                raise SeccompProfileError(
                    f"sandbox.seccomp.{option}: {name!r} is not a system call that libseccomp "
                    f"{libseccomp_version()} knows"
                )
    profile = overridden
    notes: list[str] = []
    default = _action_value(profile.default_action, profile.default_errno_value, profile.source, "defaultAction")
    syscall_filter = pyseccomp.SyscallFilter(default)

    native = pyseccomp.system_arch()
    for name in resolve_architectures(profile):
        token = getattr(pyseccomp.Arch, name.removeprefix("SCMP_ARCH_"), None)
        if token is None:
            notes.append(f"{name}: this libseccomp binding cannot filter it, so it is left out")
            continue
        if token == native or syscall_filter.exist_arch(token):
            continue
        try:
            syscall_filter.add_arch(token)
        except OSError as error:
            raise SeccompProfileError(
                f"{profile.source}: libseccomp refused architecture {name}: {error.strerror}"
            ) from None

    unknown: dict[str, None] = {}
    for index, rule in _resolve_indexed(profile, capabilities, None, version):
        action = _action_value(rule.action, rule.errno_value, profile.source, f"syscalls[{index}]")
        if action == default:
            continue
        conditions = [pyseccomp.Arg(a.index, OPERATORS[a.op], a.value, a.value_two) for a in rule.args]
        indices = [a.index for a in rule.args]
        # runc's reading: conditions on distinct arguments must all hold; several on one
        # argument (which libseccomp cannot put in one rule) are alternatives.
        groups = [conditions] if len(set(indices)) == len(indices) else [[c] for c in conditions]
        for name in rule.names:
            number = _native_number(name)
            if number is None:
                unknown[name] = None
                continue
            for group in groups:
                try:
                    syscall_filter.add_rule(action, number, *group)
                except OSError as error:
                    raise SeccompProfileError(
                        f"{profile.source}: syscalls[{index}]: libseccomp refused the rule for {name!r}: "
                        f"{error.strerror}"
                    ) from None
    if unknown:
        notes.append(
            f"libseccomp {libseccomp_version()} does not know {len(unknown)} system call"
            f"{'s' if len(unknown) != 1 else ''} the profile names, so the default action applies to "
            f"{'them' if len(unknown) != 1 else 'it'}: {', '.join(sorted(unknown))}"
        )
    return syscall_filter, notes


def _export(write: Callable[[IO[bytes]], None]) -> bytes:
    """What libseccomp writes to a file descriptor, read back: a memfd, so no disk, and no
    pipe that a large program could fill before anyone reads it."""
    with os.fdopen(os.memfd_create("pysandbox-seccomp", os.MFD_CLOEXEC), "w+b") as file:
        write(file)
        file.seek(0)
        return file.read()


def compile_bpf(
    profile: Profile,
    capabilities: frozenset[str] = frozenset(),
    deny: Iterable[str] = (),
    allow: Iterable[str] = (),
    *,
    kernel_version: KernelVersion | str | None = None,
) -> Compiled:
    """The profile, resolved for `capabilities` on this machine's architecture and kernel
    and with the policy's deny/allow applied, as a BPF program. Names this libseccomp does
    not know are skipped with a note, except in `deny`/`allow`, where they are an error."""
    syscall_filter, notes = _build_filter(profile, frozenset(capabilities), deny, allow, kernel_version)
    return Compiled(_export(syscall_filter.export_bpf), notes, profile.flags)


def compile_pfc(
    profile: Profile,
    capabilities: frozenset[str] = frozenset(),
    deny: Iterable[str] = (),
    allow: Iterable[str] = (),
    *,
    kernel_version: KernelVersion | str | None = None,
) -> str:
    """The same filter as compile_bpf, as libseccomp's readable pseudo filter code, with the
    notes as leading comment lines."""
    syscall_filter, notes = _build_filter(profile, frozenset(capabilities), deny, allow, kernel_version)
    code = _export(syscall_filter.export_pfc).decode()
    return "".join(f"# note: {note}\n" for note in notes) + code
