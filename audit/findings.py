"""Findings: the contract of `pyaudit --format json` (see DESIGN.md)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pysbx.policies.severity import SEVERITIES

NEVER = "never"  # a --fail-on threshold no finding reaches


def severity_rank(severity: str) -> int:
    """0 for critical ... 4 for info: lower is worse."""
    return SEVERITIES.index(severity)


def at_or_above(severity: str, threshold: str) -> bool:
    return threshold != NEVER and severity_rank(severity) <= severity_rank(threshold)


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
    # What in the target it is about: "service web", "Deployment/api container app", "stage
    # builder"; None where the path or layer says it (images) or the target is all there is.
    subject: str | None = None
    fingerprint: str = ""  # set by number_fingerprints once a run's findings are all known

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        if document["suppressed"] is None:
            del document["suppressed"]
        return document

    def identity(self) -> str:
        """What was found and in which object: stable across runs, line moves and unrelated
        edits (no line, no message wording)."""
        parts = (self.rule_id, self.target, self.subject, self.path, self.evidence, self.layer)
        return "|".join(_escaped(part or "") for part in parts)


def _escaped(part: str) -> str:
    """A part with the separators escaped: a service named `web|x` in a pull request must not
    spell another finding's fingerprint, which a baseline would then suppress."""
    return part.replace("%", "%25").replace("|", "%7C").replace("#", "%23")


def number_fingerprints(findings: list[Finding]) -> None:
    """Give each finding its fingerprint: its identity, with `#N` on the Nth finding of the same
    identity (two `RUN sudo` in one stage). Baselines and SARIF use it, so a second such finding
    added later is new, not covered by the first's entry."""
    seen: dict[str, int] = {}
    for found in findings:
        identity = found.identity()
        seen[identity] = seen.get(identity, 0) + 1
        found.fingerprint = identity if seen[identity] == 1 else f"{identity}#{seen[identity]}"
