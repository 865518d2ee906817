"""Why a system call was denied, by which line of which file, and the smallest policy change
that would have allowed it (`pysandbox run --explain`; the monitor's record comes from
sandbox.notify).

A denial has one cause, found the way the filter was built (policies.seccomp.compile): the
policy's own `sandbox.seccomp.deny`, else the first rule of the profile (resolved for the
granted capabilities) that names the call and matches its arguments, else a rule that would
allow it with a capability the policy does not grant, else the profile's default action.
Some calls also need a capability that the kernel checks after the filter (mount needs
CAP_SYS_ADMIN): allowing the call alone would only change EPERM for EPERM, so the change
adds both. The change is checked: the filter compiled from the changed policy must allow
each call it claims to. It is shown as `policy diff` shows changes, and never applied."""

from __future__ import annotations

import dataclasses
import errno as errno_codes
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pysbx.policies import model
from pysbx.policies.diff import Change, diff_policies
from pysbx.policies.loader import BUILTIN_DIR, LoadedPolicy
from pysbx.policies.seccomp import Profile, SyscallRule, compile_bpf, load_profile
from pysbx.policies.seccomp.profile import ArgCondition
from pysbx.policies.seccomp.resolve import _resolve_indexed
from pysbx.sandbox import bpfeval
from pysbx.sandbox.capcheck import CHECKS, WHAT
from pysbx.sandbox.notify import PATH_ARGUMENTS, Denial, Heard

# Calls whose every use is checked against a capability, after the filter (capabilities(7)).
KERNEL_CAPABILITY = {
    **dict.fromkeys(
        ("mount umount umount2 pivot_root fsopen fsmount fsconfig fspick move_mount open_tree sethostname "
         "setdomainname swapon swapoff quotactl lookup_dcookie").split(),
        "CAP_SYS_ADMIN",
    ),
    "chroot": "CAP_SYS_CHROOT", "ptrace": "CAP_SYS_PTRACE", "process_vm_readv": "CAP_SYS_PTRACE",
    "process_vm_writev": "CAP_SYS_PTRACE", "reboot": "CAP_SYS_BOOT", "kexec_load": "CAP_SYS_BOOT",
    "kexec_file_load": "CAP_SYS_BOOT", "init_module": "CAP_SYS_MODULE", "finit_module": "CAP_SYS_MODULE",
    "delete_module": "CAP_SYS_MODULE", "acct": "CAP_SYS_PACCT", "settimeofday": "CAP_SYS_TIME",
    "clock_settime": "CAP_SYS_TIME", "clock_adjtime": "CAP_SYS_TIME", "stime": "CAP_SYS_TIME",
    "iopl": "CAP_SYS_RAWIO", "ioperm": "CAP_SYS_RAWIO", "syslog": "CAP_SYSLOG", "vhangup": "CAP_SYS_TTY_CONFIG",
    "open_by_handle_at": "CAP_DAC_READ_SEARCH",
}  # fmt: skip


# Calls the filter allows that sandbox.notify hears because the kernel refuses them without
# a capability (its _CAPABILITY_CALLS): the capability, and what the call was.
ALLOWED_BUT_NEEDS = {"socket": ("CAP_NET_RAW", "a raw or packet socket")}


@dataclass(frozen=True)
class Place:
    """A line of a file that decided something, and what it is there."""

    file: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} ({self.what})" if self.line else f"{self.file} ({self.what})"


@dataclass(frozen=True)
class Explained:
    """One kind of denied call: how it was made, why it was denied and where that is said,
    and what the change allows for it."""

    name: str
    call: str  # mount(source="none", target="/mnt", fstype="tmpfs")
    errno: int
    count: int
    reason: str
    places: tuple[Place, ...]
    allow: tuple[str, ...] = ()  # seccomp.allow gets these
    undeny: tuple[str, ...] = ()  # seccomp.deny loses these
    capabilities: tuple[str, ...] = ()  # capabilities.add gets these
    writable_root: bool = False  # mounts.read_only_rootfs becomes false
    unmask: tuple[str, ...] = ()  # mounts.masked_paths loses these
    unprotect: tuple[str, ...] = ()  # mounts.readonly_paths loses these


@dataclass(frozen=True)
class Explanation:
    denials: list[Explained]
    changes: list[Change]  # the policy diff: empty when nothing was denied or nothing can allow it
    target: str  # the file to change
    notes: list[str]  # what the reader should know: no listener, strict cannot be loosened, ...
    total: int  # calls denied in all, repeats included
    dropped: int  # calls of kinds beyond what the monitor kept

    def as_json(self) -> dict[str, object]:
        return {
            "denials": [
                {
                    "syscall": item.name,
                    "call": item.call,
                    "errno": errno_codes.errorcode.get(item.errno, str(item.errno)),
                    "count": item.count,
                    "reason": item.reason,
                    "places": [dataclasses.asdict(place) for place in item.places],
                }
                for item in self.denials
            ],
            "policy_diff": {
                "file": self.target,
                "changes": [
                    {"field": ".".join(c.path), "change": c.describe(), "effect": c.effect} for c in self.changes
                ],
            },
            "notes": self.notes,
            "total": self.total,
            "not_itemised": self.dropped,
        }


def explain(
    loaded: LoadedPolicy, granted: frozenset[str], plain: bytes | None, heard: Heard, uid: int = 0
) -> Explanation:
    """Everything `heard` means under the policy that made the filter `plain`, for a command
    that ran as `uid` (in the container)."""
    heard_some = "what is above was heard, then no more" if heard.denials else "nothing was heard"
    notes = [f"{heard_some}: {heard.unavailable}"] if heard.unavailable else []
    if heard.via:
        notes = [
            f"no listener ({heard.unavailable}): the denials were read from {heard.via} instead, without their "
            "arguments (a rule that looks at them is judged as for zeros); the kernel may drop records it logs too fast"
        ]
    if heard.dropped:
        notes.append(f"{heard.dropped} further denials of other kinds were counted, not itemised")
    notes += _limit_notes(loaded, heard.limits)
    seccomp = loaded.policy.sandbox.seccomp
    if seccomp.profile == "unconfined" or plain is None:
        return Explanation([], [], loaded.chain[0], notes, heard.total, heard.dropped)
    profile = load_profile(seccomp.profile)
    judge = _Judge(loaded, granted, profile, arguments_known=not heard.via)
    explained = [judge.explain(denial) for denial in heard.denials]
    unnamed = [item.name for item in explained if item.name.startswith(UNNAMED)]
    if unnamed:
        notes.append(
            f"no name here for {', '.join(unnamed)}: no policy can allow them by name (left out of the change)"
        )
    changed = _changed_policy(loaded.policy, explained)
    changes = diff_policies(loaded.policy, changed) if changed != loaded.policy else []
    if changes:
        notes += _check_change(changed, granted, heard.denials, explained)
        notes += _strict_note(loaded)
    if uid != 0 and any(item.capabilities for item in explained):
        notes.append(
            f"the command ran as uid {uid}, and a capability the policy grants reaches the container's root "
            "only (Docker's rule): run it as root (-u 0) or give the program a file capability too"
        )
    return Explanation(explained, changes, loaded.chain[0], notes, heard.total, heard.dropped)


class _Judge:
    def __init__(
        self, loaded: LoadedPolicy, granted: frozenset[str], profile: Profile, arguments_known: bool = True
    ) -> None:
        self.arguments_known = arguments_known  # an audit record has none (sandbox.auditlog)
        self.loaded, self.granted, self.profile = loaded, granted, profile
        self.seccomp = loaded.policy.sandbox.seccomp
        self.resolved = _resolve_indexed(profile, granted, None, None)
        self.lines = rule_lines(profile.source)

    def explain(self, denial: Denial) -> Explained:
        name = syscall_name(denial.arch, denial.nr)
        call = describe_call(name, denial) if self.arguments_known else f"{name}(...)"
        if denial.mount:
            return dataclasses.replace(
                self._read_only_mount(name, denial), call=call, errno=denial.errno, count=denial.count
            )
        refused_for = _needed_capability(name, denial)
        if refused_for is not None:
            capability, what = refused_for
            reason = f"the filter allows it, but the kernel refuses {what} without {capability}, which the policy drops"
            place = self._policy_place(("sandbox", "capabilities"), "sandbox.capabilities")
            return Explained(name, call, denial.errno, denial.count, reason, (place,), capabilities=(capability,))
        cause = self._cause(name, denial)
        needed = KERNEL_CAPABILITY.get(name)
        if needed is not None and needed not in self.granted and needed not in cause.capabilities:
            cause = dataclasses.replace(
                cause,
                reason=f"{cause.reason}; and the kernel checks {needed} for it, which the policy does not grant",
                places=(*cause.places, self._policy_place(("sandbox", "capabilities"), "sandbox.capabilities")),
                capabilities=(*cause.capabilities, needed),
            )
        return dataclasses.replace(cause, call=call, errno=denial.errno, count=denial.count)

    def _cause(self, name: str, denial: Denial) -> Explained:
        blank = Explained(name, "", 0, 0, "", ())
        if name in self.seccomp.deny:
            where = self._policy_place(("sandbox", "seccomp", f"deny[{self.seccomp.deny.index(name)}]"), "seccomp.deny")
            reason = f"the policy's sandbox.seccomp.deny lists {name}"
            allowed = self._allowed_by_profile(name, denial)
            return dataclasses.replace(
                blank, reason=reason, places=(where,), undeny=(name,), allow=() if allowed else (name,)
            )
        rule_place = self._profile_place
        for index, rule in self._rules_naming(name):
            if _matches(rule.args, denial.args) and rule.action != "SCMP_ACT_ALLOW":
                reason = f"the profile's rule for {name} answers {errno_name(denial.errno)}"
                places = (rule_place(index), self._chosen())
                if denial.errno == errno_codes.ENOSYS:  # clone3's rule: a program falls back to clone
                    reason += " on purpose (a program told ENOSYS falls back to an older call): not in the change"
                    return dataclasses.replace(blank, reason=reason, places=places)
                return dataclasses.replace(blank, reason=reason, places=places, allow=(name,))
        conditional = [(index, rule) for index, rule in self._rules_naming(name) if rule.args]
        if conditional:
            index, rule = conditional[0]
            reason = f"the profile allows {name} only when {_conditions(rule.args)}"
            return dataclasses.replace(blank, reason=reason, places=(rule_place(index), self._chosen()), allow=(name,))
        for index, rule in enumerate(self.profile.syscalls):
            missing = tuple(cap for cap in rule.includes.caps if cap not in self.granted)
            if name in rule.names and rule.action == "SCMP_ACT_ALLOW" and missing and not rule.args:
                reason = f"the profile allows {name} only with {', '.join(missing)}, which the policy does not grant"
                places = (rule_place(index), self._policy_place(("sandbox", "capabilities"), "sandbox.capabilities"))
                return dataclasses.replace(blank, reason=reason, places=places, capabilities=missing)
        reason = f"the profile {Path(self.profile.source).stem} does not allow {name} (its default action)"
        default = Place(self.profile.source, self.lines.get("defaultAction", 0), self.profile.default_action)
        return dataclasses.replace(blank, reason=reason, places=(default, self._chosen()), allow=(name,))

    def _read_only_mount(self, name: str, denial: Denial) -> Explained:
        """A write the filter allowed and a read-only mount refused: which key made the
        mount (sandbox.pathwrites heard it)."""
        mount, mounts = denial.mount, self.loaded.policy.sandbox.mounts
        blank = Explained(name, "", 0, 0, f"{quote(os.fsencode(mount))} is mounted read-only", ())
        key = ("sandbox", "mounts")
        if mount == "/" and mounts.read_only_rootfs:
            place = self._policy_place((*key, "read_only_rootfs"), "mounts.read_only_rootfs: true")
            reason = f"the container's root is read-only (the filter allows {name})"
            folder = _folder_written(denial)
            if folder:
                reason += (
                    f"; a tmpfs at {quote(folder)} (sandbox.mounts.tmpfs) would take the write instead, "
                    "where what the image has there need not be kept"
                )
            return dataclasses.replace(blank, reason=reason, places=(place,), writable_root=True)
        if mount == "/":
            return dataclasses.replace(blank, reason="the container's root is read-only: --read-only made it so")
        for field, verb in (("masked_paths", "masks"), ("readonly_paths", "makes read-only")):
            listed: tuple[str, ...] = getattr(mounts, field)
            if mount in listed:
                place = self._policy_place((*key, f"{field}[{listed.index(mount)}]"), f"mounts.{field}")
                reason = f"the policy's sandbox.mounts.{field} {verb} {quote(os.fsencode(mount))}"
                if field == "masked_paths":
                    return dataclasses.replace(blank, reason=reason, places=(place,), unmask=(mount,))
                return dataclasses.replace(blank, reason=reason, places=(place,), unprotect=(mount,))
        reason = (
            f"{blank.reason} by the runtime (/sys) or by a run flag (-v SRC:DST:ro, --mount ...,readonly), "
            "not by a policy line"
        )
        return dataclasses.replace(blank, reason=reason)

    def _rules_naming(self, name: str) -> list[tuple[int, SyscallRule]]:
        """The resolved rules for `name`, each with its index in the profile as written."""
        return [(index, rule) for index, rule in self.resolved if name in rule.names]

    def _allowed_by_profile(self, name: str, denial: Denial) -> bool:
        return any(
            rule.action == "SCMP_ACT_ALLOW" and _matches(rule.args, denial.args) for _, rule in self._rules_naming(name)
        )

    def _profile_place(self, index: int) -> Place:
        line = self.lines.get(f"syscalls[{index}]", 0)
        return Place(self.profile.source, line, f"syscalls[{index}]" if index >= 0 else "the policy's allow list")

    def _chosen(self) -> Place:
        return self._policy_place(("sandbox", "seccomp", "profile"), f"seccomp.profile: {self.seccomp.profile}")

    def _policy_place(self, path: tuple[str, ...], what: str) -> Place:
        for length in range(len(path), 0, -1):
            location = self.loaded.locations.get(path[:length])
            if location is not None:
                return Place(location[0], location[1], what)
        return Place(self.loaded.chain[0], 0, what)


def _folder_written(denial: Denial) -> bytes:
    """The folder a refused write went to (where a tmpfs would take it), when its path says
    it: an absolute one below the root."""
    path = next(iter(denial.strings.values()), b"").rstrip(b"/")
    folder = os.path.dirname(path) if path.startswith(b"/") else b""
    return folder if folder != b"/" else b""


def _needed_capability(name: str, denial: Denial) -> tuple[str, str] | None:
    """The capability, and what the call was doing, of a call the filter allowed and the
    kernel refused for want of it (sandbox.capcheck, notify's capability prologue)."""
    if bpfeval.action_of(denial.verdict)[0] != bpfeval.RET_ALLOW:
        return None
    if denial.needs:
        check = CHECKS.get(name)
        return denial.needs, WHAT[check.kind if check is not None else "open"]
    return ALLOWED_BUT_NEEDS.get(name)


def _matches(conditions: Sequence[ArgCondition], args: dict[int, int]) -> bool:
    """Whether the read arguments meet a rule's conditions (runc's reading: all of them)."""
    for condition in conditions:
        value = args.get(condition.index, 0)
        tests = {
            "SCMP_CMP_NE": value != condition.value,
            "SCMP_CMP_LT": value < condition.value,
            "SCMP_CMP_LE": value <= condition.value,
            "SCMP_CMP_EQ": value == condition.value,
            "SCMP_CMP_GE": value >= condition.value,
            "SCMP_CMP_GT": value > condition.value,
            "SCMP_CMP_MASKED_EQ": value & condition.value == condition.value_two,
        }
        if not tests[condition.op]:
            return False
    return True


def _conditions(conditions: Sequence[ArgCondition]) -> str:
    operators = {"NE": "!=", "LT": "<", "LE": "<=", "EQ": "==", "GE": ">=", "GT": ">"}
    said = []
    for condition in conditions:
        short = condition.op.removeprefix("SCMP_CMP_")
        if short == "MASKED_EQ":
            said.append(f"arg{condition.index} & {condition.value:#x} == {condition.value_two:#x}")
        else:
            said.append(f"arg{condition.index} {operators[short]} {condition.value:#x}")
    return " and ".join(said)


def errno_name(number: int) -> str:
    """EPERM for 1, as the report names what a denied call got."""
    return errno_codes.errorcode.get(number, f"errno {number}") if number else "0 (a faked success)"


def _changed_policy(policy: model.Policy, explained: Iterable[Explained]) -> model.Policy:
    """The policy with every call allowed and capability added that the denials need (calls
    libseccomp has no name for cannot be named in a policy: left out)."""
    explained = [item for item in explained if not item.name.startswith(UNNAMED)]
    allow: dict[str, None] = {}
    undeny: set[str] = set()
    capabilities: dict[str, None] = {}
    for item in explained:
        allow.update(dict.fromkeys(item.allow))
        undeny.update(item.undeny)
        capabilities.update(dict.fromkeys(item.capabilities))
    sandbox = _changed_mounts(policy.sandbox, explained)
    seccomp = sandbox.seccomp
    new_allow = tuple(dict.fromkeys((*seccomp.allow, *map(model.Syscall, allow))))
    new_deny = tuple(name for name in seccomp.deny if name not in undeny)
    granted = model.granted_capabilities(sandbox.capabilities)
    added = tuple(model.Capability(cap) for cap in capabilities if cap not in granted)
    new_capabilities = dataclasses.replace(sandbox.capabilities, add=(*sandbox.capabilities.add, *added))
    new_seccomp = dataclasses.replace(seccomp, allow=new_allow, deny=new_deny)
    new_sandbox = dataclasses.replace(sandbox, seccomp=new_seccomp, capabilities=new_capabilities)
    return dataclasses.replace(policy, sandbox=new_sandbox)


def _changed_mounts(sandbox: model.SandboxPolicy, explained: Sequence[Explained]) -> model.SandboxPolicy:
    """The mounts the refused writes need: a writable root, paths no longer masked or read-only."""
    mounts = sandbox.mounts
    unmask = {path for item in explained for path in item.unmask}
    unprotect = {path for item in explained for path in item.unprotect}
    changed = dataclasses.replace(
        mounts,
        read_only_rootfs=mounts.read_only_rootfs and not any(item.writable_root for item in explained),
        masked_paths=tuple(path for path in mounts.masked_paths if path not in unmask),
        readonly_paths=tuple(path for path in mounts.readonly_paths if path not in unprotect),
    )
    return dataclasses.replace(sandbox, mounts=changed)


def _check_change(
    changed: model.Policy, granted: frozenset[str], denials: Sequence[Denial], explained: Sequence[Explained]
) -> list[str]:
    """The calls the changed policy's filter would still deny, said (an architecture the
    filter is not built for, a profile that cannot be read)."""
    seccomp = changed.sandbox.seccomp
    new_granted = granted | set(model.granted_capabilities(changed.sandbox.capabilities))
    try:
        bpf = compile_bpf(load_profile(seccomp.profile), frozenset(new_granted), seccomp.deny, seccomp.allow).bpf
    except ValueError as error:
        return [f"the changed policy could not be checked: {error}"]
    still = []
    for denial, item in zip(denials, explained, strict=True):
        if not (item.allow or item.undeny or item.capabilities) or item.name.startswith(UNNAMED):
            continue  # left out on purpose
        args = tuple(denial.args.get(index, 0) for index in range(6))
        value = bpfeval.evaluate(bpf, bpfeval.seccomp_data(denial.nr, denial.arch, args))
        if bpfeval.action_of(value)[0] != bpfeval.RET_ALLOW:
            still.append(item.name)
    if still:
        return [f"even with this change the filter would deny {', '.join(still)} (another architecture?)"]
    return []


def _limit_notes(loaded: LoadedPolicy, reached: dict[str, int]) -> list[str]:
    """A sentence per cgroup limit the run reached, with the policy line that sets it."""
    said = {
        "memory": "the kernel killed {count} process(es) for going over limits.memory",
        "pids": "limits.pids refused {count} fork(s) or thread(s) (EAGAIN)",
        "writable_size": "the writable layer was left full: writes beyond limits.writable_size got ENOSPC",
        "open_files": "limits.open_files refused {count} descriptor(s) (EMFILE)",
    }
    notes = []
    for name, count in sorted(reached.items()):
        location = loaded.locations.get(("sandbox", "limits", name))
        where = f"{location[0]}:{location[1]}" if location else loaded.chain[0]
        sentence = said.get(name, f"limits.{name} was reached {{count}} time(s)").format(count=count)
        flag = {"memory": " (or by --memory)", "pids": " (or by --pids-limit)", "open_files": " (or by ulimit -n)"}.get(
            name, ""
        )
        notes.append(f"{sentence}: set at {where}{flag}")
    return notes


def _strict_note(loaded: LoadedPolicy) -> list[str]:
    strict = str(BUILTIN_DIR / "strict.yaml")
    if strict not in loaded.chain:
        return []
    if loaded.chain[0] == strict:
        start = "the built-in strict cannot be changed"
    else:
        start = f"{Path(loaded.chain[0]).name} extends strict, which a policy may tighten but not loosen"
    return [
        f"{start}: make the change in a policy of your own that does not extend strict, such as "
        "`pysandbox policy show strict --effective > mine.yaml` (strict in full, reviewed as such)"
    ]


# ----- naming and showing calls ------------------------------------------------------------


AUDIT_ARCH_X86_64, SCMP_ARCH_X32, X32_BIT = 0xC000003E, 0x4000003E, 0x40000000


def syscall_name(arch: int, number: int) -> str:
    """libseccomp's name for call `number` of architecture `arch` (an AUDIT_ARCH_* value; an
    x32 call is x86_64's with X32_BIT in its number), or syscall_N for one it does not know."""
    import pyseccomp

    if arch == AUDIT_ARCH_X86_64 and number & X32_BIT:
        arch = SCMP_ARCH_X32
    try:
        name = pyseccomp.resolve_syscall(arch, number)
    except (ValueError, OSError):
        name = None
    if isinstance(name, bytes):
        return name.decode()
    return str(name) if name else f"{UNNAMED}{number}"


UNNAMED = "syscall_"  # the prefix of a call libseccomp has no name for


_CLONE_FLAGS = {
    0x00020000: "CLONE_NEWNS", 0x02000000: "CLONE_NEWCGROUP", 0x04000000: "CLONE_NEWUTS",
    0x08000000: "CLONE_NEWIPC", 0x10000000: "CLONE_NEWUSER", 0x20000000: "CLONE_NEWPID",
    0x40000000: "CLONE_NEWNET", 0x00000080: "CLONE_NEWTIME",
}  # fmt: skip
_ARGUMENT_NAMES = {
    "mount": ("source", "target", "fstype", "flags"),
    "umount2": ("target", "flags"),
    "pivot_root": ("new_root", "put_old"),
    "socket": ("family", "type", "protocol"),
    "clone": ("flags",),
    "unshare": ("flags",),
    "setns": ("fd", "nstype"),
    "ioctl": ("fd", "request"),
    "personality": ("persona",),
    "open": ("path", "flags"), "openat": ("dirfd", "path", "flags"), "creat": ("path",),
    "mkdir": ("path",), "mkdirat": ("dirfd", "path"), "unlink": ("path",), "unlinkat": ("dirfd", "path"),
    "rmdir": ("path",), "rename": ("oldpath", "newpath"), "renameat": ("olddirfd", "oldpath"),
    "renameat2": ("olddirfd", "oldpath"), "truncate": ("path",), "chmod": ("path", "mode"),
    "fchmodat": ("dirfd", "path", "mode"),
    "symlink": ("target", "linkpath"), "symlinkat": ("target", "newdirfd", "linkpath"), "link": ("oldpath", "newpath"),
    "bind": ("fd", "addr", "addrlen"), "chown": ("path", "owner", "group"), "lchown": ("path", "owner", "group"),
    "fchown": ("fd", "owner", "group"), "fchownat": ("dirfd", "path", "owner", "group"), "fchmod": ("fd", "mode"),
    "setuid": ("uid",), "setgid": ("gid",), "setreuid": ("ruid", "euid"), "setregid": ("rgid", "egid"),
    "setresuid": ("ruid", "euid", "suid"), "setresgid": ("rgid", "egid", "sgid"), "setgroups": ("size", "list"),
}  # fmt: skip
_OPEN_FLAGS = ((0o100, "O_CREAT"), (0o200, "O_EXCL"), (0o1000, "O_TRUNC"), (0o2000, "O_APPEND"))


def describe_call(name: str, denial: Denial) -> str:
    """The call as a reader would write it: the arguments the filter read, those of calls a
    reader knows by name, and the paths read from the caller; every byte a terminal could
    act on escaped. The values are the first call's of its kind."""
    names = _ARGUMENT_NAMES.get(name, ())
    shown = []
    for index in sorted({*denial.args, *denial.strings, *range(len(names))}):
        label = names[index] if index < len(names) else f"arg{index}"
        if name == "bind" and index == 1:
            shown.append(f"{label}={_socket_address(denial.strings.get(1, b''))}")
        elif index in denial.strings:
            shown.append(f"{label}={quote(denial.strings[index])}")
        elif index not in POINTERS.get(name, ()):  # a pointer means nothing to a reader
            shown.append(f"{label}={_decoded(name, index, denial.first[index])}")
    return f"{name}({', '.join(shown)})"


POINTERS = {**PATH_ARGUMENTS, "setgroups": (1,)}


def _socket_address(data: bytes) -> str:
    """An IPv4 or IPv6 sockaddr's family and port (what bind's refusal depends on)."""
    if len(data) < 4:
        return "?"
    family = {2: "AF_INET", 10: "AF_INET6"}.get(int.from_bytes(data[:2], "little"), "?")
    return f"{{{family}, port {int.from_bytes(data[2:4], 'big')}}}"


def _decoded(name: str, index: int, value: int) -> str:
    label = _ARGUMENT_NAMES.get(name, ())[index:][:1]
    if label and label[0] in ("owner", "group", "uid", "gid", "ruid", "euid", "suid", "rgid", "egid", "sgid"):
        return "-1" if value & 0xFFFFFFFF == 0xFFFFFFFF else str(value & 0xFFFFFFFF)
    if label == ("mode",):
        return f"{value & 0o7777:#o}"
    if label and label[0].endswith("dirfd"):
        number = (value & 0xFFFFFFFF) - ((value & 0x80000000) << 1)
        return "AT_FDCWD" if number == -100 else str(number)
    if label == ("flags",) and name in ("open", "openat"):
        access = ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE")[value & 3]
        return "|".join([access, *(flag for bit, flag in _OPEN_FLAGS if value & bit)])
    if (name in ("clone", "unshare") and index == 0) or (name == "setns" and index == 1):
        flags = [flag for bit, flag in _CLONE_FLAGS.items() if value & bit]
        rest = value & ~sum(bit for bit in _CLONE_FLAGS if value & bit)
        return "|".join(flags + ([f"{rest:#x}"] if rest or not flags else []))
    if name == "socket" and index == 0:
        import socket

        families = {int(v): k for k, v in vars(socket).items() if k.startswith("AF_") and isinstance(v, int)}
        return families.get(value, str(value))
    if name == "socket" and index == 1:
        kinds = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM", 5: "SOCK_SEQPACKET"}
        flags = [flag for bit, flag in ((0x800, "SOCK_NONBLOCK"), (0x80000, "SOCK_CLOEXEC")) if value & bit]
        return "|".join([kinds.get(value & 0xF, str(value & 0xF)), *flags])
    return f"{value:#x}" if value > 9 else str(value)


_UNSAFE = re.compile(rb'[\x00-\x1f\x7f-\xff"\\]')


def quote(data: bytes) -> str:
    """A C-style quoted string: printable ASCII as itself, anything else escaped, so that a
    hostile path cannot move a terminal's cursor or forge a line of the report."""
    return '"' + _UNSAFE.sub(lambda match: b"\\x%02x" % match[0][0], data).decode("ascii") + '"'


def rule_lines(source: str) -> dict[str, int]:
    """The line of `defaultAction` and of each `syscalls[i]` in a profile's JSON text: where a
    reader should look. Empty when the file cannot be read that way."""
    try:
        text = Path(source).read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    lines: dict[str, int] = {}
    default = re.search(r'"defaultAction"\s*:', text)
    if default:
        lines["defaultAction"] = text.count("\n", 0, default.start()) + 1
    start = re.search(r'"syscalls"\s*:\s*\[', text)
    if start is None:
        return lines
    decoder, position, index = json.JSONDecoder(), start.end(), 0
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or text[position] == "]":
            return lines
        lines[f"syscalls[{index}]"] = text.count("\n", 0, position) + 1
        try:
            _, position = decoder.raw_decode(text, position)
        except ValueError:
            return lines
        index += 1
