"""`--format sarif`: SARIF 2.1.0 as GitHub code scanning accepts it: rules with help and
security-severity, repository-relative URIs, regions, partial fingerprints."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pysbx.audit.catalog import RULES
from pysbx.audit.engine import AuditResult

_SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}
_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}


def _uri(target: str) -> str:
    path = Path(target).resolve()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.as_uri()


def render(result: AuditResult, terminal: bool = False) -> str:
    rule_ids = sorted({f.rule_id for f in result.findings} | set(RULES))
    rules = [_rule(RULES[rule_id]) for rule_id in rule_ids]
    index = {rule_id: i for i, rule_id in enumerate(rule_ids)}
    results = [_result(found, index) for found in result.findings]
    document = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "pyaudit",
                        "version": result.tool_version,
                        "informationUri": "https://pysandbox.dev",
                        "rules": rules,
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().as_uri() + "/"}},
                "results": results,
            }
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def _rule(rule: Any) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.help},
        "help": {
            "text": rule.help,
            "markdown": f"**{rule.title}**\n\n{rule.help}\n\nReferences: {', '.join(rule.references) or 'none'}",
        },
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {
            "security-severity": _SECURITY_SEVERITY[rule.severity],
            "tags": ["security", rule.category],
            "precision": "high",
        },
    }


def _result(found: Any, index: dict[str, int]) -> dict[str, Any]:
    region = {"startLine": found.line or 1}
    if found.column:
        region["startColumn"] = found.column
    location: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": _uri(found.target)}, "region": region}}
    if not _uri(found.target).startswith("file:"):
        location["physicalLocation"]["artifactLocation"]["uriBaseId"] = "%SRCROOT%"
    message = found.message + (f" [{found.path}]" if found.path else "")
    return {
        "ruleId": found.rule_id,
        "ruleIndex": index[found.rule_id],
        "level": _LEVEL[found.severity],
        "message": {"text": message},
        "locations": [location],
        "partialFingerprints": {"pyauditFingerprint/v2": hashlib.sha256(found.fingerprint.encode()).hexdigest()},
        "properties": {
            "severity": found.severity,
            "category": found.category,
            "security-severity": _SECURITY_SEVERITY[found.severity],
        },
    }
