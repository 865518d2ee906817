"""Findings: the contract of `pyaudit --format json` (see DESIGN.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pysbx.policies.model import SEVERITIES


def severity_rank(severity: str) -> int:
    """0 for critical ... 4 for info: lower is worse."""
    return SEVERITIES.index(severity)


def at_or_above(severity: str, threshold: str) -> bool:
    return severity_rank(severity) <= severity_rank(threshold)


@dataclass
class Finding:
    rule_id: str
    category: str
    severity: str
    title: str
    message: str
    target: str
    line: int | None = None
    column: int | None = None
    layer: str | None = None
    path: str | None = None
    evidence: str | None = None
    references: list[str] = field(default_factory=list)
    suppressed: str | None = None  # why, when an ignore applies (kept out of the gate)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        if document["suppressed"] is None:
            del document["suppressed"]
        return document

    def fingerprint(self) -> str:
        """Stable across runs and line moves: what and where, not when."""
        return "|".join(
            str(part) for part in (self.rule_id, self.target, self.path or "", self.evidence or "", self.layer or "")
        )
