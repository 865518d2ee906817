"""Findings: the contract of `pyaudit --format json` (see DESIGN.md)."""

from __future__ import annotations

from pysbx.policies.record import Record
from pysbx.policies.severity import SEVERITIES

TYPE_CHECKING = False  # typing.TYPE_CHECKING without typing's import (2 ms of pyaudit's start)
if TYPE_CHECKING:
    from typing import Any

NEVER = "never"  # a --fail-on threshold no finding reaches


def severity_rank(severity: str) -> int:
    """0 for critical ... 4 for info: lower is worse."""
    return SEVERITIES.index(severity)


def at_or_above(severity: str, threshold: str) -> bool:
    return threshold != NEVER and severity_rank(severity) <= severity_rank(threshold)


class Finding(Record):
    """One finding. A Record, not a dataclass: `pyaudit FILE` starts for every Dockerfile a
    hook names, and dataclasses' import (inspect, ast, dis, tokenize) was a fifth of that."""

    # In the order of the JSON contract (to_json): not sorted.
    __slots__ = (  # noqa: RUF023
        "rule_id", "category", "severity", "title", "message", "target", "line", "column", "layer", "path",
        "evidence", "references", "suppressed", "subject", "fingerprint",
    )  # fmt: skip

    def __init__(
        self,
        rule_id: str,
        category: str,
        severity: str,
        title: str,
        message: str,
        target: str,
        line: int | None = None,
        column: int | None = None,
        layer: str | None = None,
        path: str | None = None,
        evidence: str | None = None,
        references: list[str] | None = None,
        suppressed: str | None = None,
        subject: str | None = None,
        fingerprint: str = "",
    ) -> None:
        self.rule_id = rule_id
        self.category = category
        self.severity = severity
        self.title = title
        self.message = message
        self.target = target
        self.line = line
        self.column = column
        self.layer = layer
        self.path = path
        self.evidence = evidence
        self.references: list[str] = references if references is not None else []
        self.suppressed = suppressed  # why, when an ignore applies (kept out of the gate)
        # What in the target it is about: "service web", "Deployment/api container app", "stage
        # builder"; None where the path or layer says it (images) or the target is all there is.
        self.subject = subject
        self.fingerprint = fingerprint  # set by number_fingerprints once a run's findings are all known

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = self.as_dict()
        document["references"] = list(self.references)
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
