"""Comparing two profiles by what they let through, for `policy diff`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Final

from pysbx.policies.seccomp.profile import GO_TO_SCMP_ARCH, ArgCondition, KernelVersion, Profile, SyscallRule
from pysbx.policies.seccomp.resolve import _same_arch, go_arch, kernel_version, resolve, resolve_architectures

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
