"""Reading a profile: JSON to a checked Profile, with every problem named at its JSON
location (`profile.json: syscalls[3].args[0].op: unknown operator ...`)."""

from __future__ import annotations

import errno as errno_codes
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

from pysbx.policies.model import LINUX_CAPABILITIES
from pysbx.policies.seccomp.profile import (
    _ERRNO_ACTIONS,
    _GO_ARCHES,
    _KERNEL_VERSION,
    _MACHINE_TO_GO,
    _SYSCALL_NAME,
    ACTIONS,
    ARCHITECTURES,
    BUILTIN_PROFILES,
    FILTER_FLAGS,
    MAX_ARGS,
    MAX_ERRNO,
    MAX_PROFILE_BYTES,
    OPERATORS,
    PROFILE_DIR,
    ArchMapEntry,
    ArgCondition,
    Filter,
    Profile,
    SeccompProfileError,
    SyscallRule,
)
from pysbx.policies.values import suggest


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
        if action == "SCMP_ACT_ERRNO" and number == 0:  # the call would not run, yet report success
            self.fail(_join(where, number_key), "0 makes a refused call look successful (setresuid, capset...)")
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
