"""Seccomp profiles in the Docker/OCI JSON format: the model (a Profile of SyscallRules with
ArgConditions, Filter flags, architecture maps), the vocabulary (actions, operators,
architectures, filter flags) and the one error type."""

from __future__ import annotations

import errno as errno_codes
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

BUILTIN_PROFILES: Final = ("default", "strict")
PROFILE_DIR: Final = Path(__file__).resolve().parent  # the built-in profiles lie beside this module
MAX_PROFILE_BYTES: Final = 4 * 2**20

# The kernel's SECCOMP_RET_* values (linux/seccomp.h); libseccomp's actions are the same numbers.
ACTIONS: Final[Mapping[str, int]] = {
    "SCMP_ACT_KILL": 0x00000000,  # Docker and runc read the old name as "kill the thread"
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
_ERRNO_ACTIONS: Final = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})
MAX_ERRNO: Final = 4095  # the kernel returns at most -4095 from a system call

# libseccomp's enum scmp_compare.
OPERATORS: Final[Mapping[str, int]] = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
MAX_ARGS: Final = 6

ARCHITECTURES: Final = frozenset(
    "SCMP_ARCH_" + name
    for name in (
        "X86 X86_64 X32 ARM AARCH64 MIPS MIPS64 MIPS64N32 MIPSEL MIPSEL64 MIPSEL64N32 PPC PPC64 "
        "PPC64LE S390 S390X PARISC PARISC64 RISCV64 LOONGARCH64 M68K SH SHEB"
    ).split()
)

# Flags passed to seccomp(SECCOMP_SET_MODE_FILTER) when the filter is loaded.
FILTER_FLAGS: Final = frozenset(
    {
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    }
)

# includes/excludes name architectures as Go's GOARCH does (Docker compares them with it).
GO_TO_SCMP_ARCH: Final[Mapping[str, str]] = {
    "amd64": "SCMP_ARCH_X86_64",
    "386": "SCMP_ARCH_X86",
    "x32": "SCMP_ARCH_X32",
    "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64",
    "mips": "SCMP_ARCH_MIPS",
    "mipsle": "SCMP_ARCH_MIPSEL",
    "mips64": "SCMP_ARCH_MIPS64",
    "mips64le": "SCMP_ARCH_MIPSEL64",
    "mips64n32": "SCMP_ARCH_MIPS64N32",
    "mips64len32": "SCMP_ARCH_MIPSEL64N32",
    "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "s390": "SCMP_ARCH_S390",
    "s390x": "SCMP_ARCH_S390X",
    "riscv64": "SCMP_ARCH_RISCV64",
    "loong64": "SCMP_ARCH_LOONGARCH64",
}
# Docker's own profile writes "x86" where GOARCH says "386"; both mean 32-bit x86.
_GO_ARCHES: Final = frozenset({*GO_TO_SCMP_ARCH, "x86"})
_MACHINE_TO_GO: Final[Mapping[str, str]] = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "i386": "386",
    "i686": "386",
    "x86": "386",
    "armv7l": "arm",
    "armv6l": "arm",
    "loongarch64": "loong64",
}

_SYSCALL_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_KERNEL_VERSION = re.compile(r"(\d+)\.(\d+)")
_NR_SCMP_ERROR = -1  # what libseccomp answers for a name it does not know

KernelVersion = tuple[int, int]


class SeccompProfileError(ValueError):
    """A profile that does not load or compile: one sentence naming the file and the JSON
    location, such as `profile.json: syscalls[3].args[0].op: unknown operator 'SCMP_CMP_FOO'`."""


def _errno_value(number: int | None, name: str | None) -> int | None:
    if number is not None:
        return number
    if name is not None:
        return int(getattr(errno_codes, name))
    return None


# ----- the format --------------------------------------------------------------------------


@dataclass(frozen=True)
class ArgCondition:
    """A comparison on one system call argument. For SCMP_CMP_MASKED_EQ, `value` is the
    mask and `value_two` the value the masked argument must equal."""

    index: int
    value: int
    op: str
    value_two: int = 0

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {"index": self.index, "value": self.value}
        if self.value_two:
            document["valueTwo"] = self.value_two
        document["op"] = self.op
        return document


@dataclass(frozen=True)
class Filter:
    """A rule's `includes` or `excludes`: capabilities, architectures (GOARCH names) and a
    minimum kernel version ("4.8")."""

    caps: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()
    min_kernel: str | None = None

    def is_empty(self) -> bool:
        return not self.caps and not self.arches and self.min_kernel is None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        if self.caps:
            document["caps"] = list(self.caps)
        if self.arches:
            document["arches"] = list(self.arches)
        if self.min_kernel is not None:
            document["minKernel"] = self.min_kernel
        return document


@dataclass(frozen=True)
class SyscallRule:
    """One entry of `syscalls`: what happens to the named system calls, under which
    argument conditions, and when the rule applies at all (`includes`/`excludes`)."""

    names: tuple[str, ...]
    action: str
    errno_ret: int | None = None
    errno: str | None = None  # containers/common writes the errno's name beside errnoRet
    args: tuple[ArgCondition, ...] = ()
    comment: str = ""
    includes: Filter = field(default_factory=Filter)
    excludes: Filter = field(default_factory=Filter)

    @property
    def errno_value(self) -> int | None:
        """The errno this rule returns as written, or None (compiled as EPERM)."""
        return _errno_value(self.errno_ret, self.errno)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        if self.comment:
            document["comment"] = self.comment
        document["names"] = list(self.names)
        document["action"] = self.action
        if self.errno_ret is not None:
            document["errnoRet"] = self.errno_ret
        if self.errno is not None:
            document["errno"] = self.errno
        if self.args:
            document["args"] = [arg.to_json() for arg in self.args]
        if not self.includes.is_empty():
            document["includes"] = self.includes.to_json()
        if not self.excludes.is_empty():
            document["excludes"] = self.excludes.to_json()
        return document


@dataclass(frozen=True)
class ArchMapEntry:
    """A native architecture and the others its processes may also call the kernel as
    (x86_64 programs can make 32-bit x86 and x32 system calls)."""

    architecture: str
    sub_architectures: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "subArchitectures": list(self.sub_architectures)}


@dataclass(frozen=True)
class Profile:
    """A seccomp profile as Docker reads it; `source` names the file in error messages."""

    default_action: str
    default_errno_ret: int | None = None
    default_errno: str | None = None
    architectures: tuple[str, ...] = ()
    arch_map: tuple[ArchMapEntry, ...] = ()
    syscalls: tuple[SyscallRule, ...] = ()
    flags: tuple[str, ...] = ()
    listener_path: str | None = None
    listener_metadata: str | None = None
    comment: str = ""
    source: str = field(default="<profile>", compare=False, repr=False)

    @property
    def default_errno_value(self) -> int | None:
        return _errno_value(self.default_errno_ret, self.default_errno)

    @classmethod
    def from_json(cls, document: object, source: str = "<profile>") -> Profile:
        """Check and convert a parsed JSON document; raises SeccompProfileError."""
        from pysbx.policies.seccomp.reader import _Reader  # the reader builds on this model

        return _Reader(source).profile(document)

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {}
        if self.comment:
            document["comment"] = self.comment
        document["defaultAction"] = self.default_action
        if self.default_errno_ret is not None:
            document["defaultErrnoRet"] = self.default_errno_ret
        if self.default_errno is not None:
            document["defaultErrno"] = self.default_errno
        if self.architectures:
            document["architectures"] = list(self.architectures)
        if self.arch_map:
            document["archMap"] = [entry.to_json() for entry in self.arch_map]
        if self.flags:
            document["flags"] = list(self.flags)
        if self.listener_path is not None:
            document["listenerPath"] = self.listener_path
        if self.listener_metadata is not None:
            document["listenerMetadata"] = self.listener_metadata
        document["syscalls"] = [rule.to_json() for rule in self.syscalls]
        return document
