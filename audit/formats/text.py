"""`--format text`. On a terminal: a table per target, coloured unless NO_COLOR is set
(no-color.org), and for images a small bar chart of layer sizes and wasted bytes, as dive
users expect. Elsewhere (a pipe, a CI log, --output): one `file:line: RULE severity message`
line per finding, which editors, grep and CI annotations follow."""

from __future__ import annotations

import os

from pysbx.audit.engine import AuditResult
from pysbx.audit.findings import Finding, severity_rank
from pysbx.policies.severity import SEVERITIES
from pysbx.policies.values import counted, format_size

_COLOURS = {
    "critical": "\x1b[1;31m",
    "high": "\x1b[31m",
    "medium": "\x1b[33m",
    "low": "\x1b[36m",
    "info": "\x1b[2m",
}
_RESET = "\x1b[0m"


def render(result: AuditResult, terminal: bool = False) -> str:
    lines = _grouped(result, colour=not os.environ.get("NO_COLOR")) if terminal else _located(result)
    counts = ", ".join(f"{sum(f.severity == s for f in result.findings)} {s}" for s in SEVERITIES)
    verdict = "FAIL" if result.failed else "pass"
    suppressed = f", {len(result.suppressed)} suppressed" if result.suppressed else ""
    lines.append(
        f"{counted(len(result.targets), 'target')}, {counted(len(result.findings), 'finding')} ({counts}){suppressed}; "
        f"fail on {result.fail_on}: {verdict}"
    )
    return "\n".join(lines) + "\n"


def _located(result: AuditResult) -> list[str]:
    """One line per finding, in target order then line order, each with its own location."""
    order = {target: index for index, target in enumerate(result.targets)}
    ordered = sorted(
        result.findings,
        key=lambda f: (order.get(f.target, len(order)), f.target, f.line or 0, severity_rank(f.severity)),
    )
    return [f"{_location(found)}: {found.rule_id} {found.severity} {found.message}" for found in ordered]


def _location(found: Finding) -> str:
    return f"{found.target}:{found.line}" if found.line else found.target


def _grouped(result: AuditResult, colour: bool) -> list[str]:
    lines: list[str] = []
    by_target: dict[str, list] = {target: [] for target in result.targets}  # type: ignore[type-arg]
    for found in result.findings:
        by_target.setdefault(found.target, []).append(found)
    for target, findings in by_target.items():
        if not findings:
            continue
        lines.append(f"{target} ({result.kinds.get(target, 'policy')})")
        for found in sorted(findings, key=lambda f: (f.line or 0, severity_rank(f.severity))):
            severity = found.severity.upper().ljust(8)
            if colour:
                severity = f"{_COLOURS[found.severity]}{severity}{_RESET}"
            where = f"{found.line:>5}" if found.line else "    -"
            lines.append(f"  {where}  {severity} {found.rule_id} {found.message}")
        lines.append("")
    for summary in result.images:
        lines += _image_chart(summary)
    return lines


def _image_chart(summary: object) -> list[str]:
    layers = getattr(summary, "layers", [])
    biggest = max((int(layer["files_bytes"]) for layer in layers), default=0) or 1
    lines = [f"{getattr(summary, 'target', '')}: layers (bar: bytes, x: wasted)"]
    for index, layer in enumerate(layers, start=1):
        size, wasted = int(layer["files_bytes"]), int(layer["wasted_bytes"])
        width = round(30 * size / biggest)
        waste = round(30 * wasted / biggest)
        bar = ("#" * max(0, width - waste) + "x" * waste).ljust(30)
        lines.append(f"  {index:>3} {bar} {format_size(size):>8}  {str(layer['created_by'])[:60]}")
    efficiency = getattr(summary, "dive_efficiency", 1.0)
    lines.append(f"  wasted {format_size(getattr(summary, 'wasted_bytes', 0))}; dive efficiency {efficiency:.4f}")
    lines.append("")
    return lines
