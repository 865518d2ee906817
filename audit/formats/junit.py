"""`--format junit`: one test suite per target, one failing test case per finding at or
above the gate, for CI dashboards."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from pysbx.audit.engine import AuditResult
from pysbx.audit.findings import at_or_above


def render(result: AuditResult, terminal: bool = False) -> str:
    suites = ET.Element("testsuites", name="pyaudit")
    for target in result.targets:
        findings = [f for f in result.findings if f.target == target]
        failing = [f for f in findings if at_or_above(f.severity, result.fail_on)]
        suite = ET.SubElement(
            suites, "testsuite", name=target, tests=str(max(1, len(findings))), failures=str(len(failing))
        )
        if not findings:
            ET.SubElement(suite, "testcase", name="no findings", classname=target)
        for found in findings:
            case = ET.SubElement(suite, "testcase", name=f"{found.rule_id} line {found.line or '-'}", classname=target)
            if found in failing:
                failure = ET.SubElement(case, "failure", message=found.message, type=found.severity)
                failure.text = f"{found.title}\n{found.message}"
            else:
                ET.SubElement(case, "system-out").text = f"{found.severity}: {found.message}"
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
