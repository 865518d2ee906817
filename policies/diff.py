"""A reviewer's diff of two effective policies: every change marked as loosening or
tightening by its effect, as each field's kind in the model says (model.KINDS). What cannot
be judged (an unreadable file, a value outside a field's order) loosens: when in doubt, a
change loosens, so that neither `policy diff` nor `extends: strict` lets it pass unseen."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_type_hints

from pysbx.policies import model
from pysbx.policies.render import flow, plain

FieldPath = tuple[str, ...]
LOOSENS, TIGHTENS = "loosens", "tightens"


@dataclass(frozen=True)
class Change:
    path: FieldPath
    old: Any
    new: Any
    effect: str  # loosens or tightens
    item: str = ""  # for list changes: "+X" or "-X"; for profiles, what they treat differently

    hint: Any = None
    index: int | None = None  # the item of NEW's list it is about, so lint can point at its line

    def describe(self) -> str:
        where = ".".join(self.path)
        if self.item:
            return f"{where}: {self.item}"
        return f"{where}: {_show(self.old, self.hint)} -> {_show(self.new, self.hint)}"

    @property
    def location(self) -> FieldPath:
        """The YAML node a problem about this change points at (the loader records list
        items as `name[i]`)."""
        if self.index is None:
            return self.path
        return (*self.path[:-1], f"{self.path[-1]}[{self.index}]")


def _show(value: Any, hint: Any = None) -> str:
    return flow(plain(value, hint))


@dataclass(frozen=True)
class _Field:
    """Where a judge is: the whole policies (for what crosses sections), the objects that
    hold the field, the field and its path."""

    old_policy: model.Policy
    new_policy: model.Policy
    old_parent: Any
    new_parent: Any
    field: dataclasses.Field[Any]
    path: FieldPath
    hint: Any

    @property
    def kind(self) -> str:
        return str(self.field.metadata[model.LOOSENS])

    def change(self, before: Any, after: Any, effect: str, item: str = "", index: int | None = None) -> Change:
        return Change(self.path, before, after, effect, item, self.hint, index)


def diff_policies(old: model.Policy, new: model.Policy) -> list[Change]:
    return _diff_object(old, new, (), old, new)


def loosens(change: Change) -> bool:
    """Anything not known to tighten loosens."""
    return change.effect != TIGHTENS


def _diff_object(
    old: Any, new: Any, path: FieldPath, old_policy: model.Policy, new_policy: model.Policy
) -> list[Change]:
    changes: list[Change] = []
    hints = get_type_hints(type(old))
    for f in dataclasses.fields(old):
        before, after = getattr(old, f.name), getattr(new, f.name)
        if before == after:
            continue
        at = _Field(old_policy, new_policy, old, new, f, (*path, f.name), hints[f.name])
        changes += JUDGES.get(at.kind, _unknown_kind)(before, after, at)
    return changes


# ----- one value -----------------------------------------------------------------------------


def _scalar(effect: Callable[[Any, Any, _Field], str]) -> Callable[[Any, Any, _Field], list[Change]]:
    def judge(before: Any, after: Any, at: _Field) -> list[Change]:
        return [at.change(before, after, effect(before, after, at))]

    return judge


def _flag(before: Any, after: Any, at: _Field) -> str:
    return LOOSENS if after is (at.kind == "true") else TIGHTENS


def _number(before: Any, after: Any, at: _Field) -> str:
    if before is None or after is None:  # null: no limit, no minimum
        return LOOSENS if after is None else TIGHTENS
    return LOOSENS if (after > before) == (at.kind == "more") else TIGHTENS


def _ordered(before: Any, after: Any, at: _Field) -> str:
    """Later in the order loosens, and so does a change within a group of equals (each may
    let through what the other does not). A null stands outside the order (a rule's own
    severity, which only the rule knows), so a change from it loosens unless it goes to the
    strict end, and a change to it loosens unless it comes from the permissive end."""
    order: model.Order = at.field.metadata["order"]
    old, new = _level(order, before), _level(order, after)
    if old is not None and new is not None:
        return LOOSENS if new >= old else TIGHTENS
    if before is None and after == order[0]:
        return TIGHTENS
    if after is None and before == order[-1]:
        return TIGHTENS
    return LOOSENS


def _level(order: model.Order, value: Any) -> int | None:
    """Where `value` stands in the order: the index of the entry that is it or holds it."""
    for index, entry in enumerate(order):
        if value == entry or (isinstance(entry, tuple) and value in entry):
            return index
    return None


def _constraint(before: Any, after: Any, at: _Field) -> str:
    return TIGHTENS if before is None else LOOSENS


def _regex(before: Any, after: Any, at: _Field) -> str:
    """A regex constraint; giving it up for an exact `subject` it fully matches (as the
    verifier matches: the whole subject) narrows the signer to one it already admitted."""
    subject = getattr(at.new_parent, "subject", None)
    if before is not None and after is None and subject is not None and re.fullmatch(before, subject):
        return TIGHTENS
    return _constraint(before, after, at)


def _override(before: Any, after: Any, at: _Field) -> str:
    return TIGHTENS if after is None else LOOSENS


def _inert(before: Any, after: Any, at: _Field) -> list[Change]:
    return []


def _unknown_kind(before: Any, after: Any, at: _Field) -> list[Change]:
    return [at.change(before, after, LOOSENS, f"{_show(before, at.hint)} -> {_show(after, at.hint)} (not judged)")]


def _any_change(before: Any, after: Any, at: _Field) -> list[Change]:
    """Any change loosens; a file is compared by what it holds, so the same file at another
    path is no change."""
    compare = at.field.metadata["compare"]
    if compare is not None and _file_identity(before, compare) == _file_identity(after, compare):
        return []
    return [at.change(before, after, LOOSENS)]


# ----- lists ---------------------------------------------------------------------------------


def _items(before: tuple[Any, ...], after: tuple[Any, ...], at: _Field) -> list[Change]:
    """Items compared by what they are (a key by its fingerprint, not its path). An added
    item that an old one covers (lets through all it does) does not loosen."""
    identify = _identifier(at.field.metadata["compare"])
    old_ids, new_ids = [identify(item) for item in before], [identify(item) for item in after]
    grows = at.kind in ("add", "allowlist", "writable")
    changes: list[Change] = []
    for index, (item, identity) in enumerate(zip(after, new_ids, strict=True)):
        if identity in old_ids:
            continue
        covered = grows and (any(_covers(old, item, at) for old in before) or _writable_before(at))
        effect = LOOSENS if grows and not covered else TIGHTENS
        if at.kind == "allowlist" and not before:  # the empty list allowed everything
            effect = TIGHTENS
        changes.append(at.change(before, after, effect, f"+{_item(item, identity)}", index))
    for item, identity in zip(before, old_ids, strict=True):
        if identity in new_ids:
            continue
        effect = LOOSENS if not grows or (at.kind == "allowlist" and not after) else TIGHTENS
        changes.append(at.change(before, after, effect, f"-{_item(item, identity)}"))
    return changes


def _writable_before(at: _Field) -> bool:
    """A root that was writable covered any tmpfs (it adds no place to write) when it had no
    size cap, or when everything the new policy lets a container write is no more than what
    the old one did."""
    if at.kind != "writable" or at.old_policy.sandbox.mounts.read_only_rootfs:
        return False
    if at.old_policy.sandbox.limits.writable_size is None:
        return True
    return _writable_total(at.new_policy) <= _writable_total(at.old_policy)


def _writable_total(policy: model.Policy) -> float:
    """Bytes a container may write in all: its tmpfs mounts and a writable root's cap."""
    sandbox = policy.sandbox
    sizes: list[int | None] = [tmpfs.size for tmpfs in sandbox.mounts.tmpfs]
    if not sandbox.mounts.read_only_rootfs:
        sizes.append(sandbox.limits.writable_size)
    return math.inf if None in sizes else float(sum(size for size in sizes if size is not None))


def _covers(old: Any, new: Any, at: _Field) -> bool:
    """An old item covers a new one when it lets through all the new one does: an address
    when it is the same or its family's every-address (0.0.0.0, ::), a section when none of
    its fields loosens against it."""
    if model.IPAddress in get_args(at.hint):
        return model.address_covers(old, new)
    if not dataclasses.is_dataclass(old) or isinstance(old, type):
        return False
    return not any(map(loosens, _diff_object(old, new, at.path, at.old_policy, at.new_policy)))


def _item(item: Any, identity: str) -> str:
    if dataclasses.is_dataclass(item):
        return flow({key: value for key, value in plain(item).items() if value is not None})
    shown = flow(plain(item))
    return shown if identity == item else f"{shown} ({identity})"


def _identifier(compare: str | None) -> Callable[[Any], Any]:
    if compare is None:
        return lambda item: item
    return lambda item: _file_identity(item, compare)


def _file_identity(path: str | None, compare: str) -> str | None:
    """What a trust file holds: a public key's SPKI fingerprint, or the bytes' digest. A file
    that cannot be read is named by its path alone, so it equals nothing else."""
    if path is None:
        return None
    from pysbx.policies.references import read_referenced

    try:
        data = read_referenced(path)
    except OSError as error:
        return f"unreadable {path}: {error.strerror or error}"
    except ValueError:
        return f"unreadable {path}: larger than 16 MiB"
    if compare == "public_key":
        fingerprint = public_key_fingerprint(data)
        if fingerprint is not None:
            return fingerprint
    return "file sha256:" + hashlib.sha256(data).hexdigest()[:16]


def public_key_fingerprint(pem: bytes) -> str | None:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        return None
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "key sha256:" + hashlib.sha256(der).hexdigest()[:16]


# ----- sections ------------------------------------------------------------------------------


def _fields(before: Any, after: Any, at: _Field) -> list[Change]:
    if isinstance(before, dict):
        return _mapping(before, after, at)
    return _diff_object(before, after, at.path, at.old_policy, at.new_policy)


def _mapping(before: dict[str, Any], after: dict[str, Any], at: _Field) -> list[Change]:
    """Entries by name, an absent one standing for the defaults (`audit.rules`)."""
    changes: list[Change] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        template: Any = new if old is None else old
        changes += _diff_object(
            old or type(template)(), new or type(template)(), (*at.path, key), at.old_policy, at.new_policy
        )
    return changes


def _granted(before: Any, after: Any, at: _Field) -> list[Change]:
    """Capabilities compare by what is granted, not by how add and drop spell it."""
    old, new = (_granted_by(policy) for policy in (at.old_policy, at.new_policy))
    return [at.change(old, new, LOOSENS, f"+{name}") for name in sorted(new - old)] + [
        at.change(old, new, TIGHTENS, f"-{name}") for name in sorted(old - new)
    ]


def _granted_by(policy: model.Policy) -> frozenset[str]:
    return model.granted_capabilities(policy.sandbox.capabilities, policy.sandbox.privileged)


def _profile(before: str, after: str, at: _Field) -> list[Change]:
    """A seccomp profile by what it lets each system call do, under the capabilities either
    policy grants. The calls either policy's own deny/allow lists name are judged by those
    lists, so they are left out here. `unconfined` (no filter) loosens against any profile;
    a profile that does not load loosens, since what it allows is unknown."""
    from pysbx.policies.seccomp import SeccompProfileError, compare_profiles, load_profile, with_overrides

    named = f"{_profile_name(before)} -> {_profile_name(after)}"
    if "unconfined" in (before, after):
        return [at.change(before, after, LOOSENS if after == "unconfined" else TIGHTENS, named)]
    old, new = at.old_policy.sandbox, at.new_policy.sandbox
    overridden = {*old.seccomp.deny, *old.seccomp.allow, *new.seccomp.deny, *new.seccomp.allow}
    try:
        old_profile = with_overrides(load_profile(before), deny=sorted(overridden))
        new_profile = with_overrides(load_profile(after), deny=sorted(overridden))
    except SeccompProfileError as error:
        return [at.change(before, after, LOOSENS, f"{named}: cannot compare what they allow ({error})")]
    capability_sets = [_granted_by(at.old_policy), _granted_by(at.new_policy)]
    further, sooner = compare_profiles(old_profile, new_profile, capability_sets)
    return [at.change(before, after, LOOSENS, f"{named}: {d.describe()}") for d in further] + [
        at.change(before, after, TIGHTENS, f"{named}: {d.describe()}") for d in sooner
    ]


def _profile_name(profile: str) -> str:
    return Path(profile).name


JUDGES: dict[str, Callable[[Any, Any, _Field], list[Change]]] = {
    "true": _scalar(_flag),
    "false": _scalar(_flag),
    "more": _scalar(_number),
    "less": _scalar(_number),
    "order": _scalar(_ordered),
    "any": _any_change,
    "constraint": _scalar(_constraint),
    "regex": _scalar(_regex),
    "override": _scalar(_override),
    "add": _items,
    "remove": _items,
    "allowlist": _items,
    "writable": _items,
    "granted": _granted,
    "profile": _profile,
    "fields": _fields,
    "inert": _inert,
}
