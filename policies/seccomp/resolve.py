"""Resolving a profile for one machine, as Docker does (moby's profiles/seccomp): a rule's
`excludes` drops it when the architecture is listed, when *any* listed capability is held,
or when the kernel is at least `minKernel`; its `includes` keeps it only when the
architecture is listed, *every* listed capability is held and the kernel is at least
`minKernel`. Also the policy's deny/allow overrides, and the resolved document OCI
runtimes take (they know no includes/excludes)."""

from __future__ import annotations

import errno as errno_codes
import os
import platform
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from pysbx.policies.seccomp.profile import (
    _KERNEL_VERSION,
    _MACHINE_TO_GO,
    _SYSCALL_NAME,
    GO_TO_SCMP_ARCH,
    Filter,
    KernelVersion,
    Profile,
    SeccompProfileError,
    SyscallRule,
)

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
