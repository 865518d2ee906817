"""A reviewer's diff of two effective policies: every change marked as loosening or
tightening, read from each field's `loosens` metadata in the model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, get_type_hints

from policies import model
from policies.render import plain

FieldPath = tuple[str, ...]


@dataclass(frozen=True)
class Change:
    path: FieldPath
    old: Any
    new: Any
    effect: str  # loosens, tightens, changes
    item: str = ""  # for list changes: "+X" or "-X"

    hint: Any = None

    def describe(self) -> str:
        where = ".".join(self.path)
        if self.item:
            return f"{where}: {self.item}"
        return f"{where}: {_show(self.old, self.hint)} -> {_show(self.new, self.hint)}"


def _show(value: Any, hint: Any = None) -> str:
    rendered = plain(value, hint)
    if rendered is None:
        return "null"
    return str(rendered).lower() if isinstance(rendered, bool) else str(rendered)


def diff_policies(old: model.Policy, new: model.Policy) -> list[Change]:
    changes = _diff_object(old, new, ())
    changes += _diff_capabilities(old, new)
    return changes


def _diff_object(old: Any, new: Any, path: FieldPath) -> list[Change]:
    changes: list[Change] = []
    hints = get_type_hints(type(old))
    for f in dataclasses.fields(old):
        if f.name == "extends" or (path == ("sandbox",) and f.name == "capabilities"):
            continue
        before, after = getattr(old, f.name), getattr(new, f.name)
        if before == after:
            continue
        here = (*path, f.name)
        if dataclasses.is_dataclass(before):
            changes += _diff_object(before, after, here)
        elif isinstance(before, dict):
            changes += _diff_mapping(before, after, here, f)
        elif isinstance(before, tuple):
            changes += _diff_items(before, after, here, f.metadata[model.LOOSENS])
        else:
            effect = _scalar_effect(before, after, f.metadata)
            changes.append(Change(here, before, after, effect, hint=hints[f.name]))
    return changes


def _diff_mapping(before: dict[str, Any], after: dict[str, Any], path: FieldPath, f: Any) -> list[Change]:
    changes: list[Change] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        template: Any = new if old is None else old
        changes += _diff_object(old or type(template)(), new or type(template)(), (*path, key))
    return changes


def _diff_items(before: tuple[Any, ...], after: tuple[Any, ...], path: FieldPath, rule: str) -> list[Change]:
    added = [item for item in after if item not in before]
    removed = [item for item in before if item not in after]
    on_add = {"add": "loosens", "remove": "tightens"}.get(rule, "changes")
    on_remove = {"add": "tightens", "remove": "loosens"}.get(rule, "changes")
    return [Change(path, before, after, on_add, f"+{_item(item)}") for item in added] + [
        Change(path, before, after, on_remove, f"-{_item(item)}") for item in removed
    ]


def _item(item: Any) -> str:
    if dataclasses.is_dataclass(item):
        fields = plain(item)
        return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items() if v is not None) + "}"
    return str(plain(item))


def _scalar_effect(before: Any, after: Any, metadata: Any) -> str:
    rule = metadata[model.LOOSENS]
    if rule in ("true", "false"):
        return "loosens" if after is (rule == "true") else "tightens"
    if rule in ("more", "less"):
        if before is None or after is None:
            return "loosens" if after is None else "tightens"  # null: no limit, no minimum
        higher = after > before
        return "loosens" if higher == (rule == "more") else "tightens"
    if rule == "order":
        order = metadata["order"]
        if before in order and after in order:
            return "loosens" if order.index(after) > order.index(before) else "tightens"
        if after is None or before is None:
            return "changes"
    return "changes"


def _diff_capabilities(old: model.Policy, new: model.Policy) -> list[Change]:
    """Capabilities compare by what is granted, not by how add and drop spell it."""
    before = model.granted_capabilities(old.sandbox.capabilities, old.sandbox.privileged)
    after = model.granted_capabilities(new.sandbox.capabilities, new.sandbox.privileged)
    path = ("sandbox", "capabilities")
    return [Change(path, before, after, "loosens", f"+{name}") for name in sorted(after - before)] + [
        Change(path, before, after, "tightens", f"-{name}") for name in sorted(before - after)
    ]
