"""Rules turn facts into findings. `finding()` fills title, category, default severity and
references from the catalogue so that each rule only says what it saw and where."""

from __future__ import annotations

from pysbx.audit.catalog import BY_NAME
from pysbx.audit.findings import Finding


def finding(
    name: str,
    target: str,
    message: str,
    line: int | None = None,
    severity: str | None = None,
    **extra: str | int | None,
) -> Finding:
    rule = BY_NAME[name]
    return Finding(
        rule_id=rule.id,
        category=rule.category,
        severity=severity or rule.severity,
        title=rule.title,
        message=message,
        target=target,
        line=line,
        references=list(rule.references),
        **extra,  # type: ignore[arg-type]
    )


def is_root_user(user: object) -> bool:
    """A USER, `user:` or runAsUser that names root: empty, `root` or 0, with or without a group."""
    text = str(user).strip()
    name = text.split(":", 1)[0]
    return name in ("", "root", "0")
