"""A policy learned from a workload (`pysandbox learn`): the base policy, its seccomp profile
cut to the system calls the workload made, and the calls it made that the base refuses
allowed, each line saying why it is there.

The profile is the base's own, rule by rule, with every name the workload did not use taken
out: argument conditions, capability includes and deliberate errnos (clone3's ENOSYS) stay
as the base wrote them, so the result is narrower than the base everywhere the workload did
not go, and `policy diff BASE LEARNED` marks the profile `tightens`. A call the base refuses
(and the workload made anyway, under observation) is the loosening: by name in
`sandbox.seccomp.allow` with a comment; or, where the base's filter looked at its arguments
(socket's family, personality), as a rule of the profile for those arguments only, named in
the policy's last comment lines. Not added: a call the base answers ENOSYS on purpose (the
workload fell back from it already), and one that was refused while learning too (sandbox.notify
keeps the observation within the default profile under the base's capabilities).

Beyond the calls, what the observation saw narrows the base where it can only tighten: the
capabilities a call needed (sandbox.capcheck) are kept and the others of the base dropped,
but for those whose use no call shows; a writable root no write landed on (or only below
/tmp, /run: a tmpfs there) becomes read-only; the destinations sent to become the egress list
where the base sets none."""

from __future__ import annotations

import dataclasses
import errno as errno_codes
import json
import os
import platform
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pysbx.policies import model
from pysbx.policies.explain import describe_call, syscall_name
from pysbx.policies.loader import BUILTINS, LoadedPolicy
from pysbx.policies.seccomp import (
    ArgCondition,
    Profile,
    SyscallRule,
    load_profile,
    resolve,
    syscall_known,
    with_overrides,
)
from pysbx.policies.values import format_size
from pysbx.sandbox import bpfeval
from pysbx.sandbox.capcheck import OBSERVABLE
from pysbx.sandbox.notify import MORE, Denial, Heard, handover_calls


class LearnError(ValueError):
    """A workload that cannot be made into a policy on this base, said in one sentence."""


@dataclass(frozen=True)
class Learned:
    policy_text: str
    profile_text: str
    made: dict[str, int]  # every call the workload made, with how many times
    added: dict[str, str]  # calls the base refuses, each with the first call as made
    failed: dict[str, str]  # calls the base refuses that failed under observation too, and why: not added
    base_allows: int  # how many calls the base's filter allows here
    learned_allows: int  # how many the learned one does
    capabilities_used: frozenset[str] = frozenset()  # of the base's, those a call was seen to need
    capabilities_kept: frozenset[str] = frozenset()  # what the learned policy grants

    @property
    def narrower_by(self) -> int:
        return self.base_allows - self.learned_allows


def learn(
    base_reference: str, base: LoadedPolicy, granted: frozenset[str], heard: Heard, output: Path, workload: str
) -> Learned:
    """The policy (to be written at `output`) and its profile (beside it, named in the
    policy) for what `heard` observed of `workload` under `base`."""
    seccomp = base.policy.sandbox.seccomp
    if seccomp.profile == "unconfined":
        raise LearnError(f"the base policy {base_reference} filters no system call: learn from one that does")
    if heard.unavailable:
        raise LearnError(f"nothing was observed: {heard.unavailable}")
    if heard.dropped:
        raise LearnError(f"the workload made more kinds of call than were kept ({heard.dropped} more)")
    made: Counter[str] = Counter()
    added: dict[str, str] = {}  # refused by the base, allowed by name
    narrow: dict[str, SyscallRule] = {}  # refused by the base for these arguments: allowed for them
    failed: dict[str, str] = {}
    used: set[str] = set()
    for kind in heard.denials:
        name = syscall_name(kind.arch, kind.nr)
        if kind.needs in granted:
            used.add(kind.needs)
        elif kind.needs:
            failed.setdefault(
                kind.needs, f"{name} needs it, which the base does not grant: refused while learning too (not added)"
            )
        if not syscall_known(name):  # a made-up number: the call failed (ENOSYS), and no policy names it
            failed[name] = "libseccomp has no name for it (nor, then, the kernel)"
            continue
        made[name] += kind.count
        if not _refused(kind) or name in added or _on_purpose(kind):
            continue
        if kind.errno:  # refused while learning too (the ceiling): it did not run
            failed[name] = "refused while learning too: the default profile refuses it under the base's capabilities"
        elif kind.args:  # the base's filter looked at its arguments: allowed for these only
            narrow[_key(name, kind)] = _argument_rule(name, kind, Path(base_reference).stem)
        else:
            added[name] = describe_call(name, kind)
    for name in handover_calls():
        made.setdefault(name, 0)  # the runtime's own, before the workload's execve
    _refuse_loosening_strict(base, [*added, *(rule.names[0] for rule in narrow.values())])
    profile = load_profile(seccomp.profile)
    cut = _cut_profile(profile, made, output)
    cut = dataclasses.replace(cut, syscalls=(*cut.syscalls, *narrow.values()))
    learned_deny = tuple(name for name in seccomp.deny if name not in added)
    learned_allow = tuple(dict.fromkeys((*(n for n in seccomp.allow if n in made), *added)))
    profile_path = output.with_suffix(".seccomp.json")
    base_allows = len(allowed_names(profile, granted, seccomp.deny, seccomp.allow))
    learned_allows = len(allowed_names(cut, granted, learned_deny, learned_allow))
    lists = _Lists(seccomp.allow, learned_allow, seccomp.deny, learned_deny)
    text = _policy_text(
        base_reference, output, profile_path.name, made, added, lists, workload, (base_allows, learned_allows)
    )
    kept = _kept_capabilities(granted, used)
    if kept != granted:
        text += _capabilities_text(Path(base_reference).stem, granted, kept)
    text += _mounts_text(base.policy.sandbox, heard.written)
    text += _egress_text(base.policy.sandbox, heard.reached)
    if narrow:
        text += _narrow_text(Path(base_reference).stem, narrow)
    profile_text = json.dumps(cut.to_json(), indent=2) + "\n"
    counts = (base_allows, learned_allows)
    return Learned(text, profile_text, dict(made), added, failed, *counts, frozenset(used), kept)


SCRATCH = ("/tmp", "/run")  # folders an image keeps empty, where a tmpfs hides nothing it needs


def _mounts_text(sandbox: model.SandboxPolicy, written: dict[str, int]) -> str:
    """A writable root the workload did not write on becomes read-only; one it wrote on
    only below /tmp or /run, read-only with a tmpfs there (the base's writable_size shared
    out, so nothing more may be written than before). Otherwise the base's, and where the
    writes landed is said."""
    if sandbox.mounts.read_only_rootfs:
        return ""
    places = ", ".join(f"{_one_line(name)} ({count}x)" for name, count in sorted(written.items()))
    if not set(written) <= set(SCRATCH):
        return f"  # writes landed on the root below {places}: it stays writable, as in the base\n"
    lines = ["  mounts:"]
    if not written:
        lines.append("    # no write of the workload landed on the root")
    else:
        lines.append(f"    # the workload wrote on the root only below {places}: a tmpfs there takes it")
    lines.append("    read_only_rootfs: true")
    if written:
        budget = sandbox.limits.writable_size
        size = f", size: {format_size(budget // len(written))}" if budget else ""
        entries = [(t.path, f", size: {format_size(t.size)}" if t.size else "", t.mode) for t in sandbox.mounts.tmpfs]
        entries += [(name, size, "1777") for name in sorted(written)]
        lines.append("    tmpfs:")
        lines += [
            f"      - {{path: {json.dumps(path)}{sized}, mode: {json.dumps(mode)}}}" for path, sized, mode in entries
        ]
    return "\n".join(lines) + "\n"


def _egress_text(sandbox: model.SandboxPolicy, reached: dict[str, int]) -> str:
    """The destinations the workload sent to, as the egress allow-list (where the base sets
    none, and all of them were kept)."""
    if sandbox.egress is not None:
        return ""
    if MORE in reached:
        return "  # the workload sent to more places than were kept: egress stays the base's (anything)\n"
    lines = ["  # where the workload sent (its engine's resolver, for DNS, and loopback stay reachable)"]
    if not reached:
        return "\n".join([*lines, "  egress: []"]) + "\n"
    lines.append("  egress:")
    lines += [f"    - {json.dumps(rule)}  # {count}x" for rule, count in sorted(reached.items())]
    return "\n".join(lines) + "\n"


def _kept_capabilities(granted: frozenset[str], used: set[str]) -> frozenset[str]:
    """The base's capabilities the workload was seen to need, and those whose use no call
    shows (sandbox.capcheck.OBSERVABLE): kept, since nothing says they went unused."""
    return frozenset(name for name in granted if name in used or name not in OBSERVABLE)


def _capabilities_text(base_name: str, granted: frozenset[str], kept: frozenset[str]) -> str:
    unseen = sorted(name for name in kept if name not in OBSERVABLE)
    dropped = sorted(granted - kept)
    lines = [
        "  capabilities:",
        f"    # {_one_line(base_name)}'s, but those no call of the workload needed: {', '.join(dropped)}",
    ]
    if unseen:
        lines.append(f"    # kept unseen (no call shows their use): {', '.join(unseen)}")
    lines += ["    drop: [ALL]", f"    add: [{', '.join(sorted(kept))}]" if kept else "    add: []"]
    return "\n".join(lines) + "\n"


def _key(name: str, kind: Denial) -> str:
    return f"{name}{sorted(kind.args.items())}"


def _argument_rule(name: str, kind: Denial, base_name: str) -> SyscallRule:
    """An allow for `name` with the arguments the base's filter looked at, as the workload
    gave them (the low 32 bits, as Docker's profile compares flags, when they fit in them)."""
    conditions = tuple(
        ArgCondition(index, 0xFFFFFFFF, "SCMP_CMP_MASKED_EQ", value)
        if value <= 0xFFFFFFFF
        else ArgCondition(index, value, "SCMP_CMP_EQ")
        for index, value in sorted(kind.args.items())
    )
    call = _one_line(describe_call(name, kind))
    comment = f"[learned: refused by {_one_line(base_name)} for these arguments; {kind.count}x, first {call}]"
    return SyscallRule((name,), "SCMP_ACT_ALLOW", args=conditions, comment=comment)


def _narrow_text(base_name: str, narrow: dict[str, SyscallRule]) -> str:
    lines = [f"# The profile's last rules allow, for the arguments made only, what {_one_line(base_name)} refuses:"]
    lines += [f"#   {rule.comment.removeprefix('[learned: ').removesuffix(']')}" for rule in narrow.values()]
    return "\n".join(lines) + "\n"


def _refused(kind: Denial) -> bool:
    return bpfeval.action_of(kind.verdict)[0] not in (bpfeval.RET_ALLOW, bpfeval.RET_LOG)


def _on_purpose(kind: Denial) -> bool:
    return bpfeval.action_of(kind.verdict) == (bpfeval.RET_ERRNO, errno_codes.ENOSYS)


def _refuse_loosening_strict(base: LoadedPolicy, added: list[str]) -> None:
    from pysbx.policies.loader import BUILTIN_DIR

    if added and str(BUILTIN_DIR / "strict.yaml") in base.chain:
        raise LearnError(
            f"the workload made calls strict refuses ({', '.join(added)}): a policy extending strict cannot "
            "allow them; learn from --base baseline, or from a policy of your own"
        )


def _cut_profile(profile: Profile, made: Counter[str], output: Path) -> Profile:
    """The base profile with only the names the workload made, each rule saying how often."""
    rules = []
    for rule in profile.syscalls:
        kept = tuple(name for name in rule.names if name in made)
        if not kept:
            continue
        counts = ", ".join(f"{name} {made[name]}" for name in kept)
        comment = f"{rule.comment} " if rule.comment else ""
        rules.append(dataclasses.replace(rule, names=kept, comment=f"{comment}[learned: {counts}]"))
    note = f"{profile.comment} " if profile.comment else ""
    return dataclasses.replace(
        profile,
        syscalls=tuple(rules),
        comment=f"{note}[cut by pysandbox learn to the calls a workload made: {output.name}]",
        source=str(output.with_suffix(".seccomp.json")),
    )


def allowed_names(
    profile: Profile, granted: frozenset[str], deny: tuple[str, ...] = (), allow: tuple[str, ...] = ()
) -> set[str]:
    """The calls a filter built from this lets through for some arguments, on this machine."""
    rules = resolve(with_overrides(profile, deny, allow), granted)
    return {name for rule in rules if rule.action in ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG") for name in rule.names}


@dataclass(frozen=True)
class _Lists:
    """The base's seccomp allow and deny lists and the learned policy's (a list that a child
    policy sets replaces its parent's whole)."""

    base_allow: tuple[str, ...]
    allow: tuple[str, ...]
    base_deny: tuple[str, ...]
    deny: tuple[str, ...]


def _policy_text(
    base_reference: str,
    output: Path,
    profile_name: str,
    made: Counter[str],
    added: dict[str, str],
    lists: _Lists,
    workload: str,
    counts: tuple[int, int],
) -> str:
    base_allows, learned_allows = counts
    base_name = _one_line(Path(base_reference).stem)
    extends = base_reference if base_reference in BUILTINS else os.path.relpath(base_reference, output.parent)
    lines = [
        f"# Learned by `pysandbox learn` from: {_one_line(workload)}",
        f"# It made {len([n for n, c in made.items() if c])} kinds of system call ({sum(made.values())} calls). On "
        f"{platform.machine()}, {base_name} allows {base_allows} calls, this policy {learned_allows}.",
        "# Review it as any policy: `pysandbox policy diff BASE THIS` marks what it loosens.",
        "version: 1",
        f"extends: {json.dumps(extends)}",
        "sandbox:",
        "  seccomp:",
        f"    # {base_name}'s profile, cut to the calls the workload made (each rule says how often)",
        f"    profile: {json.dumps(profile_name)}",
    ]
    if lists.allow != lists.base_allow:
        lines.append(
            f"    # {base_name}'s own allow list as far as the workload used it, and the calls {base_name} refuses"
        )
        lines.append("    allow:" if lists.allow else "    allow: []")
        for name in lists.allow:
            why = (
                f"refused by {base_name}; {made[name]}x, first {_one_line(added[name])}"
                if name in added
                else f"{base_name}'s"
            )
            lines.append(f"      - {name}  # {why}")
    if lists.deny != lists.base_deny:
        lines.append(f"    # {base_name}'s deny list but the calls the workload made")
        lines.append("    deny:" if lists.deny else "    deny: []")
        lines += [f"      - {name}" for name in lists.deny]
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    """Safe in a YAML comment: one line, printable ASCII."""
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in text)
