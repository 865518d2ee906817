"""`--format json`: the contract of DESIGN.md (findings, images), plus a summary."""

from __future__ import annotations

import json
from dataclasses import asdict

from pysbx.audit.engine import AuditResult
from pysbx.policies.severity import SEVERITIES


def render(result: AuditResult, terminal: bool = False) -> str:
    counts = {severity: sum(f.severity == severity for f in result.findings) for severity in SEVERITIES}
    document = {
        "tool": {"name": "pyaudit", "version": result.tool_version},
        "targets": [{"target": target, "kind": kind} for target, kind in result.kinds.items()],
        "findings": [f.to_json() for f in result.findings],
        "suppressed": [f.to_json() for f in result.suppressed],
        "images": [asdict(summary) for summary in result.images],
        "summary": {"fail_on": result.fail_on, "failed": result.failed, "counts": counts},
    }
    return json.dumps(document, indent=2) + "\n"
