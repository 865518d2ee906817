"""Image references: pinned by digest, by tag, or not at all."""

from __future__ import annotations

import re

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def reference_pinning(reference: str) -> str:
    """'digest', 'tag', or 'none' (no tag, or `latest`)."""
    if _DIGEST.search(reference):
        return "digest"
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return "none"
    tag = last.rsplit(":", 1)[1]
    return "none" if tag == "latest" else "tag"


def is_variable(reference: str) -> bool:
    """A reference still holding ${VAR} or $VAR cannot be judged."""
    return "$" in reference
