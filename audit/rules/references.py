"""Image references: pinned by digest, by tag, or not at all."""

from __future__ import annotations

import re

from pysbx.audit.findings import Finding
from pysbx.audit.rules import finding

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def reference_pinning(reference: str) -> str:
    """'digest', 'bad-digest' (an @ that names no sha256), 'tag', or 'none' (no tag, or `latest`)."""
    if _DIGEST.search(reference):
        return "digest"
    if "@" in reference:
        return "bad-digest"
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return "none"
    tag = last.rsplit(":", 1)[1]
    return "none" if tag == "latest" else "tag"


def is_variable(reference: str) -> bool:
    """A reference still holding ${VAR} or $VAR cannot be judged."""
    return "$" in reference


def pinning_finding(reference: str, target: str, subject: str, line: int | None) -> Finding | None:
    """The unpinned-image or unpinned-digest finding for `subject` using `reference`, if any."""
    if is_variable(reference):
        return None
    pinning = reference_pinning(reference)
    if pinning == "none":
        return finding("unpinned-image", target, f"{subject} {reference!r}: no tag or latest", line, evidence=reference)
    if pinning == "tag":
        return finding("unpinned-digest", target, f"{subject} {reference!r} without a digest", line, evidence=reference)
    if pinning == "bad-digest":
        message = f"{subject} {reference!r}: its digest is not a sha256 digest, so nothing is pinned"
        return finding("unpinned-digest", target, message, line, evidence=reference)
    return None
