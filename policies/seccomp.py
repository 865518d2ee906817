"""Seccomp profiles in the Docker/OCI JSON format: read, check, resolve, override, compile.

One profile file serves three consumers. `pysandbox run` compiles it to a BPF program with
libseccomp on the cold path and caches the bytes in the plan (the warm path only loads
them, see sandbox/seccomp.py); `policy export` writes it back for Docker unchanged, and
resolved for OCI runtimes, which know no includes/excludes.

Resolution follows Docker (moby's profiles/seccomp): a rule's `excludes` drops it when the
architecture is listed, when *any* listed capability is held, or when the kernel is at
least `minKernel`; its `includes` keeps it only when the architecture is listed, *every*
listed capability is held and the kernel is at least `minKernel`. Compilation follows runc:
a rule whose action equals the default action is left out (libseccomp refuses it), an
ERRNO or TRACE rule without `errnoRet` returns EPERM, and argument conditions on distinct
arguments must all hold while several conditions on the same argument are alternatives.
"""

from __future__ import annotations

import errno as errno_codes
import functools
import json
import os
import platform
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Final, NoReturn

from policies.model import LINUX_CAPABILITIES
from policies.values import suggest

BUILTIN_PROFILES: Final = ("default", "strict")
PROFILE_DIR: Final = Path(__file__).resolve().parent / "seccomp"
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


def _errno_value(number: int | None, name: str | None) -> int | None:
    if number is not None:
        return number
    if name is not None:
        return int(getattr(errno_codes, name))
    return None


class _Reader:
    """Turns a parsed JSON document into a Profile, or raises at the first problem with
    its JSON location."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> NoReturn:
        raise SeccompProfileError(f"{self.source}: {where}: {message}" if where else f"{self.source}: {message}")

    def fields(self, value: object, where: str, known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"expected a JSON object, got {_json_type(value)}")
        for key in value:
            if key not in known:
                hint = suggest(key, known) or f" (expected one of {', '.join(known)})"
                self.fail(where, f"unknown field {key!r}{hint}")
        return value

    def string(self, value: object, where: str) -> str:
        if not isinstance(value, str):
            self.fail(where, f"expected a string, got {_json_type(value)}")
        return value

    def integer(self, value: object, where: str, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"expected a whole number, got {_json_type(value)}")
        if not 0 <= value <= high:
            self.fail(where, f"{value} is out of range (0 to {high})")
        return value

    def strings(self, value: object, where: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(where, f"expected a list of strings, got {_json_type(value)}")
        return tuple(self.string(item, f"{where}[{i}]") for i, item in enumerate(value))

    def choice(self, value: object, where: str, what: str, choices: Iterable[str], *, list_all: bool = False) -> str:
        """One of `choices`; a miss is answered with the likely intended one, or with all of
        them where they are few and share a prefix that makes guessing useless."""
        text = self.string(value, where)
        options = sorted(choices)
        if text not in options:
            everything = f" (expected one of {', '.join(options)})"
            hint = everything if list_all else suggest(text, options) or everything
            self.fail(where, f"unknown {what} {text!r}{hint}")
        return text

    def errno_name(self, value: object, where: str) -> str | None:
        if value is None:
            return None
        text = self.string(value, where)
        if text not in errno_codes.errorcode.values():
            self.fail(where, f"{text!r} is not an errno name such as EPERM or ENOSYS")
        return text

    def profile(self, document: object) -> Profile:
        known = (
            "comment",
            "defaultAction",
            "defaultErrnoRet",
            "defaultErrno",
            "architectures",
            "archMap",
            "flags",
            "listenerPath",
            "listenerMetadata",
            "syscalls",
        )
        raw = self.fields(document, "", known)
        if "defaultAction" not in raw:
            self.fail("", "missing 'defaultAction', the action for system calls no rule names")
        action = self.choice(raw["defaultAction"], "defaultAction", "action", ACTIONS, list_all=True)
        errno_ret = (
            self.integer(raw["defaultErrnoRet"], "defaultErrnoRet", MAX_ERRNO)
            if raw.get("defaultErrnoRet") is not None
            else None
        )
        errno_name = self.errno_name(raw.get("defaultErrno"), "defaultErrno")
        self.check_errno(action, errno_ret, errno_name, "", "defaultErrnoRet", "defaultErrno")
        architectures = self.strings(raw.get("architectures"), "architectures")
        for i, name in enumerate(architectures):
            self.choice(name, f"architectures[{i}]", "architecture", ARCHITECTURES)
        arch_map = self.arch_map(raw.get("archMap"))
        if architectures and arch_map:
            self.fail("", "both 'architectures' and 'archMap' are given; Docker accepts only one of them")
        flags = self.strings(raw.get("flags"), "flags")
        for i, flag in enumerate(flags):
            self.choice(flag, f"flags[{i}]", "filter flag", FILTER_FLAGS)
        rules = raw.get("syscalls")
        if rules is None:
            rules = []
        if not isinstance(rules, list):
            self.fail("syscalls", f"expected a list of rules, got {_json_type(rules)}")
        return Profile(
            default_action=action,
            default_errno_ret=errno_ret,
            default_errno=errno_name,
            architectures=architectures,
            arch_map=arch_map,
            syscalls=tuple(self.rule(rule, f"syscalls[{i}]") for i, rule in enumerate(rules)),
            flags=flags,
            listener_path=self.optional_string(raw.get("listenerPath"), "listenerPath"),
            listener_metadata=self.optional_string(raw.get("listenerMetadata"), "listenerMetadata"),
            comment=self.optional_string(raw.get("comment"), "comment") or "",
            source=self.source,
        )

    def optional_string(self, value: object, where: str) -> str | None:
        return None if value is None else self.string(value, where)

    def check_errno(
        self, action: str, number: int | None, name: str | None, where: str, number_key: str, name_key: str
    ) -> None:
        if (number is not None or name is not None) and action not in _ERRNO_ACTIONS:
            key = number_key if number is not None else name_key
            self.fail(_join(where, key), f"only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno, not {action}")
        if number is not None and name is not None and getattr(errno_codes, name) != number:
            self.fail(_join(where, name_key), f"{name} is {getattr(errno_codes, name)}, but {number_key} says {number}")

    def arch_map(self, value: object) -> tuple[ArchMapEntry, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail("archMap", f"expected a list, got {_json_type(value)}")
        entries = []
        for i, item in enumerate(value):
            where = f"archMap[{i}]"
            raw = self.fields(item, where, ("architecture", "subArchitectures"))
            if "architecture" not in raw:
                self.fail(where, "missing 'architecture'")
            architecture = self.choice(raw["architecture"], f"{where}.architecture", "architecture", ARCHITECTURES)
            subs = self.strings(raw.get("subArchitectures"), f"{where}.subArchitectures")
            for j, sub in enumerate(subs):
                self.choice(sub, f"{where}.subArchitectures[{j}]", "architecture", ARCHITECTURES)
            entries.append(ArchMapEntry(architecture, subs))
        return tuple(entries)

    def rule(self, value: object, where: str) -> SyscallRule:
        known = ("comment", "names", "name", "action", "errnoRet", "errno", "args", "includes", "excludes")
        raw = self.fields(value, where, known)
        if "name" in raw and raw.get("names"):
            self.fail(where, "both 'name' and 'names' are given; use 'names'")
        if "name" in raw:
            names: tuple[str, ...] = (self.string(raw["name"], f"{where}.name"),)
            names_where = f"{where}.name"
        else:
            if "names" not in raw:
                self.fail(where, "missing 'names', the system calls the rule is about")
            names = self.strings(raw["names"], f"{where}.names")
            names_where = f"{where}.names"
            if not names:
                self.fail(names_where, "empty; a rule needs at least one system call name")
        for i, name in enumerate(names):
            if not _SYSCALL_NAME.fullmatch(name):
                at = names_where if "name" in raw else f"{names_where}[{i}]"
                self.fail(at, f"{name!r} is not a system call name")
        if "action" not in raw:
            self.fail(where, "missing 'action'")
        action = self.choice(raw["action"], f"{where}.action", "action", ACTIONS, list_all=True)
        errno_ret = (
            self.integer(raw["errnoRet"], f"{where}.errnoRet", MAX_ERRNO) if raw.get("errnoRet") is not None else None
        )
        errno_name = self.errno_name(raw.get("errno"), f"{where}.errno")
        self.check_errno(action, errno_ret, errno_name, where, "errnoRet", "errno")
        args = raw.get("args")
        if args is None:
            args = []
        if not isinstance(args, list):
            self.fail(f"{where}.args", f"expected a list, got {_json_type(args)}")
        if len(args) > MAX_ARGS:
            self.fail(f"{where}.args", f"{len(args)} conditions, but a system call has at most {MAX_ARGS} arguments")
        return SyscallRule(
            names=names,
            action=action,
            errno_ret=errno_ret,
            errno=errno_name,
            args=tuple(self.arg(arg, f"{where}.args[{i}]") for i, arg in enumerate(args)),
            comment=self.optional_string(raw.get("comment"), f"{where}.comment") or "",
            includes=self.filter(raw.get("includes"), f"{where}.includes"),
            excludes=self.filter(raw.get("excludes"), f"{where}.excludes"),
        )

    def arg(self, value: object, where: str) -> ArgCondition:
        raw = self.fields(value, where, ("index", "value", "valueTwo", "op"))
        for key in ("index", "value", "op"):
            if key not in raw:
                self.fail(where, f"missing {key!r}")
        return ArgCondition(
            index=self.integer(raw["index"], f"{where}.index", MAX_ARGS - 1),
            value=self.integer(raw["value"], f"{where}.value", 2**64 - 1),
            value_two=self.integer(raw.get("valueTwo", 0), f"{where}.valueTwo", 2**64 - 1),
            op=self.choice(raw["op"], f"{where}.op", "operator", OPERATORS, list_all=True),
        )

    def filter(self, value: object, where: str) -> Filter:
        if value is None:
            return Filter()
        raw = self.fields(value, where, ("caps", "arches", "minKernel"))
        caps = self.strings(raw.get("caps"), f"{where}.caps")
        for i, cap in enumerate(caps):
            if cap not in LINUX_CAPABILITIES:
                bare = cap.upper().removeprefix("CAP_")
                hint = f" (write it as CAP_{bare})" if f"CAP_{bare}" in LINUX_CAPABILITIES else ""
                hint = hint or suggest(cap, sorted(LINUX_CAPABILITIES))
                self.fail(f"{where}.caps[{i}]", f"{cap!r} is not a Linux capability{hint}")
        arches = self.strings(raw.get("arches"), f"{where}.arches")
        for i, arch in enumerate(arches):
            if arch not in _GO_ARCHES and arch in _MACHINE_TO_GO:
                self.fail(
                    f"{where}.arches[{i}]", f"write Go's name {_MACHINE_TO_GO[arch]!r} for {arch!r}, as Docker does"
                )
            self.choice(arch, f"{where}.arches[{i}]", "architecture", _GO_ARCHES)
        min_kernel = None
        if raw.get("minKernel") is not None:
            min_kernel = self.string(raw["minKernel"], f"{where}.minKernel")
            if not _KERNEL_VERSION.fullmatch(min_kernel):
                self.fail(f"{where}.minKernel", f'expected a kernel version such as "4.8", got {min_kernel!r}')
        return Filter(caps, arches, min_kernel)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    return "an object"


# ----- loading ------------------------------------------------------------------------------


def parse_profile(text: str | bytes, source: str = "<profile>") -> Profile:
    """A profile from JSON text; duplicate keys are refused (Go would keep the last silently)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        document = dict(pairs)
        if len(document) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise SeccompProfileError(f"{source}: the key {key!r} appears twice in one JSON object")
                seen.add(key)
        return document

    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SeccompProfileError(f"{source}: not UTF-8 text, so not a JSON profile") from None
    try:
        document = json.loads(text, object_pairs_hook=no_duplicates)
    except SeccompProfileError:
        raise
    except json.JSONDecodeError as error:
        raise SeccompProfileError(
            f"{source}: line {error.lineno} column {error.colno}: not valid JSON: {error.msg}"
        ) from None
    except (ValueError, RecursionError) as error:  # a 5000-digit number, lists nested 100000 deep
        raise SeccompProfileError(f"{source}: not a JSON profile this reader accepts: {error}") from None
    return Profile.from_json(document, source)


def load_profile(path_or_name: str | os.PathLike[str]) -> Profile:
    """`default` and `strict` name the built-in profiles beside this module; anything else
    is a path to a Docker/OCI seccomp JSON file."""
    text = os.fspath(path_or_name)
    if text == "unconfined":
        raise SeccompProfileError("'unconfined' means no seccomp filter, so there is no profile to load")
    path = PROFILE_DIR / f"{text}.json" if text in BUILTIN_PROFILES else Path(text)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PROFILE_BYTES + 1)
    except OSError as error:
        raise SeccompProfileError(f"{text}: cannot read the profile: {error.strerror or error}") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise SeccompProfileError(
            f"{text}: larger than {MAX_PROFILE_BYTES // 2**20} MiB, far beyond any seccomp profile"
        )
    return parse_profile(data, str(path) if text in BUILTIN_PROFILES else text)


# ----- resolving includes and excludes ----------------------------------------------------


def go_arch(arch: str | None = None) -> str:
    """GOARCH's name for `arch` (a uname machine, a GOARCH or an SCMP_ARCH_ name), or for
    this machine when None."""
    name = platform.machine() if arch is None else arch
    if name.startswith("SCMP_ARCH_"):
        for go, scmp in GO_TO_SCMP_ARCH.items():
            if scmp == name:
                return go
        return name
    return _MACHINE_TO_GO.get(name.lower(), name.lower())


def kernel_version(release: str | None = None) -> KernelVersion:
    """(major, minor) of a kernel release such as "6.1.0-18-amd64", or of the running kernel."""
    text = os.uname().release if release is None else release
    match = _KERNEL_VERSION.match(text)
    if match is None:
        raise ValueError(f"cannot read a kernel version from {text!r}")
    return int(match[1]), int(match[2])


def _kernel(version: KernelVersion | str | None) -> KernelVersion:
    return version if isinstance(version, tuple) else kernel_version(version)


def _same_arch(name: str) -> str:
    return "386" if name == "x86" else name


def _rule_applies(rule: SyscallRule, capabilities: frozenset[str], arch: str, kernel: KernelVersion) -> bool:
    excludes, includes = rule.excludes, rule.includes
    if excludes.arches and arch in {_same_arch(a) for a in excludes.arches}:
        return False
    if any(cap in capabilities for cap in excludes.caps):
        return False
    if excludes.min_kernel is not None and kernel >= kernel_version(excludes.min_kernel):
        return False
    if includes.arches and arch not in {_same_arch(a) for a in includes.arches}:
        return False
    if not all(cap in capabilities for cap in includes.caps):
        return False
    return includes.min_kernel is None or kernel >= kernel_version(includes.min_kernel)


def _resolve_indexed(
    profile: Profile,
    capabilities: frozenset[str],
    arch: str | None,
    version: KernelVersion | str | None,
) -> list[tuple[int, SyscallRule]]:
    machine = _same_arch(go_arch(arch))
    kernel = _kernel(version)
    return [
        (index, replace(rule, includes=Filter(), excludes=Filter()))
        for index, rule in enumerate(profile.syscalls)
        if _rule_applies(rule, capabilities, machine, kernel)
    ]


def resolve(
    profile: Profile,
    capabilities: frozenset[str] = frozenset(),
    arch: str | None = None,
    kernel_version: KernelVersion | str | None = None,
) -> list[SyscallRule]:
    """The rules in effect for a process holding `capabilities` (bounding set, as
    CAP_SYS_ADMIN) on `arch` (default: this machine) and kernel (default: the running one),
    with includes/excludes consumed."""
    return [rule for _, rule in _resolve_indexed(profile, capabilities, arch, kernel_version)]


def resolve_architectures(profile: Profile, arch: str | None = None) -> tuple[str, ...]:
    """The SCMP_ARCH_ names the filter covers on `arch`: `architectures` as written, or the
    archMap entry for that architecture with its sub-architectures. Empty means the native
    architecture alone."""
    if profile.architectures:
        return profile.architectures
    native = GO_TO_SCMP_ARCH.get(_same_arch(go_arch(arch)))
    for entry in profile.arch_map:
        if entry.architecture == native:
            return (entry.architecture, *entry.sub_architectures)
    return ()


def oci_document(
    profile: Profile,
    capabilities: frozenset[str] = frozenset(),
    arch: str | None = None,
    kernel_version: KernelVersion | str | None = None,
) -> dict[str, Any]:
    """`linux.seccomp` of an OCI runtime config: includes/excludes resolved for these
    capabilities, architecture and kernel, errno names turned into numbers."""
    document: dict[str, Any] = {"defaultAction": profile.default_action}
    if profile.default_errno_value is not None:
        document["defaultErrnoRet"] = profile.default_errno_value
    architectures = resolve_architectures(profile, arch)
    if architectures:
        document["architectures"] = list(architectures)
    if profile.flags:
        document["flags"] = list(profile.flags)
    if profile.listener_path is not None:
        document["listenerPath"] = profile.listener_path
    if profile.listener_metadata is not None:
        document["listenerMetadata"] = profile.listener_metadata
    syscalls = []
    for rule in resolve(profile, capabilities, arch, kernel_version):
        entry: dict[str, Any] = {"names": list(rule.names), "action": rule.action}
        if rule.errno_value is not None:
            entry["errnoRet"] = rule.errno_value
        if rule.args:
            entry["args"] = [arg.to_json() for arg in rule.args]
        syscalls.append(entry)
    document["syscalls"] = syscalls
    return document


# ----- policy overrides ---------------------------------------------------------------------


def with_overrides(profile: Profile, deny: Iterable[str] = (), allow: Iterable[str] = ()) -> Profile:
    """The profile with a policy's `sandbox.seccomp.deny` and `allow` applied.

    A denied system call returns EPERM whatever the profile said, under every capability
    and on every architecture; an allowed one is allowed outright, argument conditions
    included. Both work by taking the names out of every existing rule and adding one rule
    of their own, so no two rules disagree about a name (libseccomp would silently keep the
    first). A name in both lists is denied."""
    denied = tuple(dict.fromkeys(deny))
    allowed = tuple(name for name in dict.fromkeys(allow) if name not in denied)
    for option, names in (("deny", denied), ("allow", allowed)):
        for name in names:
            if not _SYSCALL_NAME.fullmatch(name):
                raise SeccompProfileError(f"sandbox.seccomp.{option}: {name!r} is not a system call name")
    if not denied and not allowed:
        return profile
    overridden = set(denied) | set(allowed)
    rules = []
    for rule in profile.syscalls:
        kept = tuple(name for name in rule.names if name not in overridden)
        if kept:
            rules.append(rule if len(kept) == len(rule.names) else replace(rule, names=kept))
    if allowed:
        rules.append(SyscallRule(allowed, "SCMP_ACT_ALLOW", comment="Allowed by the policy (sandbox.seccomp.allow)."))
    if denied:
        rules.append(
            SyscallRule(
                denied,
                "SCMP_ACT_ERRNO",
                errno_ret=errno_codes.EPERM,
                comment="Refused by the policy (sandbox.seccomp.deny).",
            )
        )
    return replace(profile, syscalls=tuple(rules))


# ----- comparing profiles by what they let through ------------------------------------------
#
# `policy diff` judges a profile change by its effect. A profile's effect depends on the
# capabilities held, the architecture and the kernel (includes/excludes), so two profiles are
# compared under every combination their filters tell apart: each capability set given, each
# architecture they name plus one they do not, each minKernel boundary.

# How far an action lets a system call through: it runs (allow, log), another process decides
# (trace, notify), it fails (errno), the process gets SIGSYS (trap), or it is killed.
ACTION_REACH: Final[Mapping[str, int]] = {
    "SCMP_ACT_KILL_PROCESS": 0,
    "SCMP_ACT_KILL": 1,
    "SCMP_ACT_KILL_THREAD": 1,
    "SCMP_ACT_TRAP": 2,
    "SCMP_ACT_ERRNO": 3,
    "SCMP_ACT_TRACE": 4,
    "SCMP_ACT_NOTIFY": 4,
    "SCMP_ACT_LOG": 5,
    "SCMP_ACT_ALLOW": 5,
}
_REACH_NAMES: Final = ("kill-process", "kill", "trap", "errno", "trace", "allow")
# Flags whose presence (SPEC_ALLOW: no speculative store bypass mitigation) or absence (TSYNC:
# the filter on every thread) lets more through.
_LOOSENING_FLAGS: Final = frozenset({"SECCOMP_FILTER_FLAG_SPEC_ALLOW"})
_TIGHTENING_FLAGS: Final = frozenset({"SECCOMP_FILTER_FLAG_TSYNC"})
_OPERATOR_SIGNS: Final[Mapping[str, str]] = {
    "SCMP_CMP_NE": "!=",
    "SCMP_CMP_LT": "<",
    "SCMP_CMP_LE": "<=",
    "SCMP_CMP_EQ": "==",
    "SCMP_CMP_GE": ">=",
    "SCMP_CMP_GT": ">",
}

Clause = frozenset[ArgCondition]


@dataclass(frozen=True)
class ProfileDifference:
    """One thing two profiles treat differently: `what` (a system call, one with argument
    conditions, the default action, an architecture or a flag) and how far each lets it go."""

    what: str
    old: str
    new: str

    def describe(self) -> str:
        return f"{self.what}: {self.old} -> {self.new}"


@dataclass(frozen=True)
class _Treatment:
    """How a resolved profile treats one system call: the reach of its rules without
    argument conditions (lowest and highest, where rules disagree), and (reach, clause) for
    each alternative of its rules with conditions."""

    low: int
    high: int
    clauses: frozenset[tuple[int, Clause]] = frozenset()

    @property
    def floor(self) -> int:
        return min([self.low, *(reach for reach, _ in self.clauses)])

    @property
    def ceiling(self) -> int:
        return max([self.high, *(reach for reach, _ in self.clauses)])


@dataclass(frozen=True)
class _Resolved:
    default: int
    calls: Mapping[str, _Treatment]
    architectures: frozenset[str]
    flags: frozenset[str]

    def treatment(self, name: str) -> _Treatment:
        return self.calls.get(name) or _Treatment(self.default, self.default)


def _clauses(rule: SyscallRule) -> list[Clause]:
    """runc's reading: conditions on distinct arguments all hold; several on one argument
    are alternatives."""
    indices = [arg.index for arg in rule.args]
    if len(set(indices)) == len(indices):
        return [frozenset(rule.args)]
    return [frozenset({arg}) for arg in rule.args]


def _resolve_reach(profile: Profile, capabilities: frozenset[str], arch: str, kernel: KernelVersion) -> _Resolved:
    default = ACTION_REACH[profile.default_action]
    unconditional: dict[str, list[int]] = {}
    conditional: dict[str, set[tuple[int, Clause]]] = {}
    for rule in resolve(profile, capabilities, arch, kernel):
        reach = ACTION_REACH[rule.action]
        for name in rule.names:
            if rule.args:
                conditional.setdefault(name, set()).update((reach, clause) for clause in _clauses(rule))
            else:
                unconditional.setdefault(name, []).append(reach)
    calls = {
        name: _Treatment(
            min(unconditional.get(name, [default])),
            max(unconditional.get(name, [default])),
            frozenset(conditional.get(name, ())),
        )
        for name in {*unconditional, *conditional}
    }
    native = GO_TO_SCMP_ARCH.get(arch, arch)
    architectures = frozenset(resolve_architectures(profile, arch) or (native,))
    return _Resolved(default, calls, architectures, frozenset(profile.flags))


def _show_clause(clause: Clause) -> str:
    parts = []
    for arg in sorted(clause, key=lambda a: (a.index, a.op, a.value, a.value_two)):
        if arg.op == "SCMP_CMP_MASKED_EQ":
            parts.append(f"arg{arg.index} & {arg.value:#x} == {arg.value_two:#x}")
        else:
            parts.append(f"arg{arg.index} {_OPERATOR_SIGNS[arg.op]} {arg.value:#x}")
    return " && ".join(parts)


def _reach_name(reach: int) -> str:
    return _REACH_NAMES[reach]


def _let_through_further(old: _Resolved, new: _Resolved) -> list[ProfileDifference]:
    """What `new` lets further than `old`, erring towards reporting: when rules disagree the
    old side counts its lowest reach and the new side its highest."""
    found: list[ProfileDifference] = []
    if new.default > old.default:
        found.append(ProfileDifference("default action", _reach_name(old.default), _reach_name(new.default)))
    for name in sorted({*old.calls, *new.calls}):
        before, after = old.treatment(name), new.treatment(name)
        if after.high > before.low:
            found.append(ProfileDifference(name, _reach_name(before.low), _reach_name(after.high)))
        for reach, clause in sorted(after.clauses, key=lambda item: (item[0], _show_clause(item[1]))):
            covered = before.floor == before.low and any(
                old_reach >= reach and old_clause <= clause for old_reach, old_clause in before.clauses
            )
            if reach > before.floor and reach > after.high and not covered:
                what = f"{name}({_show_clause(clause)})"
                found.append(ProfileDifference(what, _reach_name(before.floor), _reach_name(reach)))
        for reach, clause in sorted(before.clauses, key=lambda item: (item[0], _show_clause(item[1]))):
            kept = any(new_reach <= reach and new_clause <= clause for new_reach, new_clause in after.clauses)
            if reach < before.low and not kept and after.ceiling > reach:
                what = f"{name}({_show_clause(clause)})"
                found.append(ProfileDifference(what, _reach_name(reach), _reach_name(after.ceiling)))
    for architecture in sorted(new.architectures - old.architectures):
        found.append(ProfileDifference(f"architecture {architecture}", "killed", "filtered"))
    for flag in sorted((new.flags - old.flags) & _LOOSENING_FLAGS):
        found.append(ProfileDifference(f"flag {flag}", "off", "on"))
    for flag in sorted((old.flags - new.flags) & _TIGHTENING_FLAGS):
        found.append(ProfileDifference(f"flag {flag}", "on", "off"))
    return found


def _scenarios(
    profiles: Iterable[Profile], capability_sets: Iterable[frozenset[str]]
) -> list[tuple[frozenset[str], str, KernelVersion]]:
    """Every combination the profiles' filters tell apart, this machine's architecture first."""
    arches: dict[str, None] = {_same_arch(go_arch()): None}
    kernels: set[KernelVersion] = {(0, 0)}
    for profile in profiles:
        for rule in profile.syscalls:
            for condition in (rule.includes, rule.excludes):
                arches.update((_same_arch(arch), None) for arch in condition.arches)
                if condition.min_kernel is not None:
                    kernels.add(kernel_version(condition.min_kernel))
        arches.update((go_arch(entry.architecture), None) for entry in profile.arch_map)
    unnamed = next((go for go in GO_TO_SCMP_ARCH if go not in arches), None)
    if unnamed is not None:
        arches[unnamed] = None
    return [(caps, arch, kernel) for arch in arches for kernel in sorted(kernels) for caps in capability_sets]


def compare_profiles(
    old: Profile, new: Profile, capability_sets: Iterable[frozenset[str]] = (frozenset(),)
) -> tuple[list[ProfileDifference], list[ProfileDifference]]:
    """(what `new` lets through further than `old`, what it stops sooner), for processes
    holding any of `capability_sets`, on every architecture and kernel the two profiles'
    filters tell apart. A system call (or an argument value) that runs under `new` and failed
    under `old` goes further; so does a more permissive default action, an architecture
    filtered instead of killed, or a weaker flag. Where rules disagree about a call, the
    comparison errs towards "further". A difference found only on another architecture
    names it."""
    sets = tuple(dict.fromkeys(frozenset(caps) for caps in capability_sets)) or (frozenset(),)
    further: dict[ProfileDifference, str] = {}  # each difference, and the architecture it was first seen on
    sooner: dict[ProfileDifference, str] = {}
    for caps, arch, kernel in _scenarios((old, new), sets):
        before, after = _resolve_reach(old, caps, arch, kernel), _resolve_reach(new, caps, arch, kernel)
        for difference in _let_through_further(before, after):
            further.setdefault(difference, arch)
        for difference in _let_through_further(after, before):
            sooner.setdefault(replace(difference, old=difference.new, new=difference.old), arch)
    native = _same_arch(go_arch())
    loosened = {difference.what for difference in further}

    def located(found: dict[ProfileDifference, str]) -> list[ProfileDifference]:
        return [d if arch == native else replace(d, what=f"{d.what} on {arch}") for d, arch in found.items()]

    return located(further), located({d: arch for d, arch in sooner.items() if d.what not in loosened})


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
