"""Report formats: each turns an AuditResult into text (one module per format)."""

from __future__ import annotations

from collections.abc import Callable

from audit.engine import AuditResult


def renderer(name: str) -> Callable[[AuditResult, bool], str]:
    if name == "json":
        from audit.formats.json_report import render
    elif name == "sarif":
        from audit.formats.sarif import render
    elif name == "junit":
        from audit.formats.junit import render
    else:
        from audit.formats.text import render
    return render
